"""Worklist items: write one item, find items for a query, read, delete and move status.

A worklist item (PS3.4 K.6.1.2.1) is one Scheduled Procedure Step with its Requested Procedure,
Imaging Service Request, Visit and Patient. Items leave this module as DICOM JSON (plain dicts).
Rows are written by ``app.services.write``; rows become items in ``app.services.read``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset
from app.domain.errors import ConflictError, NotFoundError
from app.domain.items import WorklistItemData
from app.domain.status import SpsStatus
from app.domain.worklist import WorklistQuery
from app.models import ImagingServiceRequest, RequestedProcedure, ScheduledProcedureStep
from app.services import read, write

_STREAM_BATCH = 500


@dataclass(frozen=True)
class StoredItem:
    """A written item: its DICOM JSON and whether the step was created by this call."""

    item: JsonDataset
    created: bool
    step_pk: int


def find(session: Session, *, query: WorklistQuery, offset: int = 0) -> Iterator[JsonDataset]:
    """Stream the items matching ``query`` in start order (PS3.4 K.2.2, C.2.2.2).

    Rows are fetched in batches and confirmed one by one with ``WorklistQuery.matches``; the
    caller stops iterating whenever it has enough (or the peer cancelled).
    """
    statement = read.find_statement(query).execution_options(yield_per=_STREAM_BATCH)
    skipped = 0
    for row in session.execute(statement):
        typed: read.Row = tuple(row)
        if not query.matches(read.record_of(typed)):
            continue
        if skipped < offset:
            skipped += 1
            continue
        yield read.assemble_item(typed)


def get_item(session: Session, *, study_uid: str, sps_id: str) -> JsonDataset:
    row = read.row_by_identity(session, study_uid, sps_id)
    if row is None:
        raise NotFoundError(f"no worklist item {study_uid}/{sps_id}")
    return read.assemble_item(row)


def create_new_items(
    session: Session, items: Sequence[WorklistItemData], *, actor: Actor
) -> list[int]:
    """Create at once those ``items`` that are certainly new: their Study Instance UID is
    unknown and appears once in ``items``. Returns their indexes; the others are left for
    ``upsert_item`` (an update, or several steps of one procedure)."""
    uids = [item.procedure.study_instance_uid for item in items]
    known = set(
        session.exec(
            select(RequestedProcedure.study_instance_uid).where(
                col(RequestedProcedure.study_instance_uid).in_(set(uids))
            )
        )
    )
    counts = Counter(uids)
    chosen = [n for n, uid in enumerate(uids) if uid not in known and counts[uid] == 1]
    if chosen:
        write.create_items(session, [items[n] for n in chosen], actor=actor)
    return chosen


def _find_order(
    session: Session, patient_pk: int | None, accession_number: str
) -> ImagingServiceRequest | None:
    if not accession_number:
        return None
    return session.exec(
        select(ImagingServiceRequest).where(
            ImagingServiceRequest.accession_number == accession_number,
            ImagingServiceRequest.patient_pk == patient_pk,
        )
    ).first()


def upsert_item(session: Session, *, data: WorklistItemData, actor: Actor) -> StoredItem:
    """Create the item, or update it when its Study Instance UID + SPS ID exists.

    The patient is found or created by Patient ID + Issuer; the order by Accession Number
    within that patient; the requested procedure by Study Instance UID.
    """
    patient = write.ensure_patient(session, data.patient, actor=actor)
    procedure = session.exec(
        select(RequestedProcedure).where(
            RequestedProcedure.study_instance_uid == data.procedure.study_instance_uid
        )
    ).first()
    if procedure is None:
        order = _find_order(
            session, patient.id, data.order.accession_number
        ) or write.create_order_row(session, patient, data.order, actor=actor)
        procedure = write.create_procedure_row(session, order, data.procedure, actor=actor)
    else:
        order = session.get_one(ImagingServiceRequest, procedure.order_pk)
        if order.patient_pk != patient.id:
            raise ConflictError(
                f"Study Instance UID {data.procedure.study_instance_uid} belongs to another "
                "patient",
                field="StudyInstanceUID",
            )
        order_values = {
            **write.order_values(data.order),
            "attributes": {**order.attributes, **data.order.attributes},
        }
        write.update_row(session, order, write.ORDER, order_values, actor=actor)
        write.update_row(
            session, procedure, write.PROCEDURE, write.procedure_values(data.procedure), actor=actor
        )
    step = session.exec(
        select(ScheduledProcedureStep).where(
            ScheduledProcedureStep.procedure_pk == procedure.id,
            ScheduledProcedureStep.sps_id == data.step.sps_id,
        )
    ).first()
    created = step is None
    if step is None:
        step = write.create_step_row(session, procedure, data.step, actor=actor)
    else:
        values = write.step_values(data.step)
        write.update_step_row(session, step, values, data.step.status, actor=actor)
    session.flush()
    assert step.id is not None
    return StoredItem(read.assemble_item((step, procedure, order, patient)), created, step.id)


def _step_by_identity(session: Session, study_uid: str, sps_id: str) -> ScheduledProcedureStep:
    row = read.row_by_identity(session, study_uid, sps_id)
    if row is None:
        raise NotFoundError(f"no worklist item {study_uid}/{sps_id}")
    return row[0]


def set_status(
    session: Session, *, study_uid: str, sps_id: str, status: SpsStatus, actor: Actor
) -> JsonDataset:
    step = _step_by_identity(session, study_uid, sps_id)
    write.move_status(session, step, status, actor=actor)
    session.flush()
    return get_item(session, study_uid=study_uid, sps_id=sps_id)


def delete_item(session: Session, *, study_uid: str, sps_id: str, actor: Actor) -> None:
    """Remove the step; a procedure or order left without steps goes with it."""
    write.delete_step_row(session, _step_by_identity(session, study_uid, sps_id), actor=actor)
