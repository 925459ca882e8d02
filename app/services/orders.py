"""Orders (Imaging Service Requests) with their requested procedures and steps, as plain views.

Rows are written through ``app.services.write``, so an order created here is the same worklist
item the DICOM and HL7 sides see. Reads return frozen views (``app.schemas``) built inside the
session: no ORM object leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlmodel import Session, col, select

from app.domain.actor import Actor
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
from app.domain.status import SpsStatus
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
)
from app.schemas import MppsSummary, OrderView, StepDetails, StepView
from app.services import audit, hl7_log, mpps, read, storage, write

MAX_MPPS_SHOWN = 50

ORDER_FIELDS = read.ORDER_FIELDS


# ---------------------------------------------------------------------------------------------
# Commands


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
    actor: Actor,
) -> int:
    """Create an order with its procedures and steps; the patient is found or created.

    An Accession Number already given to another order is refused: modalities find the order
    by it, and the DICOM JSON intake merges items of one patient into the order holding it.
    """
    if not procedures or any(not steps for _, steps in procedures):
        raise ValidationError("an order needs at least one procedure, each with a step")
    _check_accession_free(session, order.accession_number, order_pk=None)
    patient_row = write.ensure_patient(session, patient, actor=actor)
    order_row = write.create_order_row(session, patient_row, order, actor=actor)
    for procedure, steps in procedures:
        procedure_row = write.create_procedure_row(session, order_row, procedure, actor=actor)
        for step in steps:
            write.create_step_row(session, procedure_row, step, actor=actor)
    assert order_row.id is not None
    return order_row.id


def get_order(session: Session, *, pk: int) -> OrderView:
    return read.order_views(session, [_order_row(session, pk)])[0]


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
    return read.order_views(session, list(session.exec(statement)))


def update_order(session: Session, *, pk: int, changes: dict[str, str], actor: Actor) -> OrderView:
    """Set the given order-level fields (an empty string clears one)."""
    unknown = sorted(set(changes) - set(ORDER_FIELDS))
    if unknown:
        raise ValidationError(f"not an order field: {', '.join(unknown)}", field=unknown[0])
    order = _order_row(session, pk)
    if "accession_number" in changes:
        _check_accession_free(session, changes["accession_number"], order_pk=pk)
    write.update_row(session, order, write.ORDER, changes, actor=actor)
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


def cancel_order(session: Session, *, pk: int, actor: Actor, reason: str = "") -> OrderView:
    """Every step not yet final becomes CANCELED; the rows stay, so the history stays visible.

    ``reason`` (free text) is kept in the audit trail of each step and of the order.
    """
    _order_row(session, pk)
    canceled = []
    for step in _steps_of_order(session, pk):
        if SpsStatus(step.status).is_final:
            continue
        write.move_status(session, step, SpsStatus.CANCELED, actor=actor, reason=reason)
        canceled.append(step.sps_id)
    if canceled:
        detail: dict[str, object] = {"steps": canceled}
        if reason:
            detail["reason"] = reason
        write.audit(
            session, actor=actor, action="cancel", entity=write.ORDER, entity_pk=pk, detail=detail
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
    return _with_images(session, _step_row(session, pk))


def _with_images(session: Session, step: ScheduledProcedureStep) -> StepView:
    """The step's view with what the Storage SCP received for its requested procedure."""
    images = storage.images_by_procedure(session, [step.procedure_pk])
    return read.step_view(step).model_copy(update={"images": images.get(step.procedure_pk)})


def update_step(session: Session, *, pk: int, changes: StepChanges, actor: Actor) -> StepView:
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
    write.update_step_row(session, step, write.step_values(data), None, actor=actor)
    session.flush()
    return read.step_view(step)


def set_step_status(session: Session, *, pk: int, status: SpsStatus, actor: Actor) -> StepView:
    step = _step_row(session, pk)
    write.move_status(session, step, status, actor=actor)
    session.flush()
    return read.step_view(step)


def step_details(session: Session, *, pk: int) -> StepDetails:
    """The step with its order and patient, its history from every interface, the MPPS that
    report it and the HL7 messages that changed it."""
    step = _step_row(session, pk)
    procedure = session.get_one(RequestedProcedure, step.procedure_pk)
    order = get_order(session, pk=procedure.order_pk)
    performed = mpps.list_mpps(session, step_pk=pk, limit=MAX_MPPS_SHOWN)
    subjects = [
        (write.STEP, pk),
        (write.PROCEDURE, step.procedure_pk),
        (write.ORDER, order.id),
        (write.PATIENT, order.patient.id),
    ]
    events = audit.history(session, subjects)
    events += audit.history(session, mpps.subjects_of_step(session, step_pk=pk))
    events.sort(key=lambda e: e.id)
    senders = list(dict.fromkeys((e.actor, e.context) for e in events if e.source == "HL7"))
    return StepDetails(
        step=_with_images(session, step),
        order=order,
        history=tuple(events),
        mpps=tuple(MppsSummary.model_validate(p.model_dump()) for p in performed),
        hl7_messages=tuple(hl7_log.sent_by(session, senders)),
        studies=tuple(storage.list_studies(session, procedure_pk=step.procedure_pk)),
    )
