"""The write model: every row of a worklist item is written here, and nowhere else.

Patients, orders (Imaging Service Requests), requested procedures and scheduled procedure steps
are inserted, changed, moved between statuses and deleted by the functions below; each records
its audit event (who, before and after) and notes a change event for open pages in the same
transaction. The services (``orders``, ``worklist``, ``intake``, ``mpps``, ``patients``) decide
*what* to write; this module is *how* a row gets written. Other tables (stations, MPPS, outbox,
users) belong to their own service, which uses ``audit`` from here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, delete, insert, select, update

from app.domain.actor import Actor
from app.domain.errors import ConflictError, InvalidTransitionError
from app.domain.items import (
    COLUMNS,
    OrderData,
    PatientData,
    ProcedureData,
    StepData,
    WorklistItemData,
    validate_patient,
)
from app.domain.matching import VALUE_SEPARATOR, person_name_key
from app.domain.mwl_attributes import Level
from app.domain.status import SpsStatus, can_transition
from app.events import ChangeEvent, note
from app.models import (
    AuditEvent,
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    ScheduledStationAETitle,
    utcnow,
)

PATIENT = "patient"
ORDER = "order"
PROCEDURE = "requested_procedure"
STEP = "scheduled_procedure_step"
PATIENT_DEMOGRAPHICS = ("name", "birth_date", "sex")

# Change events name entities the way the page does.
_EVENT_ENTITY = {PATIENT: "patient", ORDER: "order", PROCEDURE: "procedure", STEP: "step"}


# ---------------------------------------------------------------------------------------------
# Audit trail


def audit(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity: str,
    entity_pk: int,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    context: str = "",
    status: str | None = None,
) -> None:
    """One audit row in the change's own transaction, and a change event after its commit."""
    body: dict[str, Any] = dict(detail or {})
    if before is not None:
        body["before"] = dict(before)
    if after is not None:
        body["after"] = dict(after)
    session.add(AuditEvent(**_audit_row(actor, action, entity, entity_pk, body, context)))
    note(session, ChangeEvent(_EVENT_ENTITY.get(entity, entity), entity_pk, action, status))


# Core statements built once (on the tables, not the ORM classes): no ORM bulk path, no
# statement construction or cache key per call.
_AUDIT_INSERT = insert(AuditEvent.__table__)  # type: ignore[attr-defined]
_STEPS = ScheduledProcedureStep.__table__.c  # type: ignore[attr-defined]
# Compare and set: only the steps still in the status the caller read move (see below).
_MOVE_STEPS = (
    update(ScheduledProcedureStep.__table__)  # type: ignore[attr-defined]
    .where(_STEPS.id.in_(bindparam("pks", expanding=True)), _STEPS.status == bindparam("read"))
    .values(status=bindparam("status"), updated_at=bindparam("updated_at"))
    .returning(_STEPS.id)
)
_MOVE_ATTEMPTS = 5  # a step changed under every attempt is left as the last change put it
_STEP_STATUSES = core_select(_STEPS.id, _STEPS.status).where(
    _STEPS.id.in_(bindparam("pks", expanding=True))
)


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as ``audit`` takes it, to write several with ``audit_many``."""

    action: str
    entity: str
    entity_pk: int
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    detail: Mapping[str, Any] | None = None
    context: str = ""
    status: str | None = None


def audit_many(session: Session, actor: Actor, entries: Sequence[AuditEntry]) -> None:
    """The rows and change events ``audit`` writes one by one, in one INSERT and in order.

    A Core statement: no ORM flush of the session, no primary keys read back (hot paths such
    as MPPS write a few audit rows per message)."""
    if not entries:
        return
    rows = []
    for entry in entries:
        body: dict[str, Any] = dict(entry.detail or {})
        if entry.before is not None:
            body["before"] = dict(entry.before)
        if entry.after is not None:
            body["after"] = dict(entry.after)
        rows.append(
            _audit_row(actor, entry.action, entry.entity, entry.entity_pk, body, entry.context)
        )
    session.execute(_AUDIT_INSERT, rows)
    for entry in entries:
        entity = _EVENT_ENTITY.get(entry.entity, entry.entity)
        note(session, ChangeEvent(entity, entry.entity_pk, entry.action, entry.status))


def _audit_row(
    actor: Actor, action: str, entity: str, pk: int, body: dict[str, Any], context: str
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "source": actor.source.value,
        "actor": actor.name[:128],
        "action": action,
        "entity": entity,
        "entity_pk": pk,
        "context": (context or actor.context)[:199],
        "detail": body,
    }


def assign(row: Any, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Set ``values`` on ``row``; ``{field: (before, after)}`` of those that changed."""
    changed = {
        name: (getattr(row, name), value)
        for name, value in values.items()
        if getattr(row, name) != value
    }
    for name, (_, value) in changed.items():
        setattr(row, name, value)
    if changed:
        row.updated_at = utcnow()
    return changed


