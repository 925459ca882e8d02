"""The read model: rows to worklist items (DICOM JSON) and to views, and the SQL that narrows.

Worklist matching is pure code (``app.domain.worklist``); the SQL here only narrows through the
indexes to a superset, which the matcher confirms row by row. Views are frozen schemas
(``app.schemas``) built inside the session, so nothing loads lazily after it closed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from app.domain.dicom_json import JsonDataset, element
from app.domain.items import COLUMNS
from app.domain.matching import VALUE_SEPARATOR
from app.domain.mwl_attributes import BY_KEYWORD, SPS_SEQUENCE_KEY, Level
from app.domain.status import FINAL_STATUSES, SpsStatus
from app.domain.worklist import WorklistQuery, WorklistRecord
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    ScheduledStationAETitle,
)
from app.schemas import OrderView, PatientView, ProcedureView, StepView
from app.services import storage
from app.services.sql import name_key_condition, range_condition, text_key_condition

Row = tuple[ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient]

ORDER_FIELDS = (
    "accession_number",
    "placer_order_number",
    "filler_order_number",
    "requesting_physician",
    "referring_physician_name",
    "admission_id",
    "current_patient_location",
)

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


def joined() -> Any:
    return (
        select(ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient)
        .join(RequestedProcedure, col(ScheduledProcedureStep.procedure_pk) == RequestedProcedure.id)
        .join(ImagingServiceRequest, col(RequestedProcedure.order_pk) == ImagingServiceRequest.id)
        .join(Patient, col(ImagingServiceRequest.patient_pk) == Patient.id)
    )


def _station_condition(query: WorklistQuery) -> ColumnElement[bool] | None:
    title = col(ScheduledStationAETitle.ae_title)
    parts = [text_key_condition(title, query.station_ae_title)]
    if query.allowed_stations is not None:  # a worklist policy: on the same station value
        parts.append(title.in_(query.allowed_stations))
    conditions = [c for c in parts if c is not None]
    if not conditions:
        return None
    titles = select(ScheduledStationAETitle.sps_pk).where(*conditions)
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
    if query.allowed_modalities is not None:
        conditions.append(col(sps.modality).in_(query.allowed_modalities))
    if not query.include_final:
        conditions.append(col(sps.status).not_in([s.value for s in FINAL_STATUSES]))
    return [c for c in conditions if c is not None]


def find_statement(query: WorklistQuery) -> Any:
    statement = joined()
    for condition in query_conditions(query):
        statement = statement.where(condition)
    return statement.order_by(
        col(ScheduledProcedureStep.start_datetime), col(ScheduledProcedureStep.id)
    )


def row_by_identity(session: Session, study_uid: str, sps_id: str) -> Row | None:
    statement = joined().where(
        RequestedProcedure.study_instance_uid == study_uid,
        ScheduledProcedureStep.sps_id == sps_id,
    )
    row = session.execute(statement).first()
    return tuple(row) if row else None


# ---------------------------------------------------------------------------------------------
# Views


def patient_view(patient: Patient) -> PatientView:
    return PatientView.model_validate(patient)


def step_view(step: ScheduledProcedureStep) -> StepView:
    assert step.id is not None
    return StepView(
        id=step.id,
        sps_id=step.sps_id,
        station_ae_titles=tuple(step.station_ae_title.split(VALUE_SEPARATOR)),
        start_date=step.start_datetime[:8],
        start_time=step.start_datetime[8:],
        modality=step.modality,
        performing_physician=step.performing_physician,
        description=step.description,
        station_name=step.station_name,
        location=step.location,
        status=SpsStatus(step.status),
        updated_at=step.updated_at,
    )


def order_views(session: Session, orders: Sequence[ImagingServiceRequest]) -> list[OrderView]:
    """Views of ``orders`` with four more queries in all, whatever the number of orders."""
    order_pks = [o.id for o in orders]
    patient_pks = {o.patient_pk for o in orders}
    patients = {
        p.id: p for p in session.exec(select(Patient).where(col(Patient.id).in_(patient_pks)))
    }
    procedures = list(
        session.exec(
            select(RequestedProcedure)
            .where(col(RequestedProcedure.order_pk).in_(order_pks))
            .order_by(col(RequestedProcedure.id))
        )
    )
    steps: dict[int, list[StepView]] = defaultdict(list)
    statement = (
        select(ScheduledProcedureStep)
        .where(col(ScheduledProcedureStep.procedure_pk).in_([p.id for p in procedures]))
        .order_by(col(ScheduledProcedureStep.start_datetime), col(ScheduledProcedureStep.id))
    )
    for step in session.exec(statement):
        steps[step.procedure_pk].append(step_view(step))
    images = storage.images_by_procedure(session, [p.id for p in procedures if p.id is not None])
    by_order: dict[int, list[ProcedureView]] = defaultdict(list)
    for procedure in procedures:
        assert procedure.id is not None
        by_order[procedure.order_pk].append(
            ProcedureView(
                id=procedure.id,
                requested_procedure_id=procedure.requested_procedure_id,
                study_instance_uid=procedure.study_instance_uid,
                description=procedure.description,
                priority=procedure.priority,
                steps=tuple(steps[procedure.id]),
                images=images.get(procedure.id),
            )
        )
    views = []
    for order in orders:
        assert order.id is not None
        views.append(
            OrderView(
                id=order.id,
                patient=patient_view(patients[order.patient_pk]),
                **{name: getattr(order, name) for name in ORDER_FIELDS},
                procedures=tuple(by_order[order.id]),
                created_at=order.created_at,
                updated_at=order.updated_at,
            )
        )
    return views
