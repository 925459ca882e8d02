"""MPPS forwarding over real associations to a pynetdicom MPPS SCP stub on a free port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from pynetdicom.transport import ThreadedAssociationServer

from app.config import Settings
from app.delivery import OutboxMessageView
from dicom_scp.forward import ForwardError, delivered, mpps_forwarder, parse_target
from tests.support.net import free_port
from tests.support.settings import make_settings

MPPS = ModalityPerformedProcedureStep
INSTANCE = "1.2.826.0.1.3680043.8.498.1"


@dataclass
class MppsStub:
    """Records N-CREATE / N-SET requests and answers ``status``."""

    status: int = 0x0000
    requests: list[tuple[str, str, str, Dataset]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadedAssociationServer | None = None
    port: int = 0

    def _record(self, event: evt.Event, name: str) -> tuple[int, Dataset | None]:
        request = event.request
        uid = (
            request.AffectedSOPInstanceUID
            if name == "N-CREATE"
            else request.RequestedSOPInstanceUID
        )
        with self.lock:
            self.requests.append(
                (name, event.assoc.requestor.ae_title, str(uid), event.attribute_list)
            )
        return self.status, (Dataset() if self.status < 0xA000 else None)

    def start(self) -> int:
        ae = AE(ae_title="ARCHIVE")
        ae.add_supported_context(MPPS)
        handlers = [
            (evt.EVT_N_CREATE, lambda e: self._record(e, "N-CREATE")),
            (evt.EVT_N_SET, lambda e: self._record(e, "N-SET")),
        ]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = int(self.server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@pytest.fixture
def stub() -> Iterator[MppsStub]:
    scp = MppsStub()
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture
def forward_settings(tmp_path: Path) -> Settings:
    return make_settings(
        f"sqlite:///{tmp_path / 'unused.db'}",
        tmp_path,
        ae_title="MWLBROKER",
        acse_timeout=5.0,
        dimse_timeout=5.0,
        network_timeout=5.0,
    )


def create_view(destination: str, pk: int = 1) -> OutboxMessageView:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = "PPS1"
    ds.Modality = "CT"
    ds.PatientName = "DOE^JANE"
    return OutboxMessageView(
        pk,
        "dicom",
        destination,
        INSTANCE,
        "mpps-create",
        {"sop_instance_uid": INSTANCE, "dataset": ds.to_json_dict()},
        0,
    )


def set_view(destination: str, pk: int = 2) -> OutboxMessageView:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20260301"
    return OutboxMessageView(
        pk,
        "dicom",
        destination,
        INSTANCE,
        "mpps-set",
        {"sop_instance_uid": INSTANCE, "dataset": ds.to_json_dict()},
        0,
    )


def test_create_and_set_are_forwarded(stub: MppsStub, forward_settings: Settings) -> None:
    send = mpps_forwarder(forward_settings)
    to = f"ARCHIVE@127.0.0.1:{stub.port}"
    send(create_view(to))
    send(set_view(to))

    (create, calling, uid, created), (n_set, _, set_uid, modification) = stub.requests
    assert (create, calling, uid) == ("N-CREATE", "MWLBROKER", INSTANCE)
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert created.PatientName == "DOE^JANE"
    assert (n_set, set_uid) == ("N-SET", INSTANCE)
    assert modification.PerformedProcedureStepStatus == "COMPLETED"
    assert modification.PerformedProcedureStepEndDate == "20260301"


@pytest.mark.parametrize("status", [0x0001, 0x0107, 0x0116, 0xB000])
def test_warnings_count_as_delivered(
    stub: MppsStub, forward_settings: Settings, status: int
) -> None:
    stub.status = status
    mpps_forwarder(forward_settings)(set_view(f"ARCHIVE@127.0.0.1:{stub.port}"))
    assert len(stub.requests) == 1


def test_a_failure_status_raises(stub: MppsStub, forward_settings: Settings) -> None:
    stub.status = 0x0110  # Processing failure: e.g. N-SET after the final state (PS3.4 F.7.2.2)
    with pytest.raises(ForwardError, match="0x0110"):
        mpps_forwarder(forward_settings)(set_view(f"ARCHIVE@127.0.0.1:{stub.port}"))


def test_no_listener_raises(forward_settings: Settings) -> None:
    with pytest.raises(ForwardError, match="association"):
        mpps_forwarder(forward_settings)(create_view(f"ARCHIVE@127.0.0.1:{free_port()}"))


def test_a_rejected_association_raises(forward_settings: Settings) -> None:
    ae = AE(ae_title="ARCHIVE")
    ae.add_supported_context(MPPS)
    ae.require_called_aet = True
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        port = int(server.server_address[1])
        with pytest.raises(ForwardError, match="rejected"):
            mpps_forwarder(forward_settings)(create_view(f"OTHER@127.0.0.1:{port}"))
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, True),
        (0xB006, True),
        (0x0107, True),
        (0x0110, False),
        (0xA700, False),
        (0x0106, False),
        (0xFE00, False),
        (0xC000, False),
    ],
)
def test_delivered_statuses(status: int, expected: bool) -> None:
    assert delivered(status) is expected


@pytest.mark.parametrize("bad", ["127.0.0.1:104", "@host:104", "AE@host", "AE@host:x"])
def test_bad_destination(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_other_kinds_are_refused(forward_settings: Settings) -> None:
    view: Any = create_view("ARCHIVE@127.0.0.1:104")
    wrong = OutboxMessageView(view.id, "dicom", view.destination, "k", "mpps-status", {}, 0)
    with pytest.raises(ValueError):
        mpps_forwarder(forward_settings)(wrong)
