"""The HL7 front door on real tables and a real MLLP socket: a reused MSH-10 with other content,
the database going away, malformed MSH segments, the sender allow-list."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlmodel import select

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.models import Hl7Message, Patient
from app.services import hl7_log, stations
from hl7_ingest.handler import Hl7Handler
from hl7_ingest.mllp import END_BLOCK, START_BLOCK, frame
from hl7_ingest.server import MllpServer
from tests.support.net import free_port
from tests.support.settings import make_settings

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
ORDER = (DATA / "orm_o01_nw.hl7").read_bytes()
HANDLER_LOG = "hl7_ingest.handler"


def segments(ack: bytes) -> dict[str, list[str]]:
    return {line.split("|")[0]: line.split("|") for line in ack.decode().split("\r") if line}


def logged(factory: SessionFactory) -> list[tuple[str, str]]:
    with session_scope(factory) as session:
        rows = session.exec(select(Hl7Message).order_by(Hl7Message.id)).all()  # type: ignore[arg-type]
        return [(m.outcome, m.control_id) for m in rows]


def patient_names(factory: SessionFactory) -> dict[str, str]:
    with session_scope(factory) as session:
        return {p.patient_id: p.name for p in session.exec(select(Patient))}


def add_stations(factory: SessionFactory) -> None:
    with session_scope(factory) as session:
        for modality in ("CT", "CR", "MR", "US"):
            stations.create_station(
                session,
                data=stations.StationData(modality, f"{modality}01"),
                actor=Actor(AuditSource.REST),
            )


@pytest.fixture
def handler(settings: Settings, session_factory: SessionFactory) -> Hl7Handler:
    add_stations(session_factory)
    return Hl7Handler(settings.hl7, session_factory)


# --- a reused MSH-10 -------------------------------------------------------------------------


def test_reused_control_id_with_other_content_is_ae_205_and_not_applied(
    handler: Hl7Handler, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=HANDLER_LOG)
    first = handler.handle(ORDER)
    assert segments(first)["MSA"][1] == "AA"
    names = patient_names(session_factory)
    other = ORDER.replace(b"DOE^JOHN^Q", b"ROE^JANE^Q")
    assert other != ORDER
    ack = segments(handler.handle(other))
    assert ack["MSA"][1:3] == ["AE", "MSG00001"]
    assert "MSH^1^10^205&Duplicate key identifier" in "|".join(ack["ERR"])
    assert patient_names(session_factory) == names  # the new content was not applied
    assert logged(session_factory) == [("AA", "MSG00001"), ("AE", "MSG00001")]
    assert any("MSG00001" in r.message and "AE: 205" in r.message for r in caplog.records)
    assert handler.handle(ORDER) == first  # the original's resend still gets its own ACK


@pytest.mark.parametrize(
    "resend",
    [
        ORDER.replace(b"\r", b"\r\n"),
        ORDER.replace(b"\r", b"  \r"),
        ORDER.replace(b"20250101120000||ORM", b"20250101121500||ORM"),  # MSH-7 stamped anew
    ],
    ids=["crlf", "trailing-blanks", "new-msh7"],
)
def test_resend_equal_but_for_terminators_blanks_or_msh7_gets_the_same_ack(
    handler: Hl7Handler, session_factory: SessionFactory, resend: bytes
) -> None:
    assert resend != ORDER
    first = handler.handle(ORDER)
    assert handler.handle(resend) == first
    assert logged(session_factory) == [("AA", "MSG00001")]


def test_reused_control_id_racing_the_original_is_ae_205(
    handler: Hl7Handler, session_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other message committed between the redelivery check and this commit."""
    assert segments(handler.handle(ORDER))["MSA"][1] == "AA"
    monkeypatch.setattr(handler, "_previous", lambda env: None)
    ack = segments(handler.handle(ORDER.replace(b"DOE^JOHN^Q", b"ROE^JANE^Q")))
    assert ack["MSA"][1] == "AE" and "MSH^1^10" in "|".join(ack["ERR"])
    assert "ROE" not in "".join(patient_names(session_factory).values())


