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

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, insert, select

from app.config import OutboxSettings
from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset
from app.domain.errors import ValidationError
from app.domain.mpps import (
    DuplicateInstanceError,
    MppsClosedError,
    MppsStatus,
    NoSuchInstanceError,
    PerformedSummary,
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
#
# The hot path of every exam: each message reads what it needs once, writes with Core
# statements (no ORM flush, no keys read back but the new MPPS's), and answers from what it
# read and wrote instead of reading it again. ``tests/service/test_mpps_statements.py`` pins
# the statements.


def create(
    session: Session, *, command: StartPerformedStep, delivery: Delivery, actor: Actor
) -> MppsView:
    """N-CREATE (PS3.4 F.7.2.1): store, link, start the steps, queue the messages.

    INSERT ... ON CONFLICT DO NOTHING finds a duplicate SOP Instance UID (0x0111) without a
    SELECT first, and also when another association creates the same UID at the same moment."""
    uid = command.uid
    now = utcnow()
    summary = summary_of(command.attributes)
    pk = _insert_mpps(session, uid, command.status.value, command.attributes, summary, now)
    if pk is None:
        raise DuplicateInstanceError(f"MPPS {uid} exists", field="AffectedSOPInstanceUID")
    steps = _steps_named(session, command.steps, command.patient_id)
    if steps:
        session.execute(_LINK_INSERT, [{"mpps_pk": pk, "sps_pk": step.pk} for step in steps])
    created = write.AuditEntry(
        action="create",
        entity=ENTITY,
        entity_pk=pk,
        after={"status": command.status.value},
        detail={"sop_instance_uid": uid, "steps": [s.pk for s in steps]},
        context=uid,
        status=command.status.value,
    )
    row = _Mpps(pk, uid, command.status.value, command.attributes, summary, now, now)
    moved = _follow(session, row, steps, command.status, delivery, actor, created)
    _forward(session, uid, MPPS_CREATE, command.attributes, delivery)
    return _view(row, _linked_of(moved))


def update(
    session: Session, *, command: UpdatePerformedStep, delivery: Delivery, actor: Actor
) -> MppsView:
    """N-SET (PS3.4 F.7.2.2): only while IN PROGRESS; the steps follow a final status."""
    uid = command.uid
    found = _read_with_steps(session, uid)
    if found is None:
        raise NoSuchInstanceError(f"no MPPS {uid}", field="RequestedSOPInstanceUID")
    row, steps = found
    before = row.status
    merged, status = apply_set(MppsStatus(before), row.attributes, command.modifications)
    now = utcnow()
    row = replace(
        row, status=status.value, attributes=merged, summary=summary_of(merged), updated_at=now
    )
    values = _row_values(row.status, merged, row.summary)
    changed = session.execute(
        _MPPS_UPDATE, {"pk": row.pk, "before": before, **values, "updated_at": now}
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise MppsClosedError(MppsClosedError.COMMENT, field="PerformedProcedureStepStatus")
    updated = write.AuditEntry(
        action="update",
        entity=ENTITY,
        entity_pk=row.pk,
        before={"status": before},
        after={"status": status.value},
        detail={"keys": sorted(command.modifications)},
        context=uid,
        status=status.value,
    )
    if status.value != before:
        steps = _follow(session, row, steps, status, delivery, actor, updated)
    else:
        write.audit_many(session, actor, [updated])
    _forward(session, uid, MPPS_SET, command.modifications, delivery)
    return _view(row, _linked_of(steps))


@dataclass(frozen=True)
class _Mpps:
    """What create and update know of the MPPS row (read once, or just written)."""

    pk: int
    sop_instance_uid: str
    status: str
    attributes: JsonDataset
    summary: PerformedSummary
    created_at: datetime
    updated_at: datetime


def _row_values(status: str, attributes: JsonDataset, summary: PerformedSummary) -> dict[str, Any]:
    """The MPPS row's columns: the data set and, for lists and searches, its summary."""
    return {
        "status": status,
        "attributes": attributes,
        "performed_station_ae_title": summary.station_ae_title,
        "modality": summary.modality,
        "start_datetime": summary.start_datetime,
        "end_datetime": summary.end_datetime,
    }


def _insert_mpps(
    session: Session,
    uid: str,
    status: str,
    attributes: JsonDataset,
    summary: PerformedSummary,
    now: datetime,
) -> int | None:
    """The new row's key, or ``None`` when the SOP Instance UID exists (race-safe)."""
    statement = _INSERT_MPPS[session.get_bind().dialect.name]
    values = {
        "sop_instance_uid": uid,
        "created_at": now,
        "updated_at": now,
        **_row_values(status, attributes, summary),
    }
    pk: int | None = session.execute(statement, values).scalar_one_or_none()
    return pk


# ---------------------------------------------------------------------------------------------
# Linking


@dataclass(frozen=True)
class _Step:
    """A scheduled step as MPPS needs it: its status, what the answer lists and what the RIS
    status message reports (order, patient); read in the one query that finds the step."""

    pk: int
    sps_id: str
    status: str
    modality: str
    requested_procedure_id: str
    study_instance_uid: str
    order_pk: int
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    patient: ReportedPatient


# The hot path's statements are Core, on the tables, and built once (``bindparam``): no ORM
# bulk path, no statement construction or cache key per message.
def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


_SPS_T, _RP_T, _ISR_T, _PAT_T = map(
    _table, (ScheduledProcedureStep, RequestedProcedure, ImagingServiceRequest, Patient)
)
_SPS, _RP, _ISR, _PAT = _SPS_T.c, _RP_T.c, _ISR_T.c, _PAT_T.c
_MPPS, _LINK = _table(PerformedProcedureStep), _table(PerformedStepLink)
_STEP_COLUMNS = (
    _SPS.id,
    _SPS.sps_id,
    _SPS.status,
    _SPS.modality,
    _RP.requested_procedure_id,
    _RP.study_instance_uid,
    _ISR.id,
    _ISR.accession_number,
    _ISR.placer_order_number,
    _ISR.filler_order_number,
    _PAT.id,
    _PAT.patient_id,
    _PAT.issuer_of_patient_id,
    _PAT.name,
    _PAT.birth_date,
    _PAT.sex,
)
_STEPS_FROM = (
    _SPS_T.join(_RP_T, _SPS.procedure_pk == _RP.id)
    .join(_ISR_T, _RP.order_pk == _ISR.id)
    .join(_PAT_T, _ISR.patient_pk == _PAT.id)
)
_LINK_INSERT = insert(_LINK)
_MPPS_UPDATE = (
    sa_update(_MPPS)
    .where(_MPPS.c.id == bindparam("pk"))
    # IN PROGRESS as read: a concurrent N-SET that closed it first wins (PS3.4 F.7.2.2.3)
    .where(_MPPS.c.status == bindparam("before"))
)
_MPPS_WITH_STEPS = (
    # Plain LEFT JOINs on keys (a joined subquery would make SQLite scan every link).
    sa_select(
        _MPPS.c.id,
        _MPPS.c.status,
        _MPPS.c.attributes,
        _MPPS.c.created_at,
        _MPPS.c.updated_at,
        *_STEP_COLUMNS,
    )
    .select_from(
        _MPPS.outerjoin(_LINK, _LINK.c.mpps_pk == _MPPS.c.id)
        .outerjoin(_SPS_T, _LINK.c.sps_pk == _SPS.id)
        .outerjoin(_RP_T, _SPS.procedure_pk == _RP.id)
        .outerjoin(_ISR_T, _RP.order_pk == _ISR.id)
        .outerjoin(_PAT_T, _ISR.patient_pk == _PAT.id)
    )
    .where(_MPPS.c.sop_instance_uid == bindparam("uid"))
    .order_by(_SPS.id)
)
_INSERT_MPPS = {
    name: dialect.insert(_MPPS)
    .on_conflict_do_nothing(index_elements=["sop_instance_uid"])
    .returning(_MPPS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


@functools.cache
def _steps_statement(
    by_study: bool, sps_id: bool, procedure_id: bool, patient_id: bool
) -> Select[Any]:
    """The query for one SSAS item, by which of its values are given (built once each)."""
    statement = sa_select(*_STEP_COLUMNS).select_from(_STEPS_FROM)
    if sps_id:
        statement = statement.where(_SPS.sps_id == bindparam("sps_id"))
    if procedure_id:
        statement = statement.where(_RP.requested_procedure_id == bindparam("procedure_id"))
    if by_study:
        return statement.where(_RP.study_instance_uid == bindparam("study_uid"))
    statement = statement.where(_ISR.accession_number == bindparam("accession"))
    if patient_id:
        statement = statement.where(_PAT.patient_id == bindparam("patient_id"))
    return statement


def _step_of(values: Sequence[Any]) -> tuple[_Step, int]:
    """A ``_Step`` and its patient's key from the ``_STEP_COLUMNS`` of one result row."""
    (pk, sps_id, status, modality, rp_id, study_uid, order_pk, accession, placer, filler) = values[
        :10
    ]
    patient_pk, patient_id, issuer, name, birth_date, sex = values[10:]
    patient = ReportedPatient(patient_id, issuer, name, birth_date, sex)
    step = _Step(
        pk, sps_id, status, modality, rp_id, study_uid, order_pk, accession, placer, filler, patient
    )
    return step, patient_pk


def _steps_named(
    session: Session, references: Sequence[StepReference], patient_id: str
) -> list[_Step]:
    found: dict[int, _Step] = {}
    for ref in references:
        for step in _steps_of(session, ref, patient_id):
            found[step.pk] = step
    return sorted(found.values(), key=lambda step: step.pk)


def _steps_of(session: Session, ref: StepReference, patient_id: str) -> list[_Step]:
    """The steps one SSAS item names: by its Study Instance UID (unique) when that finds the
    procedure, else by Accession Number, which is not unique across patients: then the MPPS's
    Patient ID narrows it, and an answer spanning several patients links nothing (the MPPS
    waits for reconciliation rather than moving another patient's exam)."""
    if not ref.is_scheduled:
        return []
    given = {
        "sps_id": ref.sps_id,
        "procedure_id": ref.requested_procedure_id,
        "study_uid": ref.study_instance_uid,
        "accession": ref.accession_number,
        "patient_id": patient_id,
    }
    narrow = (bool(ref.sps_id), bool(ref.requested_procedure_id))
    if ref.study_instance_uid:
        by_study = session.execute(_steps_statement(True, *narrow, False), given).all()
        if by_study:
            return [_step_of(values)[0] for values in by_study]
    if not ref.accession_number:
        return []
    statement = _steps_statement(False, *narrow, bool(patient_id))
    rows = [_step_of(values) for values in session.execute(statement, given)]
    if len({patient_pk for _, patient_pk in rows}) > 1:
        return []
    return [step for step, _ in rows]


def _read_with_steps(session: Session, uid: str) -> tuple[_Mpps, list[_Step]] | None:
    """The MPPS and its linked steps (in step order) in one query: a LEFT JOIN, so an
    unlinked MPPS comes back with no steps."""
    rows = session.execute(_MPPS_WITH_STEPS, {"uid": uid}).all()
    if not rows:
        return None
    pk, status, attributes, created_at, updated_at = rows[0][:5]
    row = _Mpps(pk, uid, status, attributes, summary_of(attributes), created_at, updated_at)
    steps = [_step_of(values[5:])[0] for values in rows if values[5] is not None]
    return row, steps


def _linked_of(steps: Sequence[_Step]) -> list[LinkedStepView]:
    return [
        LinkedStepView(
            step_pk=s.pk,
            study_instance_uid=s.study_instance_uid,
            sps_id=s.sps_id,
            accession_number=s.accession_number,
            status=s.status,
        )
        for s in steps
    ]


def link(
    session: Session,
    *,
    uid: str,
    steps: Sequence[tuple[str, str]],
    delivery: Delivery,
    actor: Actor,
) -> MppsView:
    """Reconciliation: link the MPPS to steps given as (Study Instance UID, SPS ID)."""
    found_mpps = _read_with_steps(session, uid)
    if found_mpps is None:
        raise NoSuchInstanceError(f"no MPPS {uid}")
    row, linked = found_mpps
    found: list[_Step] = []
    for study_uid, sps_id in steps:
        worklist.get_item(session, study_uid=study_uid, sps_id=sps_id)  # NotFoundError if unknown
        statement = _steps_statement(True, True, False, False)
        values = session.execute(statement, {"study_uid": study_uid, "sps_id": sps_id}).one()
        found.append(_step_of(values)[0])
    if not found:
        raise ValidationError("name at least one step to link", field="steps")
    already = {s.pk for s in linked}
    new = list({s.pk: s for s in found if s.pk not in already}.values())
    if new:
        session.execute(_LINK_INSERT, [{"mpps_pk": row.pk, "sps_pk": s.pk} for s in new])
    linking = write.AuditEntry(
        action="link",
        entity=ENTITY,
        entity_pk=row.pk,
        detail={"steps": [s.pk for s in new]},
        context=uid,
    )
    moved = _follow(session, row, new, MppsStatus(row.status), delivery, actor, linking)
    by_pk = {s.pk: s for s in (*linked, *moved)}
    return _view(row, _linked_of(sorted(by_pk.values(), key=lambda s: s.pk)))


# ---------------------------------------------------------------------------------------------
# Steps follow; messages out


def _follow(
    session: Session,
    row: _Mpps,
    steps: Sequence[_Step],
    status: MppsStatus,
    delivery: Delivery,
    actor: Actor,
    first: write.AuditEntry,
) -> list[_Step]:
    """Move the steps that may follow ``status`` (IHE RAD-6/7), audit ``first`` and the moves
    in one INSERT, queue the RIS status messages; the steps as they are now."""
    target = status.step_status
    movable = {s.pk: s.status for s in steps if can_transition(SpsStatus(s.status), target)}
    moves = write.move_step_statuses(session, movable, target, context=row.sop_instance_uid)
    write.audit_many(session, actor, [first, *moves])
    moved = {entry.entity_pk for entry in moves}
    now = [replace(s, status=target.value) if s.pk in moved else s for s in steps]
    if delivery.ris_endpoint and now:
        outbox.enqueue_many(
            session,
            [
                outbox.Outgoing(
                    channel=outbox.HL7,
                    destination=delivery.ris_endpoint,
                    ordering_key=f"order:{order_pk}",
                    kind=StatusReport.KIND,
                    payload=report.to_payload(),
                )
                for order_pk, report in _status_reports(row, now, status).items()
            ],
        )
    return now


def _status_reports(
    row: _Mpps, steps: Sequence[_Step], status: MppsStatus
) -> dict[int, StatusReport]:
    """One StatusReport per order the steps belong to, its procedures in step order."""
    heads: dict[int, StatusReport] = {}
    procedures: dict[int, list[ReportedProcedure]] = {}
    reason = CodedReason.of_mpps(row.attributes) if status is MppsStatus.DISCONTINUED else None
    summary = row.summary
    at = summary.end_datetime if status is not MppsStatus.IN_PROGRESS else summary.start_datetime
    for step in steps:
        if step.order_pk not in heads:
            heads[step.order_pk] = StatusReport(
                mpps_uid=row.sop_instance_uid,
                status=status,
                at=at,
                patient=step.patient,
                order=ReportedOrder(
                    accession_number=step.accession_number,
                    placer_order_number=step.placer_order_number,
                    filler_order_number=step.filler_order_number,
                ),
                discontinuation_reason=reason,
            )
        procedures.setdefault(step.order_pk, []).append(
            ReportedProcedure(
                requested_procedure_id=step.requested_procedure_id,
                study_instance_uid=step.study_instance_uid,
                sps_id=step.sps_id,
                modality=step.modality,
            )
        )
    return {pk: replace(head, procedures=tuple(procedures[pk])) for pk, head in heads.items()}


def _forward(
    session: Session, uid: str, kind: str, dataset: JsonDataset, delivery: Delivery
) -> None:
    targets = dict.fromkeys((*delivery.forward, *remote_aes.mpps_destinations(session)))
    outbox.enqueue_many(
        session,
        [
            outbox.Outgoing(
                channel=outbox.DICOM,
                destination=target,
                ordering_key=f"mpps:{uid}:{target}",
                kind=kind,
                payload=ForwardedMpps(uid, dataset).to_payload(),
            )
            for target in targets
        ],
    )


def _view(row: _Mpps, linked: Sequence[LinkedStepView]) -> MppsView:
    """The answer, from what the message read and wrote (nothing is read again)."""
    return MppsView(
        sop_instance_uid=row.sop_instance_uid,
        status=row.status,
        performed_station_ae_title=row.summary.station_ae_title,
        modality=row.summary.modality,
        start_datetime=row.summary.start_datetime,
        end_datetime=row.summary.end_datetime,
        created_at=row.created_at,
        updated_at=row.updated_at,
        linked_steps=tuple(linked),
        attributes=row.attributes,
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


def _stored_view(row: PerformedProcedureStep, linked: Sequence[LinkedStepView]) -> MppsView:
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
    return _stored_view(row, _linked_views(session, [row.id])[row.id])


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
    return [_stored_view(row, steps[row.id]) for row in rows if row.id is not None]


def subjects_of_step(session: Session, *, step_pk: int) -> list[tuple[str, int]]:
    """The audit subjects ((entity, pk) pairs) of the MPPS performing one scheduled step."""
    statement = select(PerformedStepLink.mpps_pk).where(PerformedStepLink.sps_pk == step_pk)
    return [(ENTITY, pk) for pk in session.exec(statement)]
