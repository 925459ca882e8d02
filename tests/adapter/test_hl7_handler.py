"""The HL7 message handler on real tables (SQLite and PostgreSQL): ACK only after commit,
exactly once, nothing half-applied."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.domain.worklist import parse_worklist_query
from app.group_commit import GroupCommit
from app.models import AuditEvent, Hl7Message, Patient
from app.services import stations, worklist
from hl7_ingest.handler import Hl7Handler
from tests.support.net import wait_until

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"


def message(name: str) -> bytes:
    return (DATA / name).read_bytes()


def segments(ack: bytes) -> dict[str, list[str]]:
    return {line.split("|")[0]: line.split("|") for line in ack.decode().split("\r") if line}


def count(factory: SessionFactory, model: Any) -> int:
    with session_scope(factory) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def items(factory: SessionFactory, **keys: str) -> list[dict[str, Any]]:
    with session_scope(factory) as session:
        query = parse_worklist_query(keys)
        return list(worklist.find(session, query=query))


@pytest.fixture
def handler(settings: Settings, session_factory: SessionFactory) -> Hl7Handler:
    with session_scope(session_factory) as session:
        for modality in ("CT", "CR", "MR", "US"):
            stations.create_station(
                session,
                data=stations.StationData(modality, f"{modality}01"),
                actor=Actor(AuditSource.REST),
            )
    return Hl7Handler(settings.hl7, session_factory)


def test_order_is_accepted_and_logged(handler: Hl7Handler, session_factory: SessionFactory) -> None:
    ack = segments(handler.handle(message("orm_o01_nw.hl7")))
    assert ack["MSA"][1:3] == ["AA", "MSG00001"]
    found = {i["00080050"]["Value"][0]: i for i in items(session_factory)}
    assert set(found) == {"ACC0001", "ACC0002"}
    step = found["ACC0001"]["00400100"]["Value"][0]
    assert step["00400001"]["Value"] == ["CT01"]
    assert step["00400009"]["Value"] == ["SPS0001"]
    with session_scope(session_factory) as session:
        (logged,) = session.exec(select(Hl7Message)).all()
    assert logged.outcome == "AA" and logged.control_id == "MSG00001"
    assert logged.raw.startswith("MSH|") and "MSA|AA|MSG00001" in logged.ack


def test_redelivery_gets_the_same_ack_and_changes_nothing(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    first = handler.handle(message("orm_o01_nw.hl7"))
    audit_rows = count(session_factory, AuditEvent)
    second = handler.handle(message("orm_o01_nw.hl7"))
    assert second == first
    assert count(session_factory, AuditEvent) == audit_rows
    assert count(session_factory, Hl7Message) == 1


def test_unappliable_order_is_ae_and_nothing_is_half_applied(
    settings: Settings, session_factory: SessionFactory
) -> None:
    bare = Hl7Handler(settings.hl7, session_factory)  # no station table: the order cannot route
    ack = segments(bare.handle(message("orm_o01_nw.hl7")))
    assert ack["MSA"][1] == "AE"
    assert "ERR" in ack and "no station" in "|".join(ack["ERR"]) + "|".join(ack["MSA"])
    assert count(session_factory, Patient) == 0  # the patient upsert was rolled back too
    with session_scope(session_factory) as session:
        (logged,) = session.exec(select(Hl7Message)).all()
    assert logged.outcome == "AE" and "no station" in logged.error


def test_ae_message_is_processed_again_once_fixed(
    settings: Settings, session_factory: SessionFactory, handler: Hl7Handler
) -> None:
    """Only accepted messages are deduplicated: a retry after fixing the cause goes through."""
    with session_scope(session_factory) as session:
        for station in stations.list_stations(session):
            assert station.id is not None
            stations.delete_station(session, pk=station.id, actor=Actor(AuditSource.REST))
    assert segments(handler.handle(message("orm_o01_nw.hl7")))["MSA"][1] == "AE"
    with session_scope(session_factory) as session:
        for modality in ("CT", "CR"):
            stations.create_station(
                session, data=stations.StationData(modality, "ANY01"), actor=Actor(AuditSource.REST)
            )
    assert segments(handler.handle(message("orm_o01_nw.hl7")))["MSA"][1] == "AA"
    assert len(items(session_factory)) == 2


@pytest.mark.parametrize(
    "name",
    ["broken_oru_r01.hl7", "broken_no_msh.hl7", "broken_adt_a99.hl7"],
)
def test_unsupported_or_unreadable_is_ar(
    handler: Hl7Handler, session_factory: SessionFactory, name: str
) -> None:
    ack = segments(handler.handle(message(name)))
    assert ack["MSA"][1] == "AR"
    assert "ERR" in ack
    with session_scope(session_factory) as session:
        assert [m.outcome for m in session.exec(select(Hl7Message))] == ["AR"]


def test_garbage_bytes_get_an_ar(handler: Hl7Handler) -> None:
    ack = segments(handler.handle(b"\xff\xfe not hl7 at all"))
    assert ack["MSA"][1] == "AR"


def test_accepted_survives_a_restart(settings: Settings, handler: Hl7Handler) -> None:
    assert segments(handler.handle(message("orm_o01_nw.hl7")))["MSA"][1] == "AA"
    engine = create_db_engine(settings.database_url)  # a new process would open anew
    try:
        assert len(items(create_session_factory(engine))) == 2
    finally:
        engine.dispose()


def test_a_failed_commit_is_never_acknowledged_aa(
    handler: Hl7Handler, session_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_commit(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk full")

    # the order and its log row are written; the commit fails (so does logging the failure)
    monkeypatch.setattr(Session, "commit", broken_commit)
    ack = segments(handler.handle(message("orm_o01_nw.hl7")))
    assert ack["MSA"][1] != "AA"
    monkeypatch.undo()
    assert items(session_factory) == []  # the order went with the failed transaction


def test_racing_duplicates_apply_once(handler: Hl7Handler, session_factory: SessionFactory) -> None:
    barrier = threading.Barrier(4)
    acks: list[bytes] = []

    def send() -> None:
        barrier.wait()
        acks.append(handler.handle(message("orm_o01_nw.hl7")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acks) == 4
    assert {segments(a)["MSA"][1] for a in acks} <= {"AA", "AE"}
    assert any(segments(a)["MSA"][1] == "AA" for a in acks)
    assert len(items(session_factory)) == 2
    with session_scope(session_factory) as session:
        accepted = session.exec(select(Hl7Message).where(Hl7Message.outcome == "AA")).all()
    assert len(accepted) == 1


def variant(name: str, control_id: str, *replacements: tuple[str, str]) -> bytes:
    """A fixture with another MSH-10 (and other values), so it is a new message."""
    text = message(name).decode()
    text = text.replace(text.split("\r")[0].split("|")[9], control_id, 1)
    for old, new in replacements:
        text = text.replace(old, new)
    return text.encode()


def names(factory: SessionFactory) -> dict[str, str]:
    with session_scope(factory) as session:
        return {p.patient_id: p.name for p in session.exec(select(Patient))}


def test_a08_renames(handler: Hl7Handler, session_factory: SessionFactory) -> None:
    assert segments(handler.handle(message("adt_a08.hl7")))["MSA"][1] == "AA"
    assert names(session_factory) == {"PAT010": "MUSTERMANN-SCHMIDT^MAX^^PROF. DR."}


def test_a40_with_unknown_prior_is_accepted_and_merges_nothing(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    ack = segments(handler.handle(message("adt_a40.hl7")))
    assert ack["MSA"][1] == "AA" and "ERR" not in ack
    assert names(session_factory) == {"PAT010": "MUSTERMANN^MAX"}


def test_a40_moves_the_steps(handler: Hl7Handler, session_factory: SessionFactory) -> None:
    order_for_prior = variant("orm_o01_nw.hl7", "ORD-PRIOR", ("PAT001^", "PAT099^"))
    assert segments(handler.handle(order_for_prior))["MSA"][1] == "AA"
    assert segments(handler.handle(message("adt_a40.hl7")))["MSA"][1] == "AA"
    assert set(names(session_factory)) == {"PAT010"}
    assert {i["00100020"]["Value"][0] for i in items(session_factory)} == {"PAT010"}
    assert len(items(session_factory)) == 2


def test_a47_changes_the_identifier(handler: Hl7Handler, session_factory: SessionFactory) -> None:
    assert segments(handler.handle(message("adt_a08.hl7")))["MSA"][1] == "AA"
    assert segments(handler.handle(message("adt_a47.hl7")))["MSA"][1] == "AA"
    assert set(names(session_factory)) == {"PAT011"}


def test_oversized_frame_reject_is_an_ar(handler: Hl7Handler) -> None:
    ack = segments(handler.reject("frame larger than 1048576 bytes"))
    assert ack["MSA"][1] == "AR"


@pytest.mark.parametrize(
    ("name", "patient_name"),
    [
        ("orm_latin1.hl7", "MÜLLER^JOSÉ"),
        ("omi_utf8_greek.hl7", "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΑΝΝΗΣ"),
    ],
)
def test_charsets_reach_the_worklist(
    handler: Hl7Handler, session_factory: SessionFactory, name: str, patient_name: str
) -> None:
    raw_ack = handler.handle(message(name))
    assert segments(raw_ack)["MSA"][1] == "AA"
    (item, *_) = items(session_factory)
    assert item["00100010"]["Value"][0]["Alphabetic"] == patient_name


def test_concurrent_orders_for_one_new_patient_make_one_patient(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    """Different messages (control IDs, orders) about one new patient, all at once."""
    senders = 6
    barrier = threading.Barrier(senders)
    acks: list[bytes] = []

    def send(index: int) -> None:
        text = variant(
            "orm_o01_nw.hl7",
            f"RACE-{index}",
            ("ACC0001", f"AC{index}A"),
            ("ACC0002", f"AC{index}B"),
            ("RP0001", f"RP{index}A"),
            ("RP0002", f"RP{index}B"),
            ("SPS0001", f"SPS{index}"),
            ("2.55.3.1001", f"2.55.3.1{index}1"),
            ("2.55.3.1002", f"2.55.3.1{index}2"),
        )
        barrier.wait()
        acks.append(handler.handle(text))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [segments(a)["MSA"][1] for a in acks] == ["AA"] * senders
    assert count(session_factory, Patient) == 1
    assert len(items(session_factory)) == 2 * senders


def _new_order(index: int, modality: str = "CT") -> bytes:
    return variant(
        "orm_o01_nw.hl7",
        f"GROUP-{index}",
        ("PAT001^", f"G{index}^"),
        ("ACC0001", f"GA{index}A"),
        ("ACC0002", f"GA{index}B"),
        ("RP0001", f"GR{index}A"),
        ("RP0002", f"GR{index}B"),
        ("SPS0001", f"GS{index}"),
        ("2.55.3.1001", f"2.55.3.2{index}1"),
        ("2.55.3.1002", f"2.55.3.2{index}2"),
        ("|CT|||", f"|{modality}|||"),
    )


def _handled_in_one_batch(handler: Hl7Handler, messages: list[bytes]) -> list[bytes]:
    """Hold the transaction running while ``messages`` arrive (as on several connections), so
    that they queue for the next one together; return their ACKs. Sharing is on for both
    databases here (by default only SQLite shares): the ACKs must be right either way."""
    handler.commits = GroupCommit(handler.session_factory, sharing=True)
    started, release = threading.Event(), threading.Event()

    def held(_session: Session) -> None:
        started.set()
        release.wait(10)

    with ThreadPoolExecutor(len(messages) + 1) as pool:
        leader = pool.submit(handler.commits.run, held)
        assert started.wait(10)
        acks = [pool.submit(handler.handle, raw) for raw in messages]
        wait_until(lambda: handler.commits.waiting == len(messages), what="the batch")
        release.set()
        leader.result(10)
        return [ack.result(30) for ack in acks]


def test_orders_of_several_connections_share_one_commit(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    """Group commit: one transaction for the orders that arrived while another ran; a copy in
    the same batch still gets its original's ACK and changes nothing."""
    orders = [_new_order(n) for n in range(4)]
    acks = _handled_in_one_batch(handler, [*orders, orders[1]])
    assert [segments(a)["MSA"][1] for a in acks] == ["AA"] * 5
    assert acks[4] == acks[1]
    assert handler.commits.shared == 1
    assert count(session_factory, Hl7Message) == 4
    assert len(items(session_factory)) == 8


