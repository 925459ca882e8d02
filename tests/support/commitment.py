"""Storage commitment test helpers: stored instances (rows and Part 10 files), a broker with its
outbox worker driven by hand, and a requester SCU that listens for N-EVENT-REPORTs.

Until the Storage SCP lands, instances are put in place here (``store_instance``): a real Part
10 file under the storage folder and its study/series/instance rows, as the store will write
them.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer
from sqlmodel import select

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.delivery import OutboxWorker
from app.models import RemoteAe, StoredInstance, StoredSeries, StoredStudy
from app.schemas import StorageCommitmentView
from app.services import commitment
from app.services.mpps import Delivery
from dicom_scp.outbound import dicom_sender
from dicom_scp.server import DicomServer
from tests.support.net import wait_until

CT = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
MR = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
STUDY = "1.2.826.0.1.3680043.8.498.7001"
SERIES = "1.2.826.0.1.3680043.8.498.7001.1"
WELL_KNOWN = "1.2.840.10008.1.20.1.1"


def store_instance(
    factory: SessionFactory, storage_dir: Path, *, sop_class: str, sop_instance: str
) -> Path:
    """A Part 10 file under ``storage_dir`` and its rows; returns the file."""
    relative = Path(STUDY) / SERIES / f"{sop_instance}.dcm"
    path = storage_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.Modality = "CT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    with session_scope(factory) as session:
        study = session.exec(
            select(StoredStudy).where(StoredStudy.study_instance_uid == STUDY)
        ).first() or StoredStudy(study_instance_uid=STUDY)
        session.add(study)
        session.flush()
        series = session.exec(
            select(StoredSeries).where(StoredSeries.series_instance_uid == SERIES)
        ).first()
        if series is None:
            assert study.id is not None
            series = StoredSeries(study_pk=study.id, series_instance_uid=SERIES, modality="CT")
            session.add(series)
            session.flush()
        assert series.id is not None
        session.add(
            StoredInstance(
                series_pk=series.id,
                sop_instance_uid=sop_instance,
                sop_class_uid=sop_class,
                transfer_syntax_uid=str(ExplicitVRLittleEndian),
                path=str(relative),
                size_bytes=path.stat().st_size,
            )
        )
    return path


def register_requester(
    factory: SessionFactory,
    ae_title: str,
    port: int,
    services: tuple[str, ...] = ("commit",),
    *,
    tls: bool = False,
) -> None:
    with session_scope(factory) as session:
        session.add(
            RemoteAe(
                ae_title=ae_title, host="127.0.0.1", port=port, services=list(services), tls=tls
            )
        )


class CommitmentBroker:
    """The DICOM listener on a free port with its outbox worker, which the test runs by hand."""

    def __init__(self, settings: Settings, client: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings.database_url)
        self.factory: SessionFactory = create_session_factory(self.engine)
        self.server = DicomServer(
            settings.dicom, settings.worklist, self.factory, Delivery(), settings.storage.dir
        )
        self.port = self.server.start()
        self.worker = OutboxWorker(
            self.factory,
            {"dicom": dicom_sender(settings.dicom, self.factory, client=client)},
            retry_min=settings.outbox.retry_min,
            retry_max=settings.outbox.retry_max,
        )

    @property
    def storage_dir(self) -> Path:
        return self.settings.storage.dir

    def store(self, sop_class: str, sop_instance: str) -> Path:
        return store_instance(
            self.factory, self.storage_dir, sop_class=sop_class, sop_instance=sop_instance
        )

    def commitment(self, transaction_uid: str) -> StorageCommitmentView:
        with session_scope(self.factory) as session:
            return commitment.get(session, transaction_uid=transaction_uid)

    def wait_for_state(self, transaction_uid: str, *states: str) -> StorageCommitmentView:
        wait_until(
            lambda: self.commitment(transaction_uid).state in states,
            what=f"commitment {transaction_uid} in {states}",
        )
        return self.commitment(transaction_uid)

    def stop(self) -> None:
        self.server.stop()
        self.engine.dispose()


@dataclass
class Report:
    """An N-EVENT-REPORT the requester received."""

    event_type: int
    dataset: Dataset
    same_association: bool  # on the association the requester opened (else a new one)
    calling_ae: str
    as_scu: bool  # the role the requester took in the context the report came on
    as_scp: bool


@dataclass
class Requester:
    """A Storage Commitment SCU: sends N-ACTIONs and listens for N-EVENT-REPORTs on its own
    port (its association acceptor accepts the SCP role the broker proposes)."""

    ae_title: str = "MODALITY1"
    port: int = 0
    answer: int = 0x0000
    reports: list[Report] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadedAssociationServer | None = None

    def _on_report(self, event: evt.Event) -> tuple[int, Dataset | None]:
        context = next(
            c for c in event.assoc.accepted_contexts if c.context_id == event.context.context_id
        )
        with self.lock:
            self.reports.append(
                Report(
                    int(getattr(event.request, "EventTypeID", 0) or 0),
                    event.event_information,
                    event.assoc.is_requestor,
                    str(event.assoc.requestor.ae_title).strip(),
                    bool(context.as_scu),
                    bool(context.as_scp),
                )
            )
        return self.answer, (Dataset() if self.answer == 0 else None)

    def listen(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> int:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self.server = ae.start_server(
            ("127.0.0.1", port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)],
            ssl_context=ssl_context,
        )
        self.port = int(self.server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def associate(self, broker_port: int, called: str = "MWLBROKER") -> Association:
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate(
            "127.0.0.1",
            broker_port,
            ae_title=called,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)],
        )
        assert assoc.is_established
        return assoc

    def request(
        self,
        broker_port: int,
        transaction_uid: str,
        references: list[tuple[str, str]],
        *,
        keep_open: bool = False,
        **action: Any,
    ) -> int:
        """Send an N-ACTION; with ``keep_open`` wait on the association for the report."""
        assoc = self.associate(broker_port)
        try:
            status, _ = assoc.send_n_action(
                action_information(transaction_uid, references),
                action.get("action_type", 1),
                StorageCommitmentPushModel,
                action.get("instance", WELL_KNOWN),
            )
            if keep_open:
                wait_until(lambda: len(self.reports) > 0, what="N-EVENT-REPORT")
        finally:
            assoc.release()
        return int(status.Status)

    def report(self) -> Report:
        wait_until(lambda: len(self.reports) > 0, what="N-EVENT-REPORT")
        with self.lock:
            return self.reports[0]


def action_information(transaction_uid: str, references: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    if transaction_uid:
        ds.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    if items:
        ds.ReferencedSOPSequence = items
    return ds


def referenced(ds: Dataset, sequence: str) -> list[tuple[str, str]]:
    return [
        (str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
        for i in ds.get(sequence) or ()
    ]


def failure_reasons(ds: Dataset) -> dict[str, int]:
    return {
        str(i.ReferencedSOPInstanceUID): int(i.FailureReason)
        for i in ds.get("FailedSOPSequence") or ()
    }
