"""Apply order and patient intake commands (HL7 ORM/OMI/OMG and ADT) to the worklist.

Order control (SPEC_DIGEST 3.3): ORC-1 with ORC-5 looks up an action in the configured table
(``BROKER_HL7_ORDER_CONTROL``): an SPS Status, or ``update``. An order that carries its procedure
and step (modality and start) is written as a worklist item taking that status (``update``
keeps the current one); a status without them (cancel, discontinue, complete, status change)
moves the steps the message names. A cancel is a status, never a delete.

Values a message may leave out (SPEC_DIGEST 3.4 fallbacks):
- Study Instance UID: the known procedure's, else generated (or refused, by setting);
- Requested Procedure ID: accession number, else placer order number, else generated;
- SPS ID: the Requested Procedure ID (one step per procedure in ORM/OMI);
- Scheduled Station AE Title: from the station table by modality and SPS location.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.errors import (
    ConflictError,
    MissingValueError,
    NotFoundError,
    UnknownCodeError,
    ValidationError,
)
from app.domain.intake import (
    IntakeCommand,
    OrderGroup,
    OrderMessage,
    PatientDeletion,
    PatientIdentifierChange,
    PatientMerge,
    PatientRegistration,
    PatientUpdate,
)
from app.domain.items import (
    PatientData,
    WorklistItemData,
    new_short_id,
    new_uid,
    validate_item,
    validate_patient,
)
from app.domain.status import SpsStatus
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
)
from app.services import stations, worklist, write

LOG = logging.getLogger(__name__)
UPDATE = "update"
NEW_ORDER = "NW"  # ORC-1 of a new order (RAD-4): the one that must carry its step
SH_MAX = 16


@dataclass(frozen=True)
class IntakePolicy:
    order_control: Mapping[str, str]
    generate_missing_study_uid: bool = True
    # IHE RAD-4 requires the Accession Number; an image without one is hard to reconcile
    accept_missing_accession: bool = False
    # a new order without SPS start: scheduled "now" (dcm4chee's fallback), or refused (101)
    start_missing_now: bool = True


def apply(session: Session, command: IntakeCommand, *, policy: IntakePolicy, actor: Actor) -> None:
    """Apply one decoded message; raises a ``DomainError`` when it cannot be applied.

    ``actor``: HL7, the sending application (MSH-3), with MSH-10 as context.
    """
    if isinstance(command, OrderMessage):
        apply_order(session, command, policy=policy, actor=actor)
    elif isinstance(command, PatientRegistration | PatientUpdate):
        write.ensure_patient(session, command.patient, actor=actor)
    elif isinstance(command, PatientMerge):
        merge_patients(session, command, actor=actor)
    elif isinstance(command, PatientDeletion):
        delete_patient(session, command, actor=actor)
    else:
        change_identifier(session, command, actor=actor)


# ---------------------------------------------------------------------------------------------
# Orders


def action_for(table: Mapping[str, str], control: str, status: str) -> str:
    """The configured action for ORC-1 (with ORC-5 when the table has that pair)."""
    control, status = control.strip().upper(), status.strip().upper()
    action = table.get(f"{control}_{status}") if status else None
    action = action or table.get(control)
    if action is None:
        raise UnknownCodeError(
            f"order control {control}{'/' + status if status else ''} is not configured "
            "(BROKER_HL7_ORDER_CONTROL)",
            field="OrderControl",
        )
    return action


def apply_order(
    session: Session, message: OrderMessage, *, policy: IntakePolicy, actor: Actor
) -> None:
    if not message.groups:
        raise ValidationError("the order has no OBR", field="RequestedProcedureID")
    action = action_for(policy.order_control, message.order_control, message.order_status)
    status = None if action == UPDATE else SpsStatus(action)
    is_new = message.order_control.strip().upper() == NEW_ORDER
    groups = [
        _with_start_now(group, policy)
        if is_new and group.step.modality and not group.step.start_datetime
        else group
        for group in message.groups
    ]
    if _new_procedures(groups, status):
        validate_patient(message.patient)
        created = write.insert_patient(session, message.patient)
        if created is not None:
            # A patient created just now has no procedure yet: every group is new (a Study
            # Instance UID used already is another patient's, and its unique index says so).
            _create_items(
                session, created, message.patient, groups, status, policy, actor, new=True
            )
            return
        patient = write.known_patient(session, message.patient, actor=actor)
        if not _known_procedure(session, groups):
            assert patient.id is not None
            _create_items(session, patient.id, message.patient, groups, status, policy, actor)
            return
    else:
        patient = write.ensure_patient(session, message.patient, actor=actor)
    for group in groups:
        carries_step = bool(group.step.modality and group.step.start_datetime)
        if carries_step and not (status and status.is_final):
            _write_item(session, patient, message.patient, group, status, policy, actor)
        elif status is not None:
            for step in _named_steps(session, patient, group):
                write.move_status(session, step, status, actor=actor)
        else:
            raise ValidationError(
                "an order update needs the modality and start of its step",
                field="ScheduledProcedureStepStartDate",
            )


def _new_procedures(groups: Sequence[OrderGroup], status: SpsStatus | None) -> bool:
    """Whether every group writes a step (non-final status, modality and start) and names its
    own Study Instance UID: then, when none of these UIDs is known, the groups are written
    together (``_create_items``), a few statements for all. Otherwise each group is written in
    turn, so a later group finds what an earlier one created."""
    if status is not None and status.is_final:
        return False
    if not all(g.step.modality and g.step.start_datetime for g in groups):
        return False
    uids = [g.procedure.study_instance_uid for g in groups]
    return all(uids) and len(set(uids)) == len(uids)


def _known_procedure(session: Session, groups: Sequence[OrderGroup]) -> bool:
    """Whether a procedure with one of the groups' Study Instance UIDs exists."""
    uids = [g.procedure.study_instance_uid for g in groups]
    known = session.exec(
        select(RequestedProcedure.study_instance_uid).where(
            col(RequestedProcedure.study_instance_uid).in_(uids)
        )
    ).first()
    return known is not None