def test_a_refused_order_in_a_shared_commit_costs_the_others_nothing(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    """XA has no station: that order is answered AE and the batch is run again one order at a
    time, so the other two are still accepted, each exactly once."""
    acks = _handled_in_one_batch(handler, [_new_order(0), _new_order(1, "XA"), _new_order(2)])
    assert [segments(a)["MSA"][1] for a in acks] == ["AA", "AE", "AA"]
    assert sorted(names(session_factory)) == ["G0", "G2"]
    assert len(items(session_factory)) == 4
    with session_scope(session_factory) as session:
        outcomes = sorted(m.outcome for m in session.exec(select(Hl7Message)))
    assert outcomes == ["AA", "AA", "AE"]


def test_unconfigured_order_control_is_ae_103(handler: Hl7Handler) -> None:
    ack = segments(handler.handle(variant("orm_o01_nw.hl7", "ZZ-1", ("ORC|NW|", "ORC|ZZ|"))))
    assert ack["MSA"][1] == "AE"
    assert ack["ERR"][1].startswith("ORC^1^1^103&")  # v2.3.1: ERR-1 is SEG^seq^field^code


def test_a_resend_is_recognised_before_anything_is_applied(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    """The log row is claimed first: an order resent after it was cancelled gets its first
    ACK back and does not bring the cancelled steps back (nor fail on them)."""
    first = handler.handle(message("orm_o01_nw.hl7"))
    cancel = segments(handler.handle(message("orm_o01_ca.hl7")))
    audits = count(session_factory, AuditEvent)
    scheduled = items(session_factory, ScheduledProcedureStepStatus="SCHEDULED")

    again = handler.handle(message("orm_o01_nw.hl7"))

    assert segments(first)["MSA"][1] == "AA" and cancel["MSA"][1] == "AA"
    assert again == first
    assert count(session_factory, AuditEvent) == audits  # nothing applied the second time
    assert len(scheduled) == 1  # the CA cancelled one of the two procedures
    assert items(session_factory, ScheduledProcedureStepStatus="SCHEDULED") == scheduled
