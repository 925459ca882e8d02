"""MPPS: record what the modality reports, move the scheduled steps, tell the RIS and the PACS.

N-CREATE links the MPPS to the scheduled steps named in its Scheduled Step Attributes Sequence
(0040,0270) by Study Instance UID + SPS ID, else accession number (+ Requested Procedure ID,
+ SPS ID); one MPPS may cover several steps (grouped case). An MPPS naming no step (unscheduled
case) is kept unlinked, listed for reconciliation, and can be linked later (``link``).

Steps follow the exam: IN PROGRESS -> STARTED, COMPLETED -> COMPLETED, DISCONTINUED ->
DISCONTINUED. Every change writes outbox rows in the same transaction: a status message per
linked order to the RIS (when configured) and the N-CREATE / N-SET to each downstream MPPS SCP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.config import OutboxSettings
from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset
from app.domain.errors import ValidationError
from app.domain.mpps import (
    DuplicateInstanceError,
    MppsStatus,
    NoSuchInstanceError,
    StartPerformedStep,
    StepReference,
    UpdatePerformedStep,
    apply_set,
    summary_of,
)
from app.domain.reports import (
    MPPS_CREATE,
    MPPS_SET,
    CodedReason,
    ForwardedMpps,
    ReportedOrder,
    ReportedPatient,
    ReportedProcedure,
    StatusReport,
)
from app.domain.status import SpsStatus, can_transition
from app.models import (
    ImagingServiceRequest,
    Patient,
    PerformedProcedureStep,
    PerformedStepLink,
    RequestedProcedure,
    ScheduledProcedureStep,
    utcnow,
)
from app.schemas import LinkedStepView, MppsView
from app.services import outbox, remote_aes, worklist, write

ENTITY = "mpps"


@dataclass(frozen=True)
class Delivery:
    """Where MPPS changes go: the RIS (host:port, "" for none) and downstream MPPS SCPs
    (``BROKER_MPPS_FORWARD``; the remote AEs with service ``mpps`` are added when it is used)."""

    ris_endpoint: str = ""
    forward: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: OutboxSettings) -> Delivery:
        return cls(settings.ris_hl7_endpoint, tuple(settings.mpps_forward))


# ---------------------------------------------------------------------------------------------
# N-CREATE / N-SET


def create(
    session: Session, *, command: StartPerformedStep, delivery: Delivery, actor: Actor
) -> MppsView:
    """N-CREATE (PS3.4 F.7.2.1): store, link, start the steps, queue the messages."""
    uid = command.uid
    if _row(session, uid) is not None:
        raise DuplicateInstanceError(f"MPPS {uid} exists", field="AffectedSOPInstanceUID")
    row = PerformedProcedureStep(
        sop_instance_uid=uid, status=command.status.value, attributes=command.attributes
    )
    _refresh_columns(row)
    session.add(row)
    session.flush()
    assert row.id is not None
    steps = _steps_named(session, command.steps, command.patient_id)
    for step in steps:
        assert step.id is not None
        session.add(PerformedStepLink(mpps_pk=row.id, sps_pk=step.id))
    write.audit(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_pk=row.id,
        after={"status": row.status},
        detail={"sop_instance_uid": uid, "steps": [s.id for s in steps]},
        context=uid,
        status=row.status,
    )
    _follow(session, row, steps, command.status, delivery, actor)
    _forward(session, uid, MPPS_CREATE, command.attributes, delivery)
    session.flush()
    return view(session, row)


def update(
    session: Session, *, command: UpdatePerformedStep, delivery: Delivery, actor: Actor
) -> MppsView:
    """N-SET (PS3.4 F.7.2.2): only while IN PROGRESS; the steps follow a final status."""
    uid = command.uid
    row = _row(session, uid)
    if row is None:
        raise NoSuchInstanceError(f"no MPPS {uid}", field="RequestedSOPInstanceUID")
    before = row.status
    merged, status = apply_set(MppsStatus(row.status), row.attributes, command.modifications)
    changed_status = status.value != row.status
    row.attributes, row.status, row.updated_at = merged, status.value, utcnow()
    _refresh_columns(row)
    session.add(row)
    assert row.id is not None
    write.audit(
        session,
        actor=actor,
        action="update",
        entity=ENTITY,
        entity_pk=row.id,
        before={"status": before},
        after={"status": status.value},
        detail={"keys": sorted(command.modifications)},
        context=uid,
        status=status.value,
    )
    if changed_status:
        _follow(session, row, _linked_steps(session, row.id), status, delivery, actor)
    _forward(session, uid, MPPS_SET, command.modifications, delivery)
    session.flush()
    return view(session, row)


def _refresh_columns(row: PerformedProcedureStep) -> None:
    summary = summary_of(row.attributes)
    row.performed_station_ae_title = summary.station_ae_title
    row.modality = summary.modality
    row.start_datetime = summary.start_datetime
    row.end_datetime = summary.end_datetime


# ---------------------------------------------------------------------------------------------
# Linking


def _steps_named(
    session: Session, references: Sequence[StepReference], patient_id: str
) -> list[ScheduledProcedureStep]:
    found: dict[int, ScheduledProcedureStep] = {}
    for ref in references:
        for step in _steps_of(session, ref, patient_id):
            assert step.id is not None
            found[step.id] = step
    return list(found.values())


def _steps_of(
    session: Session, ref: StepReference, patient_id: str
) -> Sequence[ScheduledProcedureStep]:
    """The steps one SSAS item names: by its Study Instance UID (unique) when that finds the
    procedure, else by Accession Number, which is not unique across patients: then the MPPS's
    Patient ID narrows it, and an answer spanning several patients links nothing (the MPPS
    waits for reconciliation rather than moving another patient's exam)."""
    if not ref.is_scheduled:
        return []
    statement = (
        select(ScheduledProcedureStep, ImagingServiceRequest.patient_pk)
        .join(RequestedProcedure, col(ScheduledProcedureStep.procedure_pk) == RequestedProcedure.id)
        .join(ImagingServiceRequest, col(RequestedProcedure.order_pk) == ImagingServiceRequest.id)
    )
    if ref.sps_id:
        statement = statement.where(ScheduledProcedureStep.sps_id == ref.sps_id)
    if ref.requested_procedure_id:
        statement = statement.where(
            RequestedProcedure.requested_procedure_id == ref.requested_procedure_id
        )
    if ref.study_instance_uid:
        by_study = session.exec(
            statement.where(RequestedProcedure.study_instance_uid == ref.study_instance_uid)
        ).all()
        if by_study:
            return [step for step, _ in by_study]
    if not ref.accession_number:
        return []
    statement = statement.where(ImagingServiceRequest.accession_number == ref.accession_number)
    if patient_id:
        statement = statement.join(
            Patient, col(ImagingServiceRequest.patient_pk) == Patient.id
        ).where(Patient.patient_id == patient_id)
    rows = session.exec(statement).all()
    if len({patient_pk for _, patient_pk in rows}) > 1:
        return []
    return [step for step, _ in rows]


def _linked_steps(session: Session, mpps_pk: int) -> list[ScheduledProcedureStep]:
    statement = (
        select(ScheduledProcedureStep)
        .join(PerformedStepLink, col(PerformedStepLink.sps_pk) == ScheduledProcedureStep.id)
        .where(PerformedStepLink.mpps_pk == mpps_pk)
        .order_by(col(ScheduledProcedureStep.id))
    )
    return list(session.exec(statement))


def link(
    session: Session,
    *,
    uid: str,
    steps: Sequence[tuple[str, str]],
    delivery: Delivery,
    actor: Actor,
) -> MppsView:
    """Reconciliation: link the MPPS to steps given as (Study Instance UID, SPS ID)."""
    row = _row(session, uid)
    if row is None:
        raise NoSuchInstanceError(f"no MPPS {uid}")
    assert row.id is not None
    found = []
    for study_uid, sps_id in steps:
        worklist.get_item(session, study_uid=study_uid, sps_id=sps_id)  # NotFoundError if unknown
        step = session.exec(
            select(ScheduledProcedureStep)
            .join(
                RequestedProcedure,
                col(ScheduledProcedureStep.procedure_pk) == RequestedProcedure.id,
            )
            .where(
                RequestedProcedure.study_instance_uid == study_uid,
                ScheduledProcedureStep.sps_id == sps_id,
            )
        ).one()
        found.append(step)
    if not found:
        raise ValidationError("name at least one step to link", field="steps")
    already = {s.id for s in _linked_steps(session, row.id)}
    new = [s for s in found if s.id not in already]
    for step in new:
        assert step.id is not None
        session.add(PerformedStepLink(mpps_pk=row.id, sps_pk=step.id))
    write.audit(
        session,
        actor=actor,
        action="link",
        entity=ENTITY,
        entity_pk=row.id,
        detail={"steps": [s.id for s in new]},
        context=uid,
    )
    _follow(session, row, new, MppsStatus(row.status), delivery, actor)
    session.flush()
    return view(session, row)


# ---------------------------------------------------------------------------------------------
# Steps follow; messages out


def _follow(
    session: Session,
    row: PerformedProcedureStep,
    steps: Sequence[ScheduledProcedureStep],
    status: MppsStatus,
    delivery: Delivery,
    actor: Actor,
) -> None:
    target = status.step_status
    for step in steps:
        if can_transition(SpsStatus(step.status), target):
            write.move_status(session, step, target, actor=actor, context=row.sop_instance_uid)
    if delivery.ris_endpoint and steps:
        for order_pk, payload in _status_payloads(session, row, steps, status).items():
            outbox.enqueue(
                session,
                channel=outbox.HL7,
                destination=delivery.ris_endpoint,
                ordering_key=f"order:{order_pk}",
                kind=StatusReport.KIND,
                payload=payload,
            )


def _status_payloads(
    session: Session,
    row: PerformedProcedureStep,
    steps: Sequence[ScheduledProcedureStep],
    status: MppsStatus,
) -> dict[int, dict[str, Any]]:
    """One mpps-status payload per order the steps belong to (``StatusReport.to_payload``)."""
    return {
        order_pk: report.to_payload()
        for order_pk, report in _status_reports(session, row, steps, status).items()
    }


def _status_reports(
    session: Session,
    row: PerformedProcedureStep,
    steps: Sequence[ScheduledProcedureStep],
    status: MppsStatus,
) -> dict[int, StatusReport]:
    """One StatusReport per order the steps belong to, its procedures in step order."""
    heads: dict[int, StatusReport] = {}
    procedures: dict[int, list[ReportedProcedure]] = {}
    reason = CodedReason.of_mpps(row.attributes) if status is MppsStatus.DISCONTINUED else None
    at = row.end_datetime if status is not MppsStatus.IN_PROGRESS else row.start_datetime
    for step in steps:
        procedure = session.get_one(RequestedProcedure, step.procedure_pk)
        order = session.get_one(ImagingServiceRequest, procedure.order_pk)
        assert order.id is not None
        if order.id not in heads:
            patient = session.get_one(Patient, order.patient_pk)
            heads[order.id] = StatusReport(
                mpps_uid=row.sop_instance_uid,
                status=status,
                at=at,
                patient=ReportedPatient(
                    patient_id=patient.patient_id,
                    issuer_of_patient_id=patient.issuer_of_patient_id,
                    name=patient.name,
                    birth_date=patient.birth_date,
                    sex=patient.sex,
                ),
                order=ReportedOrder(
                    accession_number=order.accession_number,
                    placer_order_number=order.placer_order_number,
                    filler_order_number=order.filler_order_number,
                ),
                discontinuation_reason=reason,
            )
        procedures.setdefault(order.id, []).append(
            ReportedProcedure(
                requested_procedure_id=procedure.requested_procedure_id,
                study_instance_uid=procedure.study_instance_uid,
                sps_id=step.sps_id,
                modality=step.modality,
            )
        )
    return {pk: replace(head, procedures=tuple(procedures[pk])) for pk, head in heads.items()}


def _forward(
    session: Session, uid: str, kind: str, dataset: JsonDataset, delivery: Delivery
) -> None:
    for target in dict.fromkeys((*delivery.forward, *remote_aes.mpps_destinations(session))):
        outbox.enqueue(
            session,
            channel=outbox.DICOM,
            destination=target,
            ordering_key=f"mpps:{uid}:{target}",
            kind=kind,
            payload=ForwardedMpps(uid, dataset).to_payload(),
        )


# ---------------------------------------------------------------------------------------------
# Reads


def _row(session: Session, uid: str) -> PerformedProcedureStep | None:
    return session.exec(
        select(PerformedProcedureStep).where(PerformedProcedureStep.sop_instance_uid == uid)
    ).first()


def get(session: Session, *, uid: str) -> MppsView:
    row = _row(session, uid)
    if row is None:
        raise NoSuchInstanceError(f"no MPPS {uid}")
    return view(session, row)


def _linked_views(session: Session, mpps_pks: Sequence[int]) -> dict[int, list[LinkedStepView]]:
    """The linked steps of several MPPS, in step order, in one query (no query per step)."""
    out: dict[int, list[LinkedStepView]] = {pk: [] for pk in mpps_pks}
    if not mpps_pks:
        return out
    sps, rp, isr = ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest
    statement = (
        sa_select(
            col(PerformedStepLink.mpps_pk),
            col(sps.id),
            col(rp.study_instance_uid),
            col(sps.sps_id),
            col(isr.accession_number),
            col(sps.status),
        )
        .join(sps, col(PerformedStepLink.sps_pk) == sps.id)
        .join(rp, col(sps.procedure_pk) == rp.id)
        .join(isr, col(rp.order_pk) == isr.id)
        .where(col(PerformedStepLink.mpps_pk).in_(list(mpps_pks)))
        .order_by(col(sps.id))
    )
    for mpps_pk, step_pk, study_uid, sps_id, accession, status in session.execute(statement):
        assert step_pk is not None
        out[mpps_pk].append(
            LinkedStepView(
                step_pk=step_pk,
                study_instance_uid=study_uid,
                sps_id=sps_id,
                accession_number=accession,
                status=status,
            )
        )
    return out


def _view(row: PerformedProcedureStep, linked: Sequence[LinkedStepView]) -> MppsView:
    return MppsView(
        sop_instance_uid=row.sop_instance_uid,
        status=row.status,
        performed_station_ae_title=row.performed_station_ae_title,
        modality=row.modality,
        start_datetime=row.start_datetime,
        end_datetime=row.end_datetime,
        created_at=row.created_at,
        updated_at=row.updated_at,
        linked_steps=tuple(linked),
        attributes=row.attributes,
    )


def view(session: Session, row: PerformedProcedureStep) -> MppsView:
    assert row.id is not None
    return _view(row, _linked_views(session, [row.id])[row.id])


def list_mpps(
    session: Session,
    *,
    status: str = "",
    unlinked: bool = False,
    station: str = "",
    step_pk: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[MppsView]:
    """Newest first; ``unlinked`` lists the ones awaiting reconciliation; ``step_pk`` those
    performing one scheduled step."""
    statement = select(PerformedProcedureStep)
    if step_pk is not None:
        performing = select(PerformedStepLink.mpps_pk).where(PerformedStepLink.sps_pk == step_pk)
        statement = statement.where(col(PerformedProcedureStep.id).in_(performing))
    if status:
        statement = statement.where(PerformedProcedureStep.status == status)
    if station:
        statement = statement.where(PerformedProcedureStep.performed_station_ae_title == station)
    if unlinked:
        linked = select(PerformedStepLink.mpps_pk)
        statement = statement.where(col(PerformedProcedureStep.id).not_in(linked))
    statement = (
        statement.order_by(col(PerformedProcedureStep.id).desc()).offset(offset).limit(limit)
    )
    rows = list(session.exec(statement))
    steps = _linked_views(session, [row.id for row in rows if row.id is not None])
    return [_view(row, steps[row.id]) for row in rows if row.id is not None]


def subjects_of_step(session: Session, *, step_pk: int) -> list[tuple[str, int]]:
    """The audit subjects ((entity, pk) pairs) of the MPPS performing one scheduled step."""
    statement = select(PerformedStepLink.mpps_pk).where(PerformedStepLink.sps_pk == step_pk)
    return [(ENTITY, pk) for pk in session.exec(statement)]
