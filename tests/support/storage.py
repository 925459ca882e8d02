"""Storage helpers: instances as the Storage SCP adapter hands them to the service."""

from __future__ import annotations

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.services import storage, worklist
from tests.support.items import mwl_item


def received(
    sop_uid: str,
    *,
    study_uid: str = "1.2.3.4.1",
    series_uid: str = "1.2.3.4.1.1",
    patient_id: str = "P1",
    accession: str = "A1",
    data: bytes = b"DICM-fake",
    modality: str = "CT",
) -> storage.ReceivedInstance:
    return storage.ReceivedInstance(
        data=data,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=sop_uid,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        calling_ae_title="CT01",
        attributes={
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": series_uid,
            "PatientID": patient_id,
            "PatientName": "DOE^JANE",
            "AccessionNumber": accession,
            "Modality": modality,
            "SeriesNumber": "1",
            "InstanceNumber": "1",
        },
    )


def add_order(factory: SessionFactory, **kwargs: object) -> int:
    """A worklist item (order, procedure, step); returns the step's id."""
    with session_scope(factory) as session:
        stored = worklist.upsert_item(
            session,
            data=item_from_json(mwl_item(**kwargs)),
            actor=Actor(AuditSource.CLI),  # type: ignore[arg-type]
        )
    return stored.step_pk