# --- malformed MSH ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"MSH\rPID|1||P1\rPV1|1|O\r", "100"),
        (b"MSH\r\nPID|1||P1\r\n", "100"),
        (b"MSH|\rPID|1||P1\r", "100"),
        (b"MSH|^~\\&|RIS|HOSP\rPID|1||P1\r", "101"),
        (b"MSH|^~\\&|RIS|HOSP|B|R|2025||ORM^O01||P|2.3.1\rPID|1||P1\r", "101"),
    ],
)
def test_malformed_msh_is_ar_with_err_and_logged(
    handler: Hl7Handler,
    session_factory: SessionFactory,
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
    code: str,
) -> None:
    caplog.set_level(logging.INFO, logger=HANDLER_LOG)
    ack = segments(handler.handle(raw))
    assert ack["MSA"][1] == "AR"
    assert code in "|".join(ack["ERR"])
    assert not [r for r in caplog.records if r.exc_info]  # handled, not an internal error
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("answered AR" in m and code in m for m in info)
    assert not any("P1" in m for m in info)  # no content in the log
    assert [outcome for outcome, _ in logged(session_factory)] == ["AR"]


# --- values PostgreSQL cannot store (found by tests/adapter/test_hl7_fuzz.py) -----------------


@pytest.mark.parametrize(
    ("raw", "code", "error"),
    [
        (ORDER.replace(b"DOE^JOHN^Q", b"DOE^JO\x00HN^Q"), "AE", "102&"),
        (b"\x00" * 64, "AR", "MSH^1|100^"),  # no MSH: a v2.5.1 ACK
        (ORDER.replace(b"|MSG00001|", b"|" + b"C" * 200 + b"|"), "AR", "MSH^1^10^104&"),
        (ORDER.replace(b"|RIS|", b"|" + b"R" * 228 + b"|"), "AR", "MSH^1^3^104&"),
        (ORDER.replace(b"|HOSP|", b"|" + b"H" * 228 + b"|", 1), "AR", "MSH^1^4^104&"),
        (ORDER.replace(b"ORM^O01", b"ORM^" + b"O" * 40), "AR", "MSH^1^9^201&"),
        (ORDER.replace(b"DOE^JOHN^Q", b"DOE^" + b"J" * 65), "AE", "PID^1^5^102&"),
        (ORDER.replace(b"DOE^JOHN^Q", b"DOE^" + b"J" * 500), "AE", "PID^1^5^102&"),
    ],
    ids=[
        "nul-in-a-field",
        "nul-only",
        "long-msh10",
        "long-msh3",
        "long-msh4",
        "long-msh9",
        "pn-group-over-64",
        "pn-over-the-column",
    ],
)
def test_values_postgresql_cannot_store_are_refused_answered_and_logged(
    handler: Hl7Handler,
    session_factory: SessionFactory,
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
    code: str,
    error: str,
) -> None:
    """SQLite stores NUL characters and over-long values, PostgreSQL refuses them: either way
    the message is refused with an ERR (not an internal error), and the log keeps it."""
    caplog.set_level(logging.INFO, logger=HANDLER_LOG)
    ack = segments(handler.handle(raw))
    assert ack["MSA"][1] == code
    assert (ack["MSA"][2] != "") is raw.startswith(b"MSH")  # the ACK names the message
    assert error in "|".join(ack["ERR"])
    assert patient_names(session_factory) == {}
    assert [outcome for outcome, _ in logged(session_factory)] == [code]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- sender allow-list ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "outcome"),
    [
        ("", "AA"),
        ("RIS", "AA"),
        ("OTHER, RIS^HOSP", "AA"),
        ("OTHER", "AR"),
        ("RIS^ELSEWHERE", "AR"),
    ],
)
def test_sender_allow_list(
    database_url: str,
    tmp_path: Path,
    session_factory: SessionFactory,
    caplog: pytest.LogCaptureFixture,
    allowed: str,
    outcome: str,
) -> None:
    caplog.set_level(logging.INFO, logger=HANDLER_LOG)
    add_stations(session_factory)
    settings = make_settings(database_url, tmp_path, hl7_allowed_senders=allowed)
    ack = segments(Hl7Handler(settings.hl7, session_factory).handle(ORDER))
    assert ack["MSA"][1] == outcome
    if outcome == "AR":
        assert "MSH^1^3" in "|".join(ack["ERR"])
        assert patient_names(session_factory) == {}
        assert logged(session_factory) == [("AR", "MSG00001")]
        assert any("MSG00001" in r.message and "answered AR" in r.message for r in caplog.records)
    else:
        assert patient_names(session_factory) != {}


# --- database unavailable, over a real MLLP socket --------------------------------------------