def _create_items(
    session: Session,
    patient_pk: int,
    patient: PatientData,
    groups: Sequence[OrderGroup],
    status: SpsStatus | None,
    policy: IntakePolicy,
    actor: Actor,
    *,
    new: bool = False,
) -> None:
    """The groups' new items for the patient ``patient_pk`` (``new``: inserted just now)."""
    wanted = [(g.step.modality, g.step.location) for g in groups if not g.step.station_ae_titles]
    routes = stations.routes(session, wanted)
    items = [_item_data(session, patient, g, status, policy, None, routes) for g in groups]
    created = patient if new else None
    write.create_order_items(session, patient_pk, items, actor=actor, new_patient=created)


def _write_item(
    session: Session,
    patient: Patient,
    patient_data: PatientData,
    group: OrderGroup,
    status: SpsStatus | None,
    policy: IntakePolicy,
    actor: Actor,
) -> None:
    known = _find_procedure(session, patient, group)
    data = _item_data(session, patient_data, group, status, policy, known)
    worklist.upsert_item(session, data=data, actor=actor)


def _item_data(
    session: Session,
    patient_data: PatientData,
    group: OrderGroup,
    status: SpsStatus | None,
    policy: IntakePolicy,
    known: RequestedProcedure | None,
    routes: Mapping[tuple[str, str], stations.Route] | None = None,
) -> WorklistItemData:
    """The worklist item a group describes, completed from ``known`` (its procedure, if it
    exists), the policy and the station table (``routes``: what it says for the groups'
    modalities and locations, read once for all); validated."""
    if not group.order.accession_number:
        group = _with_known_accession(session, group, known, policy)
    rp_id = (
        group.procedure.requested_procedure_id
        or (known.requested_procedure_id if known else "")
        or (group.order.accession_number or group.order.placer_order_number)[:SH_MAX]
        or new_short_id("RP")
    )
    study_uid = group.procedure.study_instance_uid or (known.study_instance_uid if known else "")
    if not study_uid:
        if not policy.generate_missing_study_uid:
            raise MissingValueError(
                "StudyInstanceUID is missing (no ZDS/IPC) and generating one is off "
                "(BROKER_HL7_MISSING_STUDY_UID=reject)",
                field="StudyInstanceUID",
            )
        study_uid = new_uid()
    step = group.step
    station_titles, station_name = step.station_ae_titles, step.station_name
    if not station_titles and routes is not None:
        station_titles, station_name = _routed(routes, step.modality, step.location)
    elif not station_titles:
        station_titles, station_name = _station_for(session, step.modality, step.location)
    data = WorklistItemData(
        patient=patient_data,
        order=group.order,
        procedure=replace(
            group.procedure, requested_procedure_id=rp_id, study_instance_uid=study_uid
        ),
        step=replace(
            step,
            sps_id=step.sps_id or rp_id[:SH_MAX],
            station_ae_titles=station_titles,
            station_name=station_name or step.station_name,
            status=status,
        ),
    )
    validate_item(data)
    return data