def audit_update(
    session: Session, actor: Actor, entity: str, pk: int, changed: Mapping[str, tuple[Any, Any]]
) -> None:
    """The audit row of an update, from what ``assign`` reports as changed (nothing: no row)."""
    if not changed:
        return
    # Free-form attribute blobs are named, not copied: the trail says they changed.
    shown = {k: v for k, v in changed.items() if k != "attributes"}
    audit(
        session,
        actor=actor,
        action="update",
        entity=entity,
        entity_pk=pk,
        before={k: b for k, (b, _) in shown.items()},
        after={k: a for k, (_, a) in shown.items()},
        detail={"fields": sorted(changed)},
    )


# ---------------------------------------------------------------------------------------------
# Patients


def insert_patient(session: Session, data: PatientData) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: the new primary key, or ``None`` when the identity exists.

    Race-safe on SQLite and PostgreSQL alike: of two transactions inserting one identity at once,
    exactly one gets a key and neither fails.
    """
    now = utcnow()
    values = {
        "patient_id": data.patient_id,
        "issuer_of_patient_id": data.issuer_of_patient_id,
        "name": data.name,
        "name_key": person_name_key(data.name),
        "birth_date": data.birth_date,
        "sex": data.sex,
        "attributes": data.attributes,
        "created_at": now,
        "updated_at": now,
    }
    statement = _insert_patient_statement(session.get_bind().dialect.name)
    pk: int | None = session.execute(statement, values).scalar_one_or_none()
    return pk


@functools.cache
def _insert_patient_statement(dialect: str) -> Any:
    """Built once per dialect, values bound at execution (a Core statement: no ORM machinery,
    and SQLAlchemy's cache key of a statement object is computed once)."""
    table = _table(Patient)
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return insert_.on_conflict_do_nothing(
        index_elements=["patient_id", "issuer_of_patient_id"]
    ).returning(table.c.id)


def patient_by_identity(session: Session, patient_id: str, issuer: str) -> Patient | None:
    return session.exec(
        select(Patient).where(
            Patient.patient_id == patient_id, Patient.issuer_of_patient_id == issuer
        )
    ).first()


def created_patient(session: Session, data: PatientData, pk: int, *, actor: Actor) -> Patient:
    audit(
        session,
        actor=actor,
        action="create",
        entity=PATIENT,
        entity_pk=pk,
        after={f: getattr(data, f) for f in ("patient_id", *PATIENT_DEMOGRAPHICS)},
    )
    return session.get_one(Patient, pk)


def update_patient_row(
    session: Session,
    patient: Patient,
    changes: Mapping[str, str],
    attributes: Mapping[str, Any],
    *,
    actor: Actor,
) -> None:
    """Set demographics (``changes``) and merge ``attributes`` into the patient's others."""
    values: dict[str, Any] = dict(changes)
    merged = {**patient.attributes, **attributes}
    if merged != patient.attributes:
        values["attributes"] = merged
    changed = assign(patient, values)
    if not changed:
        return
    patient.name_key = person_name_key(patient.name)
    session.add(patient)
    assert patient.id is not None
    audit_update(session, actor, PATIENT, patient.id, changed)


def ensure_patient(session: Session, data: PatientData, *, actor: Actor) -> Patient:
    """Find or create the patient and merge in what ``data`` knows.

    Race-safe (see ``insert_patient``): concurrent messages about one new patient create one
    row. Empty values in ``data`` do not erase known ones. Values over their VR's length are
    refused (``ValidationError``) on every database, not only where a column enforces it.
    """
    validate_patient(data)
    inserted_pk = insert_patient(session, data)
    if inserted_pk is not None:
        return created_patient(session, data, inserted_pk, actor=actor)
    return known_patient(session, data, actor=actor)


def known_patient(session: Session, data: PatientData, *, actor: Actor) -> Patient:
    """The existing patient of ``data``'s identity, with what ``data`` knows merged in."""
    patient = patient_by_identity(session, data.patient_id, data.issuer_of_patient_id)
    assert patient is not None
    changes = {f: getattr(data, f) for f in PATIENT_DEMOGRAPHICS if getattr(data, f)}
    update_patient_row(session, patient, changes, data.attributes, actor=actor)
    return patient


def merge_patient_rows(
    session: Session, prior: Patient, surviving: Patient, *, actor: Actor
) -> None:
    """Move the prior patient's orders and history to the surviving one, then remove it."""
    assert surviving.id is not None and prior.id is not None
    moved = session.execute(
        update(ImagingServiceRequest)
        .where(col(ImagingServiceRequest.patient_pk) == prior.id)
        .values(patient_pk=surviving.id, updated_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    session.execute(
        update(AuditEvent)
        .where(col(AuditEvent.entity) == PATIENT, col(AuditEvent.entity_pk) == prior.id)
        .values(entity_pk=surviving.id)
    )
    audit(
        session,
        actor=actor,
        action="merge",
        entity=PATIENT,
        entity_pk=surviving.id,
        detail={
            "prior_patient_id": prior.patient_id,
            "prior_issuer": prior.issuer_of_patient_id,
            "prior_pk": prior.id,
            "orders_moved": int(moved or 0),
        },
    )
    session.delete(prior)
    session.flush()


def has_orders(session: Session, patient: Patient) -> bool:
    return _exists(session, ImagingServiceRequest.patient_pk == patient.id)


def delete_patient_row(session: Session, patient: Patient, *, actor: Actor) -> None:
    """Remove a patient that has no orders (HL7 A29); refuses one that has."""
    assert patient.id is not None
    if has_orders(session, patient):
        raise InvalidTransitionError(
            f"patient {patient.patient_id} has orders and cannot be deleted", field="PatientID"
        )
    audit(
        session,
        actor=actor,
        action="delete",
        entity=PATIENT,
        entity_pk=patient.id,
        before={"patient_id": patient.patient_id, "issuer": patient.issuer_of_patient_id},
    )
    session.delete(patient)
    session.flush()


def change_patient_identity(
    session: Session, patient: Patient, patient_id: str, issuer: str, *, actor: Actor
) -> None:
    before = {"patient_id": patient.patient_id, "issuer": patient.issuer_of_patient_id}
    patient.patient_id, patient.issuer_of_patient_id = patient_id, issuer
    patient.updated_at = utcnow()
    session.add(patient)
    assert patient.id is not None
    audit(
        session,
        actor=actor,
        action="change_id",
        entity=PATIENT,
        entity_pk=patient.id,
        before=before,
        after={"patient_id": patient_id, "issuer": issuer},
    )
    session.flush()


# ---------------------------------------------------------------------------------------------
# Orders and requested procedures


def order_values(data: OrderData) -> dict[str, Any]:
    return {c: getattr(data, c) for c in COLUMNS[Level.ORDER].values() if getattr(data, c)}


def procedure_values(data: ProcedureData) -> dict[str, Any]:
    return {
        "requested_procedure_id": data.requested_procedure_id,
        "description": data.description,
        "priority": data.priority,
        "attributes": data.attributes,
    }


def create_order_row(
    session: Session, patient: Patient, data: OrderData, *, actor: Actor
) -> ImagingServiceRequest:
    assert patient.id is not None
    values = order_values(data)
    order = ImagingServiceRequest(patient_pk=patient.id, attributes=data.attributes, **values)
    session.add(order)
    session.flush()
    assert order.id is not None
    audit(session, actor=actor, action="create", entity=ORDER, entity_pk=order.id, after=values)
    return order


def update_row(
    session: Session, row: Any, entity: str, values: Mapping[str, Any], *, actor: Actor
) -> None:
    """Set ``values`` on an order or requested procedure row, audited with before and after."""
    changed = assign(row, values)
    if changed:
        session.add(row)
        assert row.id is not None
        audit_update(session, actor, entity, row.id, changed)


def create_procedure_row(
    session: Session, order: ImagingServiceRequest, data: ProcedureData, *, actor: Actor
) -> RequestedProcedure:
    assert order.id is not None
    values = procedure_values(data)
    procedure = RequestedProcedure(
        order_pk=order.id, study_instance_uid=data.study_instance_uid, **values
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
    audit(
        session,
        actor=actor,
        action="create",
        entity=PROCEDURE,
        entity_pk=procedure.id,
        after={
            "study_instance_uid": data.study_instance_uid,
            "requested_procedure_id": data.requested_procedure_id,
        },
    )
    return procedure


# ---------------------------------------------------------------------------------------------
# Scheduled procedure steps


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


def create_step_row(
    session: Session, procedure: RequestedProcedure, data: StepData, *, actor: Actor
) -> ScheduledProcedureStep:
    assert procedure.id is not None
    status = data.status or SpsStatus.SCHEDULED
    values = step_values(data)
    step = ScheduledProcedureStep(
        procedure_pk=procedure.id, sps_id=data.sps_id, status=status.value, **values
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
    shown = {k: v for k, v in values.items() if k not in _NOT_SHOWN}
    audit(
        session,
        actor=actor,
        action="create",
        entity=STEP,
        entity_pk=step.id,
        after={"sps_id": data.sps_id, "status": status.value, **shown},
        status=status.value,
    )
    return step


# ---------------------------------------------------------------------------------------------
# Many new items at once (``import-wl``)


def create_items(session: Session, items: Sequence[WorklistItemData], *, actor: Actor) -> list[int]:
    """Write many *new* items with a few multi-row statements instead of several per item.

    Every item's Study Instance UID must be new and appear once in ``items`` (the caller
    checks; a clash still fails with ``ConflictError`` and nothing is written). Patients and
    orders are found or created as one by one; a patient first seen here is created with what
    all its items say (later non-empty values win). Every new row gets its audit row and
    change event, as when written singly. Returns the new steps' primary keys.
    """
    patient_pks = _patient_pks(session, [item.patient for item in items], actor)
    records: list[_Created] = []
    order_pks = _order_pks(session, items, patient_pks, records)
    step_pks = _procedures_and_steps(session, items, order_pks, records)
    _audit_created(session, actor, records)
    return step_pks


def _procedures_and_steps(
    session: Session,
    items: Sequence[WorklistItemData],
    order_pks: Sequence[int],
    records: list[_Created],
) -> list[int]:
    """Insert each item's requested procedure, step and station titles (a few multi-row
    statements); their creations are added to ``records``. Returns the steps' keys."""
    procedure_pks = _insert(
        session,
        RequestedProcedure,
        [
            {
                "order_pk": order_pk,
                "study_instance_uid": item.procedure.study_instance_uid,
                **procedure_values(item.procedure),
            }
            for item, order_pk in zip(items, order_pks, strict=True)
        ],
        ("study_instance_uid",),
        "Study Instance UID already used",
        "StudyInstanceUID",
    )
    steps = [
        {
            "procedure_pk": procedure_pk,
            "sps_id": item.step.sps_id,
            "status": (item.step.status or SpsStatus.SCHEDULED).value,
            **step_values(item.step),
        }
        for item, procedure_pk in zip(items, procedure_pks, strict=True)
    ]
    step_pks = _insert(
        session,
        ScheduledProcedureStep,
        steps,
        ("procedure_pk", "sps_id"),
        "SPS ID already used",
        "ScheduledProcedureStepID",
    )
    titles = [
        {"sps_pk": pk, "ae_title": title}
        for pk, step in zip(step_pks, steps, strict=True)
        for title in dict.fromkeys(step["station_ae_title"].split(VALUE_SEPARATOR))
    ]
    session.execute(_plain_insert(ScheduledStationAETitle), titles)
    for item, procedure_pk, step_pk, step in zip(
        items, procedure_pks, step_pks, steps, strict=True
    ):
        procedure = {
            "study_instance_uid": item.procedure.study_instance_uid,
            "requested_procedure_id": item.procedure.requested_procedure_id,
        }
        shown = {k: v for k, v in step.items() if k not in (*_NOT_SHOWN, "procedure_pk")}
        records.append(_Created(PROCEDURE, procedure_pk, procedure))
        records.append(_Created(STEP, step_pk, shown, step["status"]))
    return step_pks


_NOT_SHOWN = ("attributes", "performing_physician_key")


@dataclass(frozen=True)
class _Created:
    entity: str
    pk: int
    after: Mapping[str, Any]
    status: str | None = None


def _audit_created(session: Session, actor: Actor, records: Sequence[_Created]) -> None:
    """The audit rows of many new rows in one statement, as ``audit`` writes them singly."""
    if not records:
        return
    now = utcnow()  # one statement, one time
    rows = [
        {**_audit_row(actor, "create", r.entity, r.pk, {"after": dict(r.after)}, ""), "at": now}
        for r in records
    ]
    session.execute(_plain_insert(AuditEvent), rows)
    for record in records:
        event_ = ChangeEvent(_EVENT_ENTITY[record.entity], record.pk, "create", record.status)
        note(session, event_)


def _insert(
    session: Session,
    model: Any,
    rows: list[dict[str, Any]],
    keys: Sequence[str],
    message: str,
    field: str,
    tiebreak: Sequence[str] = (),
) -> list[int]:
    """INSERT the rows (the model's defaults fill what they leave out); their keys, in order.

    Multi-row ``INSERT ... RETURNING`` (SQLAlchemy's "insertmanyvalues", a few hundred rows a
    statement). Neither SQLite nor PostgreSQL promises RETURNING rows in VALUES order, and
    asking SQLAlchemy to sort them makes it insert row by row on SQLite, so each returned row
    is matched back to its parameters by the ``keys`` columns: a unique key, or every column
    when there is none (rows equal in all of them are interchangeable). ``tiebreak`` columns
    (JSON, dearer to compare) join the keys only when the ``keys`` values repeat.
    """
    if not rows:
        return []
    # One statement, one time (created_at, updated_at); a default dict is never changed.
    defaults = _defaults(model)
    full = [{**defaults, **row} for row in rows]
    key: Callable[[Sequence[Any]], tuple[Any, ...]] = tuple
    if tiebreak and len({tuple(row[k] for k in keys) for row in full}) < len(full):
        keys, key = (*keys, *tiebreak), _key
    try:
        if len(full) == 1:  # nothing to match back
            return [int(session.execute(_returning_insert(model, ()), full[0]).scalar_one())]
        returned = session.execute(_returning_insert(model, tuple(keys)), full).all()
    except IntegrityError:
        raise ConflictError(message, field=field) from None
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for pk, *values in returned:
        by_key.setdefault(key(values), []).append(int(pk))
    try:
        return [by_key[key([row[k] for k in keys])].pop() for row in full]
    except (KeyError, IndexError):  # a value the database changed on the way: never guess
        raise RuntimeError(f"inserted {_table(model).name} rows not matched by {keys}") from None


_PATIENT_KEY = ("patient_id", "issuer_of_patient_id")
# An order has no unique key: all its columns but the primary key and the timestamps (its
# attributes only break ties: ``_insert``'s ``tiebreak``).
_ORDER_KEY = tuple(
    column.name
    for column in ImagingServiceRequest.__table__.columns  # type: ignore[attr-defined]
    if column.name not in ("id", "created_at", "updated_at", "attributes")
)


def _key(values: Sequence[Any]) -> tuple[Any, ...]:
    """Returned column values as a hashable key (JSON columns by their canonical text)."""
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in values)


def _patient_pks(session: Session, datas: Sequence[PatientData], actor: Actor) -> list[int]:
    """The patient of each ``datas`` entry: a known patient, with what the entry knows merged
    in as ``ensure_patient`` does, or a new one created once per identity."""
    ids = sorted({data.patient_id for data in datas})
    table = _table(Patient)
    # Known patients as plain rows: most are unchanged, and only those that change are loaded.
    known = {
        (row.patient_id, row.issuer_of_patient_id): row
        for row in session.execute(
            core_select(table.c.id, table.c.patient_id, table.c.issuer_of_patient_id,
                   *(table.c[f] for f in PATIENT_DEMOGRAPHICS), table.c.attributes)
            .where(table.c.patient_id.in_(ids))
        )
    }  # fmt: skip
    loaded: dict[tuple[str, str], Patient] = {}
    new: dict[tuple[str, str], dict[str, Any]] = {}
    for data in datas:
        identity = (data.patient_id, data.issuer_of_patient_id)
        changes = {f: getattr(data, f) for f in PATIENT_DEMOGRAPHICS if getattr(data, f)}
        if identity in known:
            patient = loaded.get(identity)
            if patient is None and _changes_patient(known[identity], changes, data.attributes):
                patient = loaded[identity] = session.get_one(Patient, known[identity].id)
            if patient is not None:
                update_patient_row(session, patient, changes, data.attributes, actor=actor)
        elif identity in new:
            folded = new[identity]
            folded.update(changes)
            folded["attributes"] = {**folded["attributes"], **data.attributes}
        else:
            new[identity] = {
                "patient_id": data.patient_id,
                "issuer_of_patient_id": data.issuer_of_patient_id,
                **{f: getattr(data, f) for f in PATIENT_DEMOGRAPHICS},
                "attributes": dict(data.attributes),
            }
    rows = [{**row, "name_key": person_name_key(row["name"])} for row in new.values()]
    pks = _insert(session, Patient, rows, _PATIENT_KEY, "patient created concurrently", "PatientID")
    created = dict(zip(new, pks, strict=True))
    _audit_created(
        session,
        actor,
        [
            _Created(PATIENT, pk, {f: row[f] for f in ("patient_id", *PATIENT_DEMOGRAPHICS)})
            for pk, row in zip(pks, rows, strict=True)
        ],
    )
    result = []
    for data in datas:
        identity = (data.patient_id, data.issuer_of_patient_id)
        result.append(created[identity] if identity in created else int(known[identity].id))
    return result


def _changes_patient(row: Any, changes: Mapping[str, str], attributes: Mapping[str, Any]) -> bool:
    """Whether ``update_patient_row`` would change the patient stored as ``row``."""
    if any(getattr(row, name) != value for name, value in changes.items()):
        return True
    return {**row.attributes, **attributes} != row.attributes


def _order_pks(
    session: Session,
    items: Sequence[WorklistItemData],
    patient_pks: Sequence[int],
    records: list[_Created],
    *,
    look_up: bool = True,
) -> list[int]:
    """Each item's order: the patient's order with its Accession Number (looked up only when
    ``look_up``: not for patients inserted just now), else a new one, inserted here (shared by
    the items of one patient and accession); their creations are added to ``records``."""
    accessions = sorted({i.order.accession_number for i in items if i.order.accession_number})
    known: dict[tuple[int, str], int] = {}
    if look_up and accessions:
        rows = session.exec(
            select(
                ImagingServiceRequest.id,
                ImagingServiceRequest.patient_pk,
                col(ImagingServiceRequest.accession_number),
            )
            .where(
                col(ImagingServiceRequest.accession_number).in_(accessions),
                col(ImagingServiceRequest.patient_pk).in_(set(patient_pks)),
            )
            .order_by(col(ImagingServiceRequest.id))
        )
        for pk, patient_pk, accession in rows:
            known.setdefault((patient_pk, accession), _pk_value(pk))
    # an item's order: a known key, or the index of the new order it creates or shares
    picks: list[int | tuple[str, int]] = []
    new: list[dict[str, Any]] = []
    new_by_key: dict[tuple[int, str], int] = {}
    for item, patient_pk in zip(items, patient_pks, strict=True):
        key = (patient_pk, item.order.accession_number)
        if item.order.accession_number and key in known:
            picks.append(known[key])
            continue
        if item.order.accession_number and key in new_by_key:
            picks.append(("new", new_by_key[key]))
            continue
        values = order_values(item.order)
        new.append({"patient_pk": patient_pk, **values, "attributes": item.order.attributes})
        if item.order.accession_number:
            new_by_key[key] = len(new) - 1
        picks.append(("new", len(new) - 1))
    pks = _insert(
        session,
        ImagingServiceRequest,
        new,
        _ORDER_KEY,
        "order created concurrently",
        "AccessionNumber",
        tiebreak=("attributes",),
    )
    for pk, row in zip(pks, new, strict=True):
        shown = {k: v for k, v in row.items() if k not in ("patient_pk", "attributes")}
        records.append(_Created(ORDER, pk, shown))
    return [pick if isinstance(pick, int) else pks[pick[1]] for pick in picks]


def _pk_value(pk: int | None) -> int:
    assert pk is not None
    return pk


def update_step_row(
    session: Session,
    step: ScheduledProcedureStep,
    values: Mapping[str, Any],
    status: SpsStatus | None,
    *,
    actor: Actor,
) -> None:
    """Change the step's fields, then (when given and different) its status."""
    changed = assign(step, values)
    changed.pop("performing_physician_key", None)
    if status is not None and status.value != step.status:
        move_status(session, step, status, actor=actor)
    if not changed:
        return
    session.add(step)
    session.flush()
    if "station_ae_title" in changed:
        _replace_station_titles(session, step)
    assert step.id is not None
    audit_update(session, actor, STEP, step.id, changed)


def move_status(
    session: Session,
    step: ScheduledProcedureStep,
    status: SpsStatus,
    *,
    actor: Actor,
    reason: str = "",
    context: str = "",
) -> None:
    """Move the step to ``status`` if its current status allows it (``can_transition``).

    A compare and set, as ``move_step_statuses``: if another transaction moved the step since
    it was read, the move is judged again against the status it has now (and refused if that
    one forbids it), never written over it.
    """
    assert step.id is not None
    for _attempt in range(_MOVE_ATTEMPTS):
        current = SpsStatus(step.status)
        if not can_transition(current, status):
            raise InvalidTransitionError(
                f"step {step.sps_id} is {current}; it cannot become {status}",
                field="ScheduledProcedureStepStatus",
            )
        if current == status:
            return
        now = utcnow()
        if _move_from(session, {step.id: current.value}, status, now):
            break
        session.refresh(step, ["status", "updated_at"])  # READ COMMITTED: the change that won
    else:
        raise ConflictError(
            f"step {step.sps_id} kept changing; try again", field="ScheduledProcedureStepStatus"
        )
    # the row holds these already: the object learns them without another UPDATE
    set_committed_value(step, "status", status.value)
    set_committed_value(step, "updated_at", now)
    audit(
        session,
        actor=actor,
        action="status",
        entity=STEP,
        entity_pk=step.id,
        before={"status": current.value},
        after={"status": status.value},
        detail={"reason": reason} if reason else None,
        context=context,
        status=status.value,
    )


def move_step_statuses(
    session: Session,
    steps: Mapping[int, str],
    status: SpsStatus,
    *,
    context: str = "",
) -> list[AuditEntry]:
    """``move_status`` for several steps given as ``{pk: current status}``, in one Core UPDATE.

    The caller has read the steps' statuses in its own transaction and must not hold them as
    ORM objects (they would not see this UPDATE). Refuses a move ``can_transition`` forbids,
    skips steps already there; returns the audit entries for the caller's ``audit_many``.

    The UPDATE moves a step only if it is still in the status read (compare and set): under
    PostgreSQL's READ COMMITTED another transaction (an HL7 cancel, a page's edit) may have
    moved it since, and a plain UPDATE would overwrite that. Such a step is read again and
    moved from where it is now if that move is allowed, else left as the other change put it.
    """
    for pk, current in steps.items():
        if not can_transition(SpsStatus(current), status):
            raise InvalidTransitionError(
                f"step {pk} is {current}; it cannot become {status}",
                field="ScheduledProcedureStepStatus",
            )
    moving = {pk: current for pk, current in steps.items() if current != status.value}
    entries: list[AuditEntry] = []
    for _attempt in range(_MOVE_ATTEMPTS):
        if not moving:
            break
        moved = _move_from(session, moving, status, utcnow())
        entries.extend(
            _status_entry(pk, read, status, context) for pk, read in moving.items() if pk in moved
        )
        stale = [pk for pk in moving if pk not in moved]
        if not stale:
            break
        # READ COMMITTED: this SELECT sees the change that beat the UPDATE
        now = session.execute(_STEP_STATUSES, {"pks": stale}).all()
        moving = {
            pk: current
            for pk, current in now
            if current != status.value and can_transition(SpsStatus(current), status)
        }
    return entries


def _move_from(
    session: Session, moving: Mapping[int, str], status: SpsStatus, updated_at: datetime
) -> set[int]:
    """The steps of ``moving`` ({pk: status read}) that were still there and moved now."""
    by_read: dict[str, list[int]] = {}
    for pk, current in moving.items():
        by_read.setdefault(current, []).append(pk)
    moved: set[int] = set()
    for read, pks in by_read.items():
        values = {"pks": pks, "read": read, "status": status.value, "updated_at": updated_at}
        moved.update(session.execute(_MOVE_STEPS, values).scalars())
    return moved


def _status_entry(pk: int, before: str, status: SpsStatus, context: str) -> AuditEntry:
    return AuditEntry(
        action="status",
        entity=STEP,
        entity_pk=pk,
        before={"status": before},
        after={"status": status.value},
        context=context,
        status=status.value,
    )


def delete_step_row(session: Session, step: ScheduledProcedureStep, *, actor: Actor) -> None:
    """Remove the step; a procedure or order left without steps goes with it."""
    assert step.id is not None
    procedure = session.get_one(RequestedProcedure, step.procedure_pk)
    audit(
        session,
        actor=actor,
        action="delete",
        entity=STEP,
        entity_pk=step.id,
        before={
            "study_instance_uid": procedure.study_instance_uid,
            "sps_id": step.sps_id,
            "status": step.status,
        },
    )
    session.execute(
        delete(ScheduledStationAETitle).where(col(ScheduledStationAETitle.sps_pk) == step.id)
    )
    session.delete(step)
    session.flush()
    if not _exists(session, ScheduledProcedureStep.procedure_pk == procedure.id):
        order_pk = procedure.order_pk
        assert procedure.id is not None
        audit(
            session,
            actor=actor,
            action="delete",
            entity=PROCEDURE,
            entity_pk=procedure.id,
            before={"study_instance_uid": procedure.study_instance_uid},
        )
        session.delete(procedure)
        session.flush()
        if not _exists(session, RequestedProcedure.order_pk == order_pk):
            order = session.get_one(ImagingServiceRequest, order_pk)
            audit(
                session,
                actor=actor,
                action="delete",
                entity=ORDER,
                entity_pk=order_pk,
                before={"accession_number": order.accession_number},
            )
            session.delete(order)


def _exists(session: Session, condition: Any) -> bool:
    entity = condition.left.table
    return session.execute(select(entity.c.id).where(condition).limit(1)).first() is not None


# ---------------------------------------------------------------------------------------------
# The new items of one order message (HL7 intake), in a few Core statements


def create_order_items(
    session: Session,
    patient_pk: int,
    items: Sequence[WorklistItemData],
    *,
    actor: Actor,
    new_patient: PatientData | None = None,
) -> list[int]:
    """Write the new items of one order message, all of one patient, as ``create_items`` does
    but with plain Core statements: no ORM flush, no row read back after its INSERT.

    Every item's Study Instance UID must be new and appear once in ``items`` (the caller
    checks; a clash still fails with ``ConflictError``). An item's order is the patient's order
    with its Accession Number, else a new one. ``new_patient``: the patient was inserted just
    now (``insert_patient``), so it has no order to look up, and its creation is audited here.
    Every new row gets its audit row (all in one multi-row INSERT) and change event. Returns
    the new steps' primary keys.
    """
    records: list[_Created] = []
    if new_patient is not None:
        shown = {f: getattr(new_patient, f) for f in ("patient_id", *PATIENT_DEMOGRAPHICS)}
        records.append(_Created(PATIENT, patient_pk, shown))
    patient_pks = [patient_pk] * len(items)
    order_pks = _order_pks(session, items, patient_pks, records, look_up=new_patient is None)
    step_pks = _procedures_and_steps(session, items, order_pks, records)
    _audit_created(session, actor, records)
    return step_pks


def _table(model: Any) -> Any:
    """The model's Core table: statements on it skip the ORM's bulk-insert machinery."""
    return model.__table__


# Built once per table: SQLAlchemy computes a statement object's cache key once.
@functools.cache
def _plain_insert(model: Any) -> Any:
    return insert(_table(model))


@functools.cache
def _returning_insert(model: Any, keys: tuple[str, ...]) -> Any:
    """INSERT ... RETURNING the key and the ``keys`` columns (to match rows back by)."""
    table = _table(model)
    return insert(table).returning(table.c.id, *(table.c[k] for k in keys))


@functools.cache
def _default_makers(model: Any) -> tuple[tuple[str, Any, Callable[[], Any] | None], ...]:
    """(field, default, default factory) of each field a row may leave out (the models'
    factories take no argument: ``utcnow``, ``dict``)."""
    return tuple(
        (name, info.default, info.default_factory)
        for name, info in model.model_fields.items()
        if name != "id" and not info.is_required()
    )


def _defaults(model: Any) -> dict[str, Any]:
    return {
        name: factory() if factory is not None else default
        for name, default, factory in _default_makers(model)
    }