class Peer:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def exchange(self, payload: bytes) -> bytes | None:
        """Send one frame; its answer, or ``None`` when the server closed without one."""
        self.sock.sendall(frame(payload))
        buffer = b""
        while END_BLOCK not in buffer:
            try:
                data = self.sock.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                assert buffer == b"", buffer
                return None
            buffer += data
        assert buffer.startswith(START_BLOCK)
        return buffer[len(START_BLOCK) : buffer.index(END_BLOCK)]


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[MllpServer] = []

    def start(handler: Hl7Handler) -> Peer:
        server = MllpServer(
            handler.handle,
            reject=handler.reject,
            host="127.0.0.1",
            port=0,
            max_frame_bytes=1 << 20,
            idle_timeout=30,
        )
        servers.append(server)
        return Peer(server.start())

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def unreachable() -> Iterator[SessionFactory]:
    """A session factory whose database is at a closed port."""
    engine = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/broker")
    yield create_session_factory(engine)
    engine.dispose()


def down_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path, **overrides)


def test_database_down_closes_without_an_ack_by_default(
    tmp_path: Path, unreachable: SessionFactory, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = down_settings(tmp_path)
    assert settings.hl7.db_down == "close"
    peer = serve(Hl7Handler(settings.hl7, unreachable))
    assert peer.exchange(ORDER) is None  # no AA, no AR: the sender resends
    assert any("MSG00001" in r.message and "without an ACK" in r.message for r in caplog.records)


def test_database_down_answers_ae_207_when_configured(
    tmp_path: Path, unreachable: SessionFactory, serve: Any
) -> None:
    settings = down_settings(tmp_path, hl7_db_down="ae")
    peer = serve(Hl7Handler(settings.hl7, unreachable))
    for _ in range(2):  # the connection stays open
        answer = peer.exchange(ORDER)
        assert answer is not None
        ack = segments(answer)
        assert ack["MSA"][1:3] == ["AE", "MSG00001"]
        assert "207" in "|".join(ack["ERR"]) and "database unavailable" in answer.decode()


@pytest.mark.parametrize("mode", ["close", "ae"])
def test_pool_timeout_during_commit_is_never_aa_nor_ar(
    database_url: str,
    tmp_path: Path,
    session_factory: SessionFactory,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    add_stations(session_factory)

    def exhausted(*_args: Any, **_kwargs: Any) -> int:
        raise sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached")

    monkeypatch.setattr(hl7_log, "claim", exhausted)  # the accepted message's log row
    monkeypatch.setattr(hl7_log, "record", exhausted)  # a refused one's
    settings = make_settings(database_url, tmp_path, hl7_db_down=mode)
    peer = serve(Hl7Handler(settings.hl7, session_factory))
    answer = peer.exchange(ORDER)
    if mode == "close":
        assert answer is None
    else:
        assert answer is not None and segments(answer)["MSA"][1] == "AE"
    monkeypatch.undo()
    assert patient_names(session_factory) == {}  # nothing applied
    assert logged(session_factory) == []


def test_database_back_then_the_resend_is_accepted(
    tmp_path: Path,
    session_factory: SessionFactory,
    settings: Settings,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_stations(session_factory)

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise sa_exc.OperationalError("SELECT", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(hl7_log, "claim", refused)  # the first statement of an intake
    assert serve(Hl7Handler(settings.hl7, session_factory)).exchange(ORDER) is None
    monkeypatch.undo()
    answer = serve(Hl7Handler(settings.hl7, session_factory)).exchange(ORDER)
    assert answer is not None and segments(answer)["MSA"][1] == "AA"


# --- the settings reach the listener ----------------------------------------------------------


def test_runtime_passes_the_caps_and_the_address_allow_list(
    sqlite_url: str, tmp_path: Path
) -> None:
    from app.runtime import Broker  # the composition root, as the service starts it

    capped = make_settings(sqlite_url, tmp_path, hl7_max_connections_per_address=1)
    broker = Broker(capped, only="hl7")
    try:
        port = broker.start()["hl7"]
        first = Peer(port)
        answer = first.exchange(ORDER)
        assert answer is not None and segments(answer)["MSA"][2] == "MSG00001"
        assert Peer(port).exchange(ORDER) is None  # over the per-address cap: closed at once
        again = first.exchange(ORDER)  # the open connection still works
        assert again is not None and segments(again)["MSA"] == segments(answer)["MSA"]
    finally:
        broker.stop()
    elsewhere = make_settings(sqlite_url, tmp_path, hl7_allowed_addresses="192.0.2.0/24")
    broker = Broker(elsewhere, only="hl7")
    try:
        assert Peer(broker.start()["hl7"]).exchange(ORDER) is None
    finally:
        broker.stop()