def _with_start_now(group: OrderGroup, policy: IntakePolicy) -> OrderGroup:
    """A new order without SPS start (no TQ1-7 / ORC-7.4 / OBR-27.4): starts now, as dcm4chee
    does, unless ``BROKER_HL7_MISSING_START=reject`` (101)."""
    if not policy.start_missing_now:
        raise MissingValueError(
            "the scheduled start date/time is missing (TQ1-7, ORC-7.4, OBR-27.4) and "
            "BROKER_HL7_MISSING_START=reject",
            field="ScheduledProcedureStepStartDate",
        )
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    return replace(group, step=replace(group.step, start_datetime=now))


def _with_known_accession(
    session: Session, group: OrderGroup, known: RequestedProcedure | None, policy: IntakePolicy
) -> OrderGroup:
    """A group without Accession Number: the known order's (an update need not repeat it),
    else refused (101) unless ``BROKER_HL7_MISSING_ACCESSION=accept``."""
    order = session.get(ImagingServiceRequest, known.order_pk) if known is not None else None
    if order is not None and order.accession_number:
        return replace(group, order=replace(group.order, accession_number=order.accession_number))
    if not policy.accept_missing_accession:
        raise MissingValueError(
            "AccessionNumber (Type 2, required by IHE RAD-4) is missing; "
            "BROKER_HL7_MISSING_ACCESSION=accept takes such orders",
            field="AccessionNumber",
        )
    return group


def _station_for(session: Session, modality: str, location: str) -> stations.Route:
    station = stations.route(session, modality=modality, location=location)
    if station is None:
        raise _no_station(modality, location)
    return (station.ae_title,), station.station_name


def _routed(
    routes: Mapping[tuple[str, str], stations.Route], modality: str, location: str
) -> stations.Route:
    route = routes.get((modality, location))
    if route is None:
        raise _no_station(modality, location)
    return route


def _no_station(modality: str, location: str) -> ValidationError:
    where = f" at '{location}'" if location else ""
    return ValidationError(
        f"no station is configured for modality {modality}{where}; add one at /api/stations",
        field="ScheduledStationAETitle",
    )


def _find_procedure(
    session: Session, patient: Patient, group: OrderGroup
) -> RequestedProcedure | None:
    """The requested procedure a group names: by Study Instance UID, else within the patient's
    orders by accession / placer / filler number and Requested Procedure ID."""
    uid = group.procedure.study_instance_uid
    if uid:
        procedure = session.exec(
            select(RequestedProcedure).where(RequestedProcedure.study_instance_uid == uid)
        ).first()
        if procedure is not None:
            owner = session.get_one(ImagingServiceRequest, procedure.order_pk).patient_pk
            if owner != patient.id:
                raise ConflictError(
                    f"Study Instance UID {uid} belongs to another patient",
                    field="StudyInstanceUID",
                )
        return procedure
    order = group.order
    keys: list[tuple[Any, str]] = [
        (ImagingServiceRequest.accession_number, order.accession_number),
        (ImagingServiceRequest.placer_order_number, order.placer_order_number),
        (ImagingServiceRequest.filler_order_number, order.filler_order_number),
    ]
    given = [(column, value) for column, value in keys if value]
    if not given:
        return None
    statement = (
        select(RequestedProcedure)
        .join(ImagingServiceRequest, col(RequestedProcedure.order_pk) == ImagingServiceRequest.id)
        .where(ImagingServiceRequest.patient_pk == patient.id)
        .where(*[column == value for column, value in given])
        .order_by(col(RequestedProcedure.id))
    )
    if group.procedure.requested_procedure_id:
        statement = statement.where(
            RequestedProcedure.requested_procedure_id == group.procedure.requested_procedure_id
        )
    return session.exec(statement).first()


