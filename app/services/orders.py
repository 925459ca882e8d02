"""Orders (Imaging Service Requests) with their requested procedures and steps, as plain views.

Rows are written through the worklist helpers, so an order created here is the same worklist
item the DICOM and HL7 sides see. Reads return frozen dataclasses built inside the session: no
ORM object leaves this module, so nothing loads lazily after the transaction ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import Session, col, select

from app.domain.errors import ConflictError, MissingValueError, NotFoundError, ValidationError
from app.domain.items import (
    OrderData,
    PatientData,
    ProcedureData,
    StepData,
    start_datetime_from,
    validate_ae_titles,
)
from app.domain.matching import VALUE_SEPARATOR
from app.domain.status import AuditSource, SpsStatus
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    utcnow,
)
from app.services import audit
from app.services.patients import ensure_patient
from app.services.worklist import (
    create_order_row,
    create_procedure_row,
    create_step_row,
    move_status,
    step_values,
    update_step_row,
)

ORDER_ENTITY = "order"
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
# Views


@dataclass(frozen=True)
class PatientView:
    id: int
    patient_id: str
    issuer_of_patient_id: str
    name: str
    birth_date: str
    sex: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StepView:
    id: int
    sps_id: str
    station_ae_titles: tuple[str, ...]
    start_date: str
    start_time: str
    modality: str
    performing_physician: str
    description: str
    station_name: str
    location: str
    status: SpsStatus
    updated_at: datetime


@dataclass(frozen=True)
class ProcedureView:
    id: int
    requested_procedure_id: str
    study_instance_uid: str
    description: str
    priority: str
    steps: tuple[StepView, ...]


@dataclass(frozen=True)
class OrderView:
    id: int
    patient: PatientView
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    requesting_physician: str
    referring_physician_name: str
    admission_id: str
    current_patient_location: str
    procedures: tuple[ProcedureView, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StepChanges:
    """What to change on a step; ``None`` keeps the current value."""

    station_ae_titles: Sequence[str] | None = None
    start_date: str | None = None
    start_time: str | None = None
    modality: str | None = None
    performing_physician: str | None = None
    description: str | None = None
    station_name: str | None = None
    location: str | None = None


def patient_view(patient: Patient) -> PatientView:
    assert patient.id is not None
    return PatientView(
        id=patient.id,
        patient_id=patient.patient_id,
        issuer_of_patient_id=patient.issuer_of_patient_id,
        name=patient.name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        created_at=patient.created_at,
        updated_at=patient.updated_at,
    )


def _step_view(step: ScheduledProcedureStep) -> StepView:
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


def _views(session: Session, orders: Sequence[ImagingServiceRequest]) -> list[OrderView]:
    """Views of ``orders`` with three more queries in all, whatever the number of orders."""
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
        steps[step.procedure_pk].append(_step_view(step))
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


# ---------------------------------------------------------------------------------------------
# Orders


def _order_row(session: Session, pk: int) -> ImagingServiceRequest:
    order = session.get(ImagingServiceRequest, pk)
    if order is None:
        raise NotFoundError(f"no order {pk}")
    return order


def _check_accession_free(session: Session, accession: str, *, order_pk: int | None) -> None:
    if not accession:
        return
    statement = select(ImagingServiceRequest.id).where(
        ImagingServiceRequest.accession_number == accession
    )
    if order_pk is not None:
        statement = statement.where(ImagingServiceRequest.id != order_pk)
    existing = session.exec(statement).first()
    if existing is not None:
        raise ConflictError(
            f"Accession Number {accession} is already used by order {existing}",
            field="accession_number",
        )


def create_order(
    session: Session,
    *,
    patient: PatientData,
    order: OrderData,
    procedures: Sequence[tuple[ProcedureData, Sequence[StepData]]],
    source: AuditSource,
) -> int:
    """Create an order with its procedures and steps; the patient is found or created.

    An Accession Number already given to another order is refused: modalities find the order
    by it, and the DICOM JSON intake merges items of one patient into the order holding it.
    """
    if not procedures or any(not steps for _, steps in procedures):
        raise ValidationError("an order needs at least one procedure, each with a step")
    _check_accession_free(session, order.accession_number, order_pk=None)
    patient_row = ensure_patient(session, patient, source=source)
    order_row = create_order_row(session, patient_row, order, source=source)
    for procedure, steps in procedures:
        procedure_row = create_procedure_row(session, order_row, procedure, source=source)
        for step in steps:
            create_step_row(session, procedure_row, step, source=source)
    assert order_row.id is not None
    return order_row.id


def get_order(session: Session, *, pk: int) -> OrderView:
    return _views(session, [_order_row(session, pk)])[0]


def list_orders(
    session: Session,
    *,
    accession_number: str = "",
    patient_id: str = "",
    status: SpsStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[OrderView]:
    """Orders in creation order; filters are exact, ``status`` keeps orders with such a step."""
    statement = select(ImagingServiceRequest)
    if accession_number:
        statement = statement.where(ImagingServiceRequest.accession_number == accession_number)
    if patient_id:
        patients = select(Patient.id).where(Patient.patient_id == patient_id)
        statement = statement.where(col(ImagingServiceRequest.patient_pk).in_(patients))
    if status is not None:
        with_status = (
            select(RequestedProcedure.order_pk)
            .join(
                ScheduledProcedureStep,
                col(ScheduledProcedureStep.procedure_pk) == RequestedProcedure.id,
            )
            .where(ScheduledProcedureStep.status == status.value)
        )
        statement = statement.where(col(ImagingServiceRequest.id).in_(with_status))
    statement = statement.order_by(col(ImagingServiceRequest.id)).offset(offset).limit(limit)
    return _views(session, list(session.exec(statement)))


def update_order(
    session: Session, *, pk: int, changes: dict[str, str], source: AuditSource
) -> OrderView:
    """Set the given order-level fields (an empty string clears one)."""
    unknown = sorted(set(changes) - set(ORDER_FIELDS))
    if unknown:
        raise ValidationError(f"not an order field: {', '.join(unknown)}", field=unknown[0])
    order = _order_row(session, pk)
    if "accession_number" in changes:
        _check_accession_free(session, changes["accession_number"], order_pk=pk)
    changed = sorted(name for name, value in changes.items() if getattr(order, name) != value)
    if changed:
        for name in changed:
            setattr(order, name, changes[name])
        order.updated_at = utcnow()
        session.add(order)
        audit.record(
            session,
            source=source,
            action="update",
            entity=ORDER_ENTITY,
            entity_pk=pk,
            detail={"fields": changed},
        )
        session.flush()
    return get_order(session, pk=pk)


def _steps_of_order(session: Session, pk: int) -> list[ScheduledProcedureStep]:
    statement = (
        select(ScheduledProcedureStep)
        .join(RequestedProcedure, col(ScheduledProcedureStep.procedure_pk) == RequestedProcedure.id)
        .where(RequestedProcedure.order_pk == pk)
        .order_by(col(ScheduledProcedureStep.id))
    )
    return list(session.exec(statement))


def cancel_order(session: Session, *, pk: int, source: AuditSource) -> OrderView:
    """Every step not yet final becomes CANCELED; the rows stay, so the history stays visible."""
    _order_row(session, pk)
    canceled = []
    for step in _steps_of_order(session, pk):
        if SpsStatus(step.status).is_final:
            continue
        move_status(session, step, SpsStatus.CANCELED, source=source)
        canceled.append(step.sps_id)
    if canceled:
        audit.record(
            session,
            source=source,
            action="cancel",
            entity=ORDER_ENTITY,
            entity_pk=pk,
            detail={"steps": canceled},
        )
    session.flush()
    return get_order(session, pk=pk)


# ---------------------------------------------------------------------------------------------
# Steps


def _step_row(session: Session, pk: int) -> ScheduledProcedureStep:
    step = session.get(ScheduledProcedureStep, pk)
    if step is None:
        raise NotFoundError(f"no scheduled procedure step {pk}")
    return step


def _step_data(step: ScheduledProcedureStep) -> StepData:
    return StepData(
        sps_id=step.sps_id,
        station_ae_titles=tuple(step.station_ae_title.split(VALUE_SEPARATOR)),
        start_datetime=step.start_datetime,
        modality=step.modality,
        performing_physician=step.performing_physician,
        description=step.description,
        station_name=step.station_name,
        location=step.location,
        attributes=step.attributes,
    )


def _nonempty(value: str | None, name: str, keyword: str) -> None:
    if value is not None and not value.strip():
        raise MissingValueError(f"{keyword} (Type 1) may not be empty", field=name)


def get_step(session: Session, *, pk: int) -> StepView:
    return _step_view(_step_row(session, pk))


def update_step(
    session: Session, *, pk: int, changes: StepChanges, source: AuditSource
) -> StepView:
    """Reschedule or correct a step. A final step is closed: reopen it through its status first."""
    step = _step_row(session, pk)
    if SpsStatus(step.status).is_final:
        raise ConflictError(
            f"step {step.sps_id} is {step.status}; set it to SCHEDULED before editing it",
            field="status",
        )
    _nonempty(changes.modality, "modality", "Modality")
    current = _step_data(step)
    data = replace(
        current,
        station_ae_titles=(
            current.station_ae_titles
            if changes.station_ae_titles is None
            else validate_ae_titles(list(changes.station_ae_titles))
        ),
        start_datetime=start_datetime_from(
            changes.start_date if changes.start_date is not None else current.start_datetime[:8],
            changes.start_time if changes.start_time is not None else current.start_datetime[8:],
        ),
        **{
            name: value
            for name in (
                "modality",
                "performing_physician",
                "description",
                "station_name",
                "location",
            )
            if (value := getattr(changes, name)) is not None
        },
    )
    update_step_row(session, step, step_values(data), None, source=source)
    session.flush()
    return _step_view(step)


def set_step_status(
    session: Session, *, pk: int, status: SpsStatus, source: AuditSource
) -> StepView:
    step = _step_row(session, pk)
    move_status(session, step, status, source=source)
    session.flush()
    return _step_view(step)
