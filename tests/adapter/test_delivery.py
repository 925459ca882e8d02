"""OutboxWorker with the real HL7 sender against a fake RIS (an MllpServer on a free port):
nothing is lost while the RIS is down or refuses, nothing is sent twice, order holds per key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.delivery import OutboxMessageView, OutboxWorker
from app.services import outbox
from hl7_ingest.outbound import hl7_sender
from hl7_ingest.server import MllpServer
from tests.support.net import free_port, wait_until
from tests.support.settings import make_settings

FAST_RETRY = {"retry_min": 0.05, "retry_max": 0.2}
SLOW_RETRY = {"retry_min": 60.0, "retry_max": 600.0}


@dataclass
class FakeRis:
    """Records every message (MSH-10 and ORC-5) and answers AA, or ``answer`` when set."""

    port: int = 0
    answer: str = "AA"
    received: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: MllpServer | None = None

    def handle(self, payload: bytes) -> bytes:
        segments = {s[:3]: s.split("|") for s in payload.decode().split("\r") if s}
        control_id, order_status = segments["MSH"][9], segments["ORC"][5]
        with self.lock:
            self.received.append((control_id, order_status))
        ack = "MSH|^~\\&|RIS|HOSP|MWLBROKER|RADIOLOGY|20260301||ACK|R1|P|2.3.1\r"
        text = "|order is locked" if self.answer != "AA" else ""
        return f"{ack}MSA|{self.answer}|{control_id}{text}\r".encode()

    def start(self) -> int:
        self.server = MllpServer(
            self.handle,
            reject=lambda _reason: None,
            host="127.0.0.1",
            port=self.port,
            max_frame_bytes=1_048_576,
            idle_timeout=10.0,
        )
        self.port = self.server.start()
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def control_ids(self) -> list[str]:
        with self.lock:
            return [cid for cid, _ in self.received]


@dataclass
class Broker:
    """The delivery side of one broker process: its own engine, factory and worker."""

    settings: Settings
    retry: dict[str, float]

    def __post_init__(self) -> None:
        self.engine = create_db_engine(self.settings.database_url)
        self.factory: SessionFactory = create_session_factory(self.engine)
        senders = {outbox.HL7: hl7_sender(self.settings, timeout=5.0)}
        self.worker = OutboxWorker(self.factory, senders, **self.retry, poll_interval=0.05)

    def close(self) -> None:
        self.worker.stop()
        self.engine.dispose()


@pytest.fixture
def ris() -> Iterator[FakeRis]:
    fake = FakeRis()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def broker_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, ris_hl7_message="ORM")


def status_payload(status: str, accession: str = "ACC1") -> dict[str, Any]:
    return {
        "mpps_uid": "1.2.3.9",
        "status": status,
        "at": "20260301093000",
        "patient": {"patient_id": "P1", "issuer_of_patient_id": "", "name": "DOE^JANE"},
        "order": {
            "accession_number": accession,
            "placer_order_number": "PL1",
            "filler_order_number": "",
        },
        "procedures": [
            {
                "requested_procedure_id": "RP1",
                "study_instance_uid": "1.2.3.4",
                "sps_id": "SPS1",
                "modality": "CT",
            }
        ],
        "discontinuation_reason": None,
    }


def enqueue(factory: SessionFactory, key: str, status: str, destination: str) -> int:
    with session_scope(factory) as session:
        return outbox.enqueue(
            session,
            channel=outbox.HL7,
            destination=destination,
            ordering_key=key,
            kind="mpps-status",
            payload=status_payload(status, accession=key),
        )


def rows(factory: SessionFactory) -> dict[int, tuple[str, int, str]]:
    """id -> (state, attempts, last_error)."""
    with session_scope(factory) as session:
        found = outbox.list_messages(session, limit=1000)
        return {m.id: (m.state, m.attempts, m.last_error) for m in found if m.id is not None}


def deliver_all(broker: Broker, expected: int) -> int:
    """run_once until ``expected`` messages were sent (retries wait for their back-off)."""
    total = 0

    def done() -> bool:
        nonlocal total
        total += broker.worker.run_once()
        return total >= expected

    wait_until(done, timeout=10.0, what=f"{expected} deliveries")
    return total


@pytest.fixture
def make_broker(broker_settings: Settings) -> Iterator[Any]:
    brokers: list[Broker] = []

    def make(retry: dict[str, float]) -> Broker:
        broker = Broker(broker_settings, retry)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.close()


def test_receiver_down_keeps_messages_pending(make_broker: Any) -> None:
    broker = make_broker(SLOW_RETRY)
    closed = f"127.0.0.1:{free_port()}"
    first = enqueue(broker.factory, "ACC1", "IN PROGRESS", closed)
    second = enqueue(broker.factory, "ACC1", "COMPLETED", closed)

    assert broker.worker.run_once() == 0

    state = rows(broker.factory)
    assert state[first][:2] == ("pending", 1)
    assert "DeliveryError" in state[first][2] and closed in state[first][2]
    assert state[second] == ("pending", 0, "")  # never tried: it waits behind the first
    assert broker.worker.run_once() == 0  # the back-off is not over
    assert rows(broker.factory)[first][1] == 1


def test_receiver_up_gets_each_message_once_in_order_per_key(
    make_broker: Any, ris: FakeRis
) -> None:
    broker = make_broker(SLOW_RETRY)
    to = f"127.0.0.1:{ris.port}"
    a1 = enqueue(broker.factory, "A", "IN PROGRESS", to)
    b1 = enqueue(broker.factory, "B", "IN PROGRESS", to)
    a2 = enqueue(broker.factory, "A", "COMPLETED", to)
    b2 = enqueue(broker.factory, "B", "DISCONTINUED", to)

    assert broker.worker.run_once() == 4
    assert broker.worker.run_once() == 0

    ids = ris.control_ids()
    assert sorted(ids) == sorted(f"MWL{pk}" for pk in (a1, a2, b1, b2))
    assert ids.index(f"MWL{a1}") < ids.index(f"MWL{a2}")
    assert ids.index(f"MWL{b1}") < ids.index(f"MWL{b2}")
    assert dict(ris.received)[f"MWL{b2}"] == "DC"
    assert all(state == ("sent", 1, "") for state in rows(broker.factory).values())


def test_pending_messages_survive_a_restart(make_broker: Any) -> None:
    port = free_port()
    to = f"127.0.0.1:{port}"
    before = make_broker(FAST_RETRY)
    ids = [enqueue(before.factory, "A", s, to) for s in ("IN PROGRESS", "COMPLETED")]
    ids.append(enqueue(before.factory, "B", "IN PROGRESS", to))
    assert before.worker.run_once() == 0  # the RIS is down
    before.close()  # the broker stops: engine disposed, nothing in memory survives

    ris = FakeRis(port=port)
    ris.start()
    try:
        after = make_broker(FAST_RETRY)  # a new process: new engine, new worker
        assert deliver_all(after, 3) == 3
        assert after.worker.run_once() == 0
        assert sorted(ris.control_ids()) == sorted(f"MWL{pk}" for pk in ids)
        assert ris.control_ids().index(f"MWL{ids[0]}") < ris.control_ids().index(f"MWL{ids[1]}")
        assert {state for state, _, _ in rows(after.factory).values()} == {"sent"}
    finally:
        ris.stop()


def test_a_refusing_ris_gets_the_same_message_again(make_broker: Any, ris: FakeRis) -> None:
    broker = make_broker(FAST_RETRY)
    ris.answer = "AE"
    pk = enqueue(broker.factory, "A", "IN PROGRESS", f"127.0.0.1:{ris.port}")

    assert broker.worker.run_once() == 0
    state, attempts, error = rows(broker.factory)[pk]
    assert (state, attempts) == ("pending", 1)
    assert "AE" in error and "order is locked" in error

    ris.answer = "AA"
    deliver_all(broker, 1)
    assert rows(broker.factory)[pk] == ("sent", 2, "")
    assert ris.control_ids() == [f"MWL{pk}", f"MWL{pk}"]  # same MSH-10: the RIS can dedupe


def test_a_failing_key_does_not_block_another(make_broker: Any, ris: FakeRis) -> None:
    broker = make_broker(SLOW_RETRY)
    closed = f"127.0.0.1:{free_port()}"
    up = f"127.0.0.1:{ris.port}"
    a1 = enqueue(broker.factory, "A", "IN PROGRESS", closed)
    a2 = enqueue(broker.factory, "A", "COMPLETED", closed)
    b1 = enqueue(broker.factory, "B", "IN PROGRESS", up)
    b2 = enqueue(broker.factory, "B", "COMPLETED", up)

    assert broker.worker.run_once() == 2

    state = rows(broker.factory)
    assert state[a1][:2] == ("pending", 1)
    assert state[a2] == ("pending", 0, "")
    assert state[b1][0] == state[b2][0] == "sent"
    assert ris.control_ids() == [f"MWL{b1}", f"MWL{b2}"]


def test_the_worker_thread_delivers_when_woken_and_stops(make_broker: Any, ris: FakeRis) -> None:
    broker = make_broker(SLOW_RETRY)
    broker.worker.start()
    assert broker.worker.running
    pk = enqueue(broker.factory, "A", "IN PROGRESS", f"127.0.0.1:{ris.port}")
    broker.worker.wake()
    wait_until(lambda: rows(broker.factory)[pk][0] == "sent", what="delivery by the thread")
    broker.worker.stop()
    assert not broker.worker.running
    assert ris.control_ids() == [f"MWL{pk}"]


def test_a_channel_without_sender_is_a_failed_try(broker_settings: Settings) -> None:
    engine = create_db_engine(broker_settings.database_url)
    factory = create_session_factory(engine)
    seen: list[OutboxMessageView] = []
    worker = OutboxWorker(factory, {outbox.HL7: seen.append}, **SLOW_RETRY)
    try:
        with session_scope(factory) as session:
            pk = outbox.enqueue(
                session,
                channel=outbox.DICOM,
                destination="X@h:1",
                ordering_key="k",
                kind="mpps-create",
                payload={},
            )
        assert worker.run_once() == 0
        assert rows(factory)[pk][:2] == ("pending", 1)
        assert "no sender for channel 'dicom'" in rows(factory)[pk][2]
        assert seen == []
    finally:
        engine.dispose()