def _named_steps(
    session: Session, patient: Patient, group: OrderGroup
) -> list[ScheduledProcedureStep]:
    procedure = _find_procedure(session, patient, group)
    if procedure is None:
        order = group.order
        named = (
            group.procedure.study_instance_uid
            or order.accession_number
            or order.placer_order_number
            or order.filler_order_number
            or "(no identifier)"
        )
        raise NotFoundError(f"no order {named} for this patient", field="AccessionNumber")
    statement = select(ScheduledProcedureStep).where(
        ScheduledProcedureStep.procedure_pk == procedure.id
    )
    if group.step.sps_id:
        statement = statement.where(ScheduledProcedureStep.sps_id == group.step.sps_id)
    steps = list(session.exec(statement.order_by(col(ScheduledProcedureStep.id))))
    if not steps:
        raise NotFoundError(
            f"no step {group.step.sps_id} in that order", field="ScheduledProcedureStepID"
        )
    return steps


# ---------------------------------------------------------------------------------------------
# Patients


def merge_patients(session: Session, command: PatientMerge, *, actor: Actor) -> None:
    """A40: orders, steps and history of the prior patient move to the surviving one.

    A prior patient the broker does not know (it never had orders here) is nothing to merge:
    the surviving patient is kept up to date and the message accepted (noted at INFO).
    """
    prior = write.patient_by_identity(session, command.prior_patient_id, command.prior_issuer)
    surviving = write.ensure_patient(session, command.surviving, actor=actor)
    if prior is None:
        LOG.info("A40 %s: prior patient not known here, nothing to merge", actor.context)
    elif prior.id != surviving.id:
        write.merge_patient_rows(session, prior, surviving, actor=actor)


def change_identifier(session: Session, command: PatientIdentifierChange, *, actor: Actor) -> None:
    """A47: the patient known by MRG-1 is known by PID-3 from now on.

    A prior identifier the broker does not know is nothing to change: the patient under the new
    identifier is kept up to date and the message accepted (noted at INFO).
    """
    new = command.patient
    prior = write.patient_by_identity(session, command.prior_patient_id, command.prior_issuer)
    if prior is None:
        LOG.info("A47 %s: prior identifier not known here, nothing to change", actor.context)
        write.ensure_patient(session, new, actor=actor)
        return
    if write.patient_by_identity(session, new.patient_id, new.issuer_of_patient_id) is not None:
        raise ConflictError(
            f"patient {new.patient_id} already exists; merge (A40) instead", field="PatientID"
        )
    write.change_patient_identity(
        session, prior, new.patient_id, new.issuer_of_patient_id, actor=actor
    )
    write.ensure_patient(session, new, actor=actor)


def delete_patient(session: Session, command: PatientDeletion, *, actor: Actor) -> None:
    """A29 (delete person information, the undo of A28): a patient without orders is removed;
    one with orders (any status: they are the record of what was done) is refused (207); an
    unknown patient is nothing to delete."""
    data = command.patient
    patient = write.patient_by_identity(session, data.patient_id, data.issuer_of_patient_id)
    if patient is None:
        LOG.info("A29 %s: patient not known, nothing to delete", actor.context)
        return
    write.delete_patient_row(session, patient, actor=actor)
