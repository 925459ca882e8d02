"""GET /metrics of a whole broker: the counters move with real DICOM and MLLP traffic; both
databases. Access: a viewer token by default, open only with BROKER_METRICS_PUBLIC."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    Verification,
)

from app.db import session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.runtime import Broker
from app.services import stations, worklist
from hl7_ingest.mllp import END_BLOCK, frame
from tests.support.auth import bearer, create_api_token
from tests.support.items import mwl_item
from tests.support.metrics import Samples, moved, scrape, value
from tests.support.net import wait_until
from tests.support.settings import make_settings

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
ORDER = (DATA / "orm_o01_nw.hl7").read_bytes()
NO_MSH = (DATA / "broken_no_msh.hl7").read_bytes()
BROKER_AE = "MWLBROKER"


class Running:
    def __init__(self, broker: Broker, ports: dict[str, int], token: str) -> None:
        self.broker = broker
        self.ports = ports
        self.base_url = f"http://127.0.0.1:{ports['http']}"
        self.headers = bearer(token)

    def scrape(self) -> Samples:
        return scrape(self.base_url, self.headers)


@pytest.fixture
def running(database_url: str, tmp_path: Path) -> Iterator[Running]:
    token = create_api_token(database_url, role="viewer", name="prometheus")
    broker = Broker(make_settings(database_url, tmp_path))
    with session_scope(broker.session_factory) as session:
        for modality in ("CT", "CR"):
            stations.create_station(
                session,
                data=stations.StationData(modality, f"{modality}01"),
                actor=Actor(AuditSource.REST),
            )
        worklist.upsert_item(
            session, data=item_from_json(mwl_item()), actor=Actor(AuditSource.REST)
        )
    ports = broker.start()
    try:
        yield Running(broker, ports, token)
    finally:
        broker.stop()


def associate(port: int, called: str = BROKER_AE) -> object:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityWorklistInformationFind)
    return ae.associate("127.0.0.1", port, ae_title=called)


def mllp(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame(payload))
        reply = b""
        while not reply.endswith(END_BLOCK):
            chunk = sock.recv(65536)
            assert chunk, "the broker closed the connection without an ACK"
            reply += chunk
    return reply


def worklist_query() -> Dataset:
    step = Dataset()
    step.ScheduledStationAETitle = "CT01"
    step.ScheduledProcedureStepStartDate = ""
    identifier = Dataset()
    identifier.PatientID = ""
    identifier.ScheduledProcedureStepSequence = [step]
    return identifier


def test_counters_move_with_dicom_and_hl7_traffic(running: Running) -> None:
    before = running.scrape()
    port = running.ports["dicom"]

    echo = associate(port)
    assert echo.is_established  # type: ignore[attr-defined]
    assert echo.send_c_echo().Status == 0  # type: ignore[attr-defined]
    during = running.scrape()
    assert value(during, "mwl_dicom_associations_open") == 1
    echo.release()  # type: ignore[attr-defined]

    assert associate(port, called="SOMEONE_ELSE").is_rejected  # type: ignore[attr-defined]

    find = associate(port)
    statuses = [
        s.Status for s, _ in find.send_c_find(worklist_query(), ModalityWorklistInformationFind)
    ]  # type: ignore[attr-defined]
    assert statuses == [0xFF00, 0x0000]
    find.abort()  # type: ignore[attr-defined]

    assert b"MSA|AA|" in mllp(running.ports["hl7"], ORDER)
    assert b"MSA|AR|" in mllp(running.ports["hl7"], NO_MSH)

    def settled() -> bool:
        now = running.scrape()
        return (
            value(now, "mwl_dicom_associations_open") == 0
            and moved(before, now, "mwl_dicom_associations_released_total") == 1
        )

    wait_until(settled, what="the released and aborted associations to end")
    after = running.scrape()
    assert moved(before, after, "mwl_dicom_associations_accepted_total") == 2
    assert moved(before, after, "mwl_dicom_associations_rejected_total", reason="called_ae") == 1
    assert moved(before, after, "mwl_dicom_associations_aborted_total") == 1
    finds = "mwl_dicom_find_duration_seconds_count"
    assert moved(before, after, finds, model="worklist") == 1
    assert moved(before, after, finds, model="query_retrieve") == 0
    assert moved(before, after, "mwl_hl7_messages_total", ack="AA") == 1
    assert moved(before, after, "mwl_hl7_messages_total", ack="AR") == 1
    assert moved(before, after, "mwl_hl7_messages_total", ack="AE") == 0
    assert value(after, "mwl_dicom_connections_unassociated") == 0
    assert value(after, "mwl_metrics_database_up") == 1
    assert value(after, "mwl_outbox_pending") == 0
    assert value(after, "mwl_mpps_instances", status="IN PROGRESS") == 0
    assert value(after, "process_start_time_seconds") > 0


def test_a_connection_that_never_associates_is_counted_until_it_closes(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.ports["dicom"]), timeout=10):
        wait_until(
            lambda: value(running.scrape(), "mwl_dicom_connections_unassociated") == 1,
            what="the silent connection to show",
        )
    wait_until(
        lambda: value(running.scrape(), "mwl_dicom_connections_unassociated") == 0,
        what="the closed connection to go",
    )


def test_metrics_need_a_token_by_default(running: Running) -> None:
    anonymous = httpx.get(f"{running.base_url}/metrics", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{running.base_url}/metrics", headers=bearer("mwl_wrong"), timeout=10)
    assert wrong.status_code == 401
    assert (
        "mwl_hl7_messages_total"
        in httpx.get(f"{running.base_url}/metrics", headers=running.headers, timeout=10).text
    )
