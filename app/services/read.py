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
from sqlalchemy import select as sa_select
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
from app.services.sql import Binder

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


def _station_condition(b: Binder, query: WorklistQuery) -> ColumnElement[bool] | None:
    title = col(ScheduledStationAETitle.ae_title)
    # a worklist policy limits on the same station value the key matches
    parts = [b.text(title, query.station_ae_title), b.one_of(title, query.allowed_stations)]
    if not b.build:
        return None
    conditions = [c for c in parts if c is not None]
    if not conditions:
        return None
    titles = select(ScheduledStationAETitle.sps_pk).where(*conditions)
    return col(ScheduledProcedureStep.id).in_(titles)


def _conditions(b: Binder, query: WorklistQuery) -> list[ColumnElement[bool]]:
    sps, rp, isr, pat = ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient
    conditions: list[ColumnElement[bool] | None] = [
        _station_condition(b, query),
        b.range(col(sps.start_datetime), query.start),
        b.text(col(sps.modality), query.modality),
        b.name(col(sps.performing_physician_key), query.performing_physician),
        b.text(col(sps.sps_id), query.sps_id),
        b.text(col(sps.status), query.sps_status),
        b.name(col(pat.name_key), query.patient_name),
        b.text(col(pat.patient_id), query.patient_id),
        b.range(col(pat.birth_date), query.birth_date),
        b.text(col(pat.sex), query.sex),
        b.text(col(isr.accession_number), query.accession_number),
        b.text(col(rp.requested_procedure_id), query.requested_procedure_id),
        b.range(_time_of_day() if b.build else None, query.start_time_of_day),
        b.one_of(col(rp.study_instance_uid), query.study_instance_uids),
        b.one_of(col(sps.modality), query.allowed_modalities),
        b.flag(not query.include_final, _not_final),
    ]
    return [c for c in conditions if c is not None]


def _time_of_day() -> Any:
    return func.substr(col(ScheduledProcedureStep.start_datetime), 9, 6)


def _not_final() -> ColumnElement[bool]:
    return col(ScheduledProcedureStep.status).not_in([s.value for s in FINAL_STATUSES])


def query_conditions(query: WorklistQuery) -> tuple[list[ColumnElement[bool]], dict[str, Any]]:
    """SQL that narrows to a superset of ``query.matches`` through the indexes, and the values
    of its bound parameters."""
    b = Binder(build=True)
    return _conditions(b, query), b.params


def _ordered(statement: Any, conditions: list[ColumnElement[bool]]) -> Any:
    for condition in conditions:
        statement = statement.where(condition)
    return statement.order_by(
        col(ScheduledProcedureStep.start_datetime), col(ScheduledProcedureStep.id)
    )


def find_statement(query: WorklistQuery) -> Any:
    """The full rows (step, procedure, order, patient) of the candidates, values bound."""
    conditions, params = query_conditions(query)
    return _ordered(joined(), conditions).params(params)


# ---------------------------------------------------------------------------------------------
# The C-FIND hot path: per query shape one cached statement of the matchable columns and the
# row versions; full rows only for the candidates whose items are not cached.

_SPS, _RP, _ISR, _PAT = ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient
_CANDIDATE_COLUMNS: tuple[Any, ...] = (
    _SPS.id,
    _SPS.updated_at,
    _RP.id,
    _RP.updated_at,
    _ISR.id,
    _ISR.updated_at,
    _PAT.id,
    _PAT.updated_at,
    _SPS.station_ae_title,
    _SPS.start_datetime,
    _SPS.modality,
    _SPS.performing_physician,
    _SPS.sps_id,
    _SPS.status,
    _PAT.name,
    _PAT.patient_id,
    _PAT.birth_date,
    _PAT.sex,
    _ISR.accession_number,
    _RP.requested_procedure_id,
    _RP.study_instance_uid,
)
_VERSION_WIDTH = 8
_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_STATEMENTS_MAX = 512  # distinct query shapes kept; past it the oldest go


def _candidates_select() -> Any:
    return (
        sa_select(*(col(c) for c in _CANDIDATE_COLUMNS))
        .select_from(_SPS)
        .join(_RP, col(_SPS.procedure_pk) == _RP.id)
        .join(_ISR, col(_RP.order_pk) == _ISR.id)
        .join(_PAT, col(_ISR.patient_pk) == _PAT.id)
    )


def candidates_statement(query: WorklistQuery) -> tuple[Any, dict[str, Any]]:
    """The cached statement for ``query``'s shape and the parameters of this query.

    Each row: the version of the item (the four rows' primary keys and ``updated_at``, see
    ``Version``), then the matchable values (``candidate_record``)."""
    shape = Binder(build=False)
    _conditions(shape, query)
    key = tuple(shape.shape)
    statement = _STATEMENTS.get(key)
    if statement is None:
        built = Binder(build=True)
        statement = _ordered(_candidates_select(), _conditions(built, query))
        assert built.params.keys() == shape.params.keys()
        if len(_STATEMENTS) >= _STATEMENTS_MAX:
            _STATEMENTS.clear()  # a bound on memory; real modalities use a handful of shapes
        _STATEMENTS[key] = statement
    return statement, shape.params


Version = tuple[Any, ...]


def candidate_version(row: Sequence[Any]) -> Version:
    """What an item is made of, in a form that changes whenever the item does: the primary
    keys of its step, procedure, order and patient and each one's ``updated_at`` (every write
    in ``app.services.write`` sets it). Read in the same query as the match, so it holds for
    changes made by any process on the database."""
    return tuple(row[:_VERSION_WIDTH])


def candidate_record(row: Sequence[Any]) -> WorklistRecord:
    (station, start, modality, physician, sps_id, status, name, patient_id, birth, sex,
     accession, rp_id, study_uid) = row[_VERSION_WIDTH:]  # fmt: skip
    return WorklistRecord(
        station_ae_titles=tuple(station.split(VALUE_SEPARATOR)),
        start_datetime=start,
        modality=modality,
        performing_physician=physician,
        sps_id=sps_id,
        sps_status=status,
        patient_name=name,
        patient_id=patient_id,
        birth_date=birth,
        sex=sex,
        accession_number=accession,
        requested_procedure_id=rp_id,
        study_instance_uid=study_uid,
    )


def rows_by_step(session: Session, step_pks: Sequence[int]) -> dict[int, Row]:
    """Full rows of the given steps, in as few queries as the parameter limits allow."""
    out: dict[int, Row] = {}
    for start in range(0, len(step_pks), 500):
        chunk = list(step_pks[start : start + 500])
        statement = joined().where(col(ScheduledProcedureStep.id).in_(chunk))
        for row in session.execute(statement):
            typed: Row = tuple(row)
            assert typed[0].id is not None
            out[typed[0].id] = typed
    return out


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
