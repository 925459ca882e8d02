"""The whole broker in-process: MPPS from a modality, status messages to a real MLLP receiver
(the RIS) through the outbox. The RIS is down, comes back, and the broker restarts between."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]
from sqlmodel import select

from app.db import session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.models import OutboxMessage
from app.runtime import Broker
from app.services import worklist
from hl7_ingest.server import MllpServer
from tests.support.items import mwl_item
from tests.support.mpps import n_create, n_set
from tests.support.net import free_port, wait_until
from tests.support.settings import make_settings

MPPS = ModalityPerformedProcedureStep


class Ris:
    """A fake RIS: an MLLP receiver that records ORC-5 of each status message and answers AA."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, str]] = []  # (MSH-10, ORC-5)
        self.lock = threading.Lock()
        self.server: MllpServer | None = None

    def handle(self, payload: bytes) -> bytes:
        segments = {s.split("|")[0]: s.split("|") for s in payload.decode().split("\r") if s}
        control_id = segments["MSH"][9]
        with self.lock:
            self.received.append((control_id, segments["ORC"][5]))
        msh = f"MSH|^~\\&|RIS|H|MWL|R|20260101||ACK|A{control_id}|P|2.3.1"
        return f"{msh}\rMSA|AA|{control_id}\r".encode()

    def start(self) -> None:
        self.server = MllpServer(
            self.handle,
            reject=lambda _r: None,
            host="127.0.0.1",
            port=self.port,
            max_frame_bytes=1 << 20,
            idle_timeout=30,
        )
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def statuses(self) -> list[str]:
        with self.lock:
            return [status for _, status in self.received]


@pytest.fixture
def ris() -> Iterator[Ris]:
    receiver = Ris(free_port())
    yield receiver
    receiver.stop()


def start_broker(sqlite_url: str, tmp_path: Path, ris: Ris) -> Broker:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        ris_hl7_endpoint=f"127.0.0.1:{ris.port}",
        outbox_retry_min=0.05,
        outbox_retry_max=0.2,
    )
    broker = Broker(settings, only="dicom")
    broker.start()
    return broker


def send(broker: Broker, operation: str, ds: Dataset, uid: str) -> int:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", broker.ports["dicom"], ae_title="MWLBROKER")
    assert assoc.is_established
    try:
        if operation == "create":
            status, _ = assoc.send_n_create(ds, MPPS, uid)
        else:
            status, _ = assoc.send_n_set(ds, MPPS, uid)
    finally:
        assoc.release()
    return int(status.Status)


def pending(broker: Broker) -> list[OutboxMessage]:
    with session_scope(broker.session_factory) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.state == "pending")))


def test_status_reaches_the_ris_once_in_order(sqlite_url: str, tmp_path: Path, ris: Ris) -> None:
    broker = start_broker(sqlite_url, tmp_path, ris)
    try:
        with session_scope(broker.session_factory) as session:
            worklist.upsert_item(
                session, data=item_from_json(mwl_item()), actor=Actor(AuditSource.CLI)
            )
        # The RIS is down: the IN PROGRESS message waits, retried with back-off.
        assert send(broker, "create", n_create(), "1.2.9.1") == 0x0000
        wait_until(lambda: any(m.attempts >= 2 for m in pending(broker)), what="retries")
        assert ris.statuses() == []
        assert send(broker, "set", n_set("COMPLETED"), "1.2.9.1") == 0x0000
    finally:
        broker.stop()
    # The broker restarts (a new process would do the same) with both messages still queued.
    assert len(_pending(sqlite_url, tmp_path, ris)) == 2
    ris.start()
    broker = start_broker(sqlite_url, tmp_path, ris)
    try:
        wait_until(lambda: len(ris.statuses()) >= 2, what="delivery")
        wait_until(lambda: not pending(broker), what="marked sent")
        assert ris.statuses() == ["IP", "CM"]  # once each, in order
        assert len({control_id for control_id, _ in ris.received}) == 2
    finally:
        broker.stop()


def _pending(sqlite_url: str, tmp_path: Path, ris: Ris) -> list[OutboxMessage]:
    broker = Broker(make_settings(sqlite_url, tmp_path, ris_hl7_endpoint=f"127.0.0.1:{ris.port}"))
    try:
        return pending(broker)
    finally:
        broker.stop()
