"""Worklist items: write one item, find items for a query, read, delete and move status.

A worklist item (PS3.4 K.6.1.2.1) is one Scheduled Procedure Step with its Requested Procedure,
Imaging Service Request, Visit and Patient. Items leave this module as DICOM JSON (plain dicts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from app.domain.dicom_json import JsonDataset, element
from app.domain.errors import ConflictError, InvalidTransitionError, NotFoundError
from app.domain.items import (
    COLUMNS,
    OrderData,
    ProcedureData,
    StepData,
    WorklistItemData,
)
from app.domain.matching import VALUE_SEPARATOR, person_name_key
from app.domain.mwl_attributes import BY_KEYWORD, SPS_SEQUENCE_KEY, Level
from app.domain.status import FINAL_STATUSES, AuditSource, SpsStatus, can_transition
from app.domain.worklist import WorklistQuery, WorklistRecord
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    ScheduledStationAETitle,
    utcnow,
)
from app.services import audit
from app.services.patients import ensure_patient
from app.services.sql import (
    name_key_condition,
    range_condition,
    text_key_condition,
)

STEP_ENTITY = "scheduled_procedure_step"
_STREAM_BATCH = 500

Row = tuple[ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient]


@dataclass(frozen=True)
class StoredItem:
    """A written item: its DICOM JSON and whether the step was created by this call."""

    item: JsonDataset
    created: bool
    step_pk: int


# ---------------------------------------------------------------------------------------------
# Assembly: rows -> DICOM JSON


def _level_elements(row: Any, level: Level) -> JsonDataset:
    out: JsonDataset = dict(row.attributes)
    for keyword, column in COLUMNS[level].items():
        attribute = BY_KEYWORD[keyword]
        value = getattr(row, column)
        if value or attribute.always_returned:  # Type 3 attributes appear only when known
            out[attribute.key] = element(attribute.vr, value)
    return out


def _step_elements(step: ScheduledProcedureStep) -> JsonDataset:
    out = _level_elements(step, Level.STEP)
    out["00400001"] = element("AE", *step.station_ae_title.split(VALUE_SEPARATOR))
    out["00400002"] = element("DA", step.start_datetime[:8])
    out["00400003"] = element("TM", step.start_datetime[8:])
    return out


def assemble_item(row: Row) -> JsonDataset:
    """The full worklist item of one step, as DICOM JSON with one SPS Sequence item."""
    step, procedure, order, patient = row
    item: JsonDataset = {}
    item.update(_level_elements(patient, Level.PATIENT))
    item.update(_level_elements(order, Level.ORDER))
    item.update(_level_elements(procedure, Level.PROCEDURE))
    item[SPS_SEQUENCE_KEY] = {"vr": "SQ", "Value": [_step_elements(step)]}
    return dict(sorted(item.items()))


def record_of(row: Row) -> WorklistRecord:
    step, procedure, order, patient = row
    return WorklistRecord(
        station_ae_titles=tuple(step.station_ae_title.split(VALUE_SEPARATOR)),
        start_datetime=step.start_datetime,
        modality=step.modality,
        performing_physician=step.performing_physician,
        sps_id=step.sps_id,
        sps_status=step.status,
        patient_name=patient.name,
        patient_id=patient.patient_id,
        birth_date=patient.birth_date,
        sex=patient.sex,
        accession_number=order.accession_number,
        requested_procedure_id=procedure.requested_procedure_id,
        study_instance_uid=procedure.study_instance_uid,
    )


# ---------------------------------------------------------------------------------------------
# Queries


def _joined() -> Any:
    return (
        select(ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient)
        .join(RequestedProcedure, col(ScheduledProcedureStep.procedure_pk) == RequestedProcedure.id)
        .join(ImagingServiceRequest, col(RequestedProcedure.order_pk) == ImagingServiceRequest.id)
        .join(Patient, col(ImagingServiceRequest.patient_pk) == Patient.id)
    )


def _station_condition(query: WorklistQuery) -> ColumnElement[bool] | None:
    condition = text_key_condition(col(ScheduledStationAETitle.ae_title), query.station_ae_title)
    if condition is None:
        return None
    titles = select(ScheduledStationAETitle.sps_pk).where(condition)
    return col(ScheduledProcedureStep.id).in_(titles)


def query_conditions(query: WorklistQuery) -> list[ColumnElement[bool]]:
    """SQL that narrows to a superset of ``query.matches`` through the indexes."""
    sps, rp, isr, pat = ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient
    conditions: list[ColumnElement[bool] | None] = [
        _station_condition(query),
        range_condition(col(sps.start_datetime), query.start),
        text_key_condition(col(sps.modality), query.modality),
        name_key_condition(col(sps.performing_physician_key), query.performing_physician),
        text_key_condition(col(sps.sps_id), query.sps_id),
        text_key_condition(col(sps.status), query.sps_status),
        name_key_condition(col(pat.name_key), query.patient_name),
        text_key_condition(col(pat.patient_id), query.patient_id),
        range_condition(col(pat.birth_date), query.birth_date),
        text_key_condition(col(pat.sex), query.sex),
        text_key_condition(col(isr.accession_number), query.accession_number),
        text_key_condition(col(rp.requested_procedure_id), query.requested_procedure_id),
    ]
    if query.start_time_of_day is not None:
        conditions.append(
            range_condition(func.substr(col(sps.start_datetime), 9, 6), query.start_time_of_day)
        )
    if query.study_instance_uids is not None:
        conditions.append(col(rp.study_instance_uid).in_(query.study_instance_uids))
    if not query.include_final:
        conditions.append(col(sps.status).not_in([s.value for s in FINAL_STATUSES]))
    return [c for c in conditions if c is not None]


def find_statement(query: WorklistQuery) -> Any:
    statement = _joined()
    for condition in query_conditions(query):
        statement = statement.where(condition)
    return statement.order_by(
        col(ScheduledProcedureStep.start_datetime), col(ScheduledProcedureStep.id)
    )


def find(session: Session, *, query: WorklistQuery, offset: int = 0) -> Iterator[JsonDataset]:
    """Stream the items matching ``query`` in start order (PS3.4 K.2.2, C.2.2.2).

    Rows are fetched in batches and confirmed one by one with ``WorklistQuery.matches``; the
    caller stops iterating whenever it has enough (or the peer cancelled).
    """
    rows = session.execute(find_statement(query).execution_options(yield_per=_STREAM_BATCH))
    skipped = 0
    for row in rows:
        typed: Row = tuple(row)
        if not query.matches(record_of(typed)):
            continue
        if skipped < offset:
            skipped += 1
            continue
        yield assemble_item(typed)


def _row_by_identity(session: Session, study_uid: str, sps_id: str) -> Row | None:
    statement = _joined().where(
        RequestedProcedure.study_instance_uid == study_uid,
        ScheduledProcedureStep.sps_id == sps_id,
    )
    row = session.execute(statement).first()
    return tuple(row) if row else None


def get_item(session: Session, *, study_uid: str, sps_id: str) -> JsonDataset:
    row = _row_by_identity(session, study_uid, sps_id)
    if row is None:
        raise NotFoundError(f"no worklist item {study_uid}/{sps_id}")
    return assemble_item(row)


def _assign(row: Any, values: dict[str, Any]) -> list[str]:
    changed = [name for name, value in values.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, values[name])
    return changed


def _order_values(data: OrderData) -> dict[str, Any]:
    values = {c: getattr(data, c) for c in COLUMNS[Level.ORDER].values() if getattr(data, c)}
    return values


def _procedure_values(data: ProcedureData) -> dict[str, Any]:
    return {
        "requested_procedure_id": data.requested_procedure_id,
        "description": data.description,
        "priority": data.priority,
        "attributes": data.attributes,
    }


def step_values(data: StepData) -> dict[str, Any]:
    return {
        "station_ae_title": VALUE_SEPARATOR.join(data.station_ae_titles),
        "start_datetime": data.start_datetime,
        "modality": data.modality,
        "performing_physician": data.performing_physician,
        "performing_physician_key": person_name_key(data.performing_physician),
        "description": data.description,
        "station_name": data.station_name,
        "location": data.location,
        "attributes": data.attributes,
    }


def _replace_station_titles(session: Session, step: ScheduledProcedureStep) -> None:
    assert step.id is not None
    session.execute(
        delete(ScheduledStationAETitle).where(col(ScheduledStationAETitle.sps_pk) == step.id)
    )
    for title in dict.fromkeys(step.station_ae_title.split(VALUE_SEPARATOR)):
        session.add(ScheduledStationAETitle(sps_pk=step.id, ae_title=title))


def _find_order(
    session: Session, patient: Patient, data: OrderData
) -> ImagingServiceRequest | None:
    if not data.accession_number:
        return None
    return session.exec(
        select(ImagingServiceRequest).where(
            ImagingServiceRequest.accession_number == data.accession_number,
            ImagingServiceRequest.patient_pk == patient.id,
        )
    ).first()


def create_order_row(
    session: Session, patient: Patient, data: OrderData, *, source: AuditSource
) -> ImagingServiceRequest:
    assert patient.id is not None
    order = ImagingServiceRequest(
        patient_pk=patient.id, attributes=data.attributes, **_order_values(data)
    )
    session.add(order)
    session.flush()
    assert order.id is not None
    audit.record(session, source=source, action="create", entity="order", entity_pk=order.id)
    return order


def create_procedure_row(
    session: Session, order: ImagingServiceRequest, data: ProcedureData, *, source: AuditSource
) -> RequestedProcedure:
    assert order.id is not None
    procedure = RequestedProcedure(
        order_pk=order.id, study_instance_uid=data.study_instance_uid, **_procedure_values(data)
    )
    session.add(procedure)
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(
            f"Study Instance UID {data.study_instance_uid} is already used",
            field="StudyInstanceUID",
        ) from None
    assert procedure.id is not None
    audit.record(
        session,
        source=source,
        action="create",
        entity="requested_procedure",
        entity_pk=procedure.id,
    )
    return procedure


def create_step_row(
    session: Session, procedure: RequestedProcedure, data: StepData, *, source: AuditSource
) -> ScheduledProcedureStep:
    assert procedure.id is not None
    status = data.status or SpsStatus.SCHEDULED
    step = ScheduledProcedureStep(
        procedure_pk=procedure.id, sps_id=data.sps_id, status=status.value, **step_values(data)
    )
    session.add(step)
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(
            f"SPS ID {data.sps_id} already exists in requested procedure "
            f"{procedure.requested_procedure_id}",
            field="ScheduledProcedureStepID",
        ) from None
    _replace_station_titles(session, step)
    assert step.id is not None
    audit.record(
        session,
        source=source,
        action="create",
        entity=STEP_ENTITY,
        entity_pk=step.id,
        detail={"status": step.status},
    )
    return step


def update_step_row(
    session: Session,
    step: ScheduledProcedureStep,
    values: dict[str, Any],
    status: SpsStatus | None,
    *,
    source: AuditSource,
) -> None:
    changed = _assign(step, values)
    if status is not None and status.value != step.status:
        move_status(session, step, status, source=source)
    if not changed:
        return
    step.updated_at = utcnow()
    session.add(step)
    session.flush()
    if "station_ae_title" in changed:
        _replace_station_titles(session, step)
    assert step.id is not None
    audit.record(
        session,
        source=source,
        action="update",
        entity=STEP_ENTITY,
        entity_pk=step.id,
        detail={"fields": sorted(changed)},
    )


def move_status(
    session: Session, step: ScheduledProcedureStep, status: SpsStatus, *, source: AuditSource
) -> None:
    current = SpsStatus(step.status)
    if not can_transition(current, status):
        raise InvalidTransitionError(
            f"step {step.sps_id} is {current}; it cannot become {status}",
            field="ScheduledProcedureStepStatus",
        )
    if current == status:
        return
    step.status = status.value
    step.updated_at = utcnow()
    session.add(step)
    assert step.id is not None
    audit.record(
        session,
        source=source,
        action="status",
        entity=STEP_ENTITY,
        entity_pk=step.id,
        detail={"from": current.value, "to": status.value},
    )


def upsert_item(session: Session, *, data: WorklistItemData, source: AuditSource) -> StoredItem:
    """Create the item, or update it when its Study Instance UID + SPS ID exists.

    The patient is found or created by Patient ID + Issuer; the order by Accession Number
    within that patient; the requested procedure by Study Instance UID.
    """
    patient = ensure_patient(session, data.patient, source=source)
    procedure = session.exec(
        select(RequestedProcedure).where(
            RequestedProcedure.study_instance_uid == data.procedure.study_instance_uid
        )
    ).first()
    if procedure is None:
        order = _find_order(session, patient, data.order) or create_order_row(
            session, patient, data.order, source=source
        )
        procedure = create_procedure_row(session, order, data.procedure, source=source)
    else:
        order = session.get_one(ImagingServiceRequest, procedure.order_pk)
        if order.patient_pk != patient.id:
            raise ConflictError(
                f"Study Instance UID {data.procedure.study_instance_uid} belongs to another "
                "patient",
                field="StudyInstanceUID",
            )
        _update_order_and_procedure(session, order, procedure, data, source=source)
    step = session.exec(
        select(ScheduledProcedureStep).where(
            ScheduledProcedureStep.procedure_pk == procedure.id,
            ScheduledProcedureStep.sps_id == data.step.sps_id,
        )
    ).first()
    created = step is None
    if step is None:
        step = create_step_row(session, procedure, data.step, source=source)
    else:
        update_step_row(session, step, step_values(data.step), data.step.status, source=source)
    session.flush()
    assert step.id is not None
    return StoredItem(assemble_item((step, procedure, order, patient)), created, step.id)


def _update_order_and_procedure(
    session: Session,
    order: ImagingServiceRequest,
    procedure: RequestedProcedure,
    data: WorklistItemData,
    *,
    source: AuditSource,
) -> None:
    for row, values, entity in (
        (
            order,
            {
                **_order_values(data.order),
                "attributes": {**order.attributes, **data.order.attributes},
            },
            "order",
        ),
        (procedure, _procedure_values(data.procedure), "requested_procedure"),
    ):
        changed = _assign(row, values)
        if changed:
            assert row.id is not None
            row.updated_at = utcnow()
            session.add(row)
            audit.record(
                session,
                source=source,
                action="update",
                entity=entity,
                entity_pk=row.id,
                detail={"fields": sorted(changed)},
            )


def _step_by_identity(session: Session, study_uid: str, sps_id: str) -> ScheduledProcedureStep:
    row = _row_by_identity(session, study_uid, sps_id)
    if row is None:
        raise NotFoundError(f"no worklist item {study_uid}/{sps_id}")
    return row[0]


def set_status(
    session: Session, *, study_uid: str, sps_id: str, status: SpsStatus, source: AuditSource
) -> JsonDataset:
    step = _step_by_identity(session, study_uid, sps_id)
    move_status(session, step, status, source=source)
    session.flush()
    return get_item(session, study_uid=study_uid, sps_id=sps_id)


def delete_item(session: Session, *, study_uid: str, sps_id: str, source: AuditSource) -> None:
    """Remove the step; a procedure or order left without steps goes with it."""
    step = _step_by_identity(session, study_uid, sps_id)
    procedure = session.get_one(RequestedProcedure, step.procedure_pk)
    assert step.id is not None
    audit.record(
        session,
        source=source,
        action="delete",
        entity=STEP_ENTITY,
        entity_pk=step.id,
        detail={"study_instance_uid": study_uid, "sps_id": sps_id},
    )
    session.execute(
        delete(ScheduledStationAETitle).where(col(ScheduledStationAETitle.sps_pk) == step.id)
    )
    session.delete(step)
    session.flush()
    if _count(session, ScheduledProcedureStep.procedure_pk == procedure.id) == 0:
        order_pk = procedure.order_pk
        session.delete(procedure)
        session.flush()
        if _count(session, RequestedProcedure.order_pk == order_pk) == 0:
            session.delete(session.get_one(ImagingServiceRequest, order_pk))


def _count(session: Session, condition: Any) -> int:
    entity = condition.left.table
    return int(
        session.execute(select(func.count()).select_from(entity).where(condition)).scalar_one()
    )
