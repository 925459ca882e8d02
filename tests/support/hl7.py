"""HL7 v2 over MLLP from the sender's side: orders to send, one connection, a resending sender,
and what the database says was applied (to check "every AA'd order exactly once").
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from hl7_ingest.mllp import END_BLOCK, START_BLOCK, frame

SENDER = "RIS"
FACILITY = "HOSP"


def order_message(n: int, *, prefix: str = "ORD", modality: str = "CT") -> bytes:
    """An ORM^O01 new order (one ORC/OBR, its own patient, accession and Study Instance UID),
    MSH-10 ``{prefix}{n}``, accession ``ACC-{prefix}{n}``."""
    key = f"{prefix}{n}"
    segments = [
        f"MSH|^~\\&|{SENDER}|{FACILITY}|MWLBROKER|RADIOLOGY|20250101120000||ORM^O01|{key}|P|2.3.1",
        f"PID|1||PAT-{key}^^^HOSP^MR||DOE^JOHN||19700115|M",
        "PV1|1|O",
        f"ORC|NW|PL-{key}^RIS|FL-{key}^RAD||SC||^^^202501020930^^S",
        f"OBR|1|PL-{key}^RIS|FL-{key}^RAD|CTHEAD^CT Head^L||||||||||||||ACC-{key}|RP{n}|SPS{n}"
        f"||||{modality}|||^^^202501020930^^S",
        f"ZDS|1.2.826.0.1.3680043.10.543.{sum(map(ord, prefix))}.{n}^MWLBROKER^Application^DICOM",
    ]
    return ("\r".join(segments) + "\r").encode("ascii")


def accession_of(control_id: str) -> str:
    """The accession :func:`order_message` gives the order with this MSH-10."""
    return f"ACC-{control_id}"


def ack_segments(ack: bytes) -> dict[str, list[str]]:
    """The ACK's segments by name (the last of each name), split into fields."""
    lines = ack.decode("latin-1").replace("\n", "\r").split("\r")
    return {line.split("|")[0]: line.split("|") for line in lines if line}


def ack_code(ack: bytes) -> str:
    """MSA-1 (AA, AE, AR...), ``""`` when there is no MSA."""
    msa = ack_segments(ack).get("MSA", [])
    return msa[1] if len(msa) > 1 else ""


class MllpPeer:
    """One MLLP connection, original acknowledgement mode: send a frame, read its answer."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""

    def exchange(self, payload: bytes) -> bytes | None:
        """Send one frame; its answer, or ``None`` when the server closed without one."""
        self.sock.sendall(frame(payload))
        return self.read_answer()

    def read_answer(self) -> bytes | None:
        """The next framed answer, or ``None`` when the server closed the connection first."""
        while END_BLOCK not in self._buffer:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self._buffer += data
        end = self._buffer.index(END_BLOCK)
        answer, self._buffer = self._buffer[:end], self._buffer[end + len(END_BLOCK) :]
        assert answer.startswith(START_BLOCK), answer[:40]
        return answer[len(START_BLOCK) :]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass
class Delivery:
    """What a sender saw for one message: the final ACK code and how often it got no answer."""

    code: str = ""
    ack: bytes = b""
    sent_at: float = 0.0  # time.monotonic() of the send that got the final answer
    unanswered: int = 0


@dataclass
class ResendingSender:
    """A RIS that sends its queue over one connection at a time and resends every message it
    got no answer for (connection refused, closed or reset) until it gets one or time runs out.

    Runs in a thread (``start``/``join``); ``answered`` counts messages with a final answer.
    """

    port: int
    messages: dict[str, bytes]  # MSH-10 -> message, sent in this order
    retry_interval: float = 0.2  # a RIS's resend interval, not a wait for readiness
    timeout: float = 120.0
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.deliveries = {cid: Delivery() for cid in self.messages}

    @property
    def answered(self) -> int:
        return sum(1 for d in self.deliveries.values() if d.code)

    @property
    def pending(self) -> list[str]:
        return [cid for cid, d in self.deliveries.items() if not d.code]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="ris-sender", daemon=True)
        self._thread.start()

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(self.timeout + 10)
        assert not self._thread.is_alive(), "the sender did not finish"

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.pending and time.monotonic() < deadline and not self._stop.is_set():
            try:
                peer = MllpPeer(self.port, timeout=10.0)
            except OSError:
                self._stop.wait(self.retry_interval)
                continue
            self.connections += 1
            with peer:
                self._send_pending(peer)
            if self.pending:
                self._stop.wait(self.retry_interval)

    def _send_pending(self, peer: MllpPeer) -> None:
        for cid in self.pending:
            if self._stop.is_set():
                return
            sent_at = time.monotonic()
            try:
                answer = peer.exchange(self.messages[cid])
            except OSError:
                answer = None
            delivery = self.deliveries[cid]
            if answer is None:
                delivery.unanswered += 1
                return  # reconnect and resend from here
            delivery.code, delivery.ack, delivery.sent_at = ack_code(answer), answer, sent_at


@dataclass(frozen=True)
class Applied:
    """What the database holds for a set of orders."""

    orders: Counter[str]  # accession -> imaging service requests
    steps: Counter[str]  # accession -> scheduled procedure steps
    accepted: Counter[str]  # MSH-10 -> hl7_message rows with outcome AA


def applied(database_url: str, control_ids: list[str]) -> Applied:
    """Count, per order of ``control_ids``, its orders, steps and accepted log rows."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            orders = conn.execute(
                text("SELECT accession_number FROM imaging_service_request")
            ).scalars()
            steps = conn.execute(
                text(
                    "SELECT o.accession_number FROM scheduled_procedure_step s "
                    "JOIN requested_procedure p ON p.id = s.procedure_pk "
                    "JOIN imaging_service_request o ON o.id = p.order_pk"
                )
            ).scalars()
            accepted = conn.execute(
                text(
                    "SELECT control_id FROM hl7_message WHERE outcome = 'AA' "
                    "AND sending_application = :app"
                ),
                {"app": SENDER},
            ).scalars()
            wanted = {accession_of(cid) for cid in control_ids}
            return Applied(
                Counter(a for a in orders if a in wanted),
                Counter(a for a in steps if a in wanted),
                Counter(c for c in accepted if c in set(control_ids)),
            )
    finally:
        engine.dispose()


def assert_each_applied_once(database_url: str, acked: list[str]) -> None:
    """Every order in ``acked`` (MSH-10s answered AA) is in the database exactly once: one
    order, one step and one accepted log row each (none lost, none doubled)."""
    found = applied(database_url, acked)
    counts = {
        cid: (found.orders[accession_of(cid)], found.steps[accession_of(cid)], found.accepted[cid])
        for cid in acked
    }
    wrong = {cid: n for cid, n in counts.items() if n != (1, 1, 1)}
    assert not wrong, f"AA'd orders not applied exactly once (orders, steps, AA rows): {wrong}"
