"""Patients: identity is Patient ID + Issuer of Patient ID."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from app.domain.dicom_json import JsonDataset
from app.domain.errors import ConflictError, NotFoundError
from app.domain.items import PatientData
from app.domain.matching import NameKey, person_name_key
from app.domain.status import AuditSource
from app.models import Patient, utcnow
from app.services import audit
from app.services.sql import name_key_condition, text_condition

ENTITY = "patient"
_DEMOGRAPHICS = ("name", "birth_date", "sex")


def _insert(session: Session, data: PatientData) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: the new primary key, or ``None`` when the identity exists.

    Race-safe on SQLite and PostgreSQL alike: of two transactions inserting one identity at once,
    exactly one gets a key and neither fails.
    """
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Patient).values(
        patient_id=data.patient_id,
        issuer_of_patient_id=data.issuer_of_patient_id,
        name=data.name,
        name_key=person_name_key(data.name),
        birth_date=data.birth_date,
        sex=data.sex,
        attributes=data.attributes,
        created_at=now,
        updated_at=now,
    )
    statement = insert.on_conflict_do_nothing(
        index_elements=["patient_id", "issuer_of_patient_id"]
    ).returning(col(Patient.id))
    pk: int | None = session.execute(statement).scalar_one_or_none()
    return pk


def _by_identity(session: Session, data: PatientData) -> Patient:
    return session.exec(
        select(Patient).where(
            Patient.patient_id == data.patient_id,
            Patient.issuer_of_patient_id == data.issuer_of_patient_id,
        )
    ).one()


def create_patient(session: Session, data: PatientData, *, source: AuditSource) -> Patient:
    """Create a new patient; ``ConflictError`` when that Patient ID + Issuer exists."""
    pk = _insert(session, data)
    if pk is None:
        raise ConflictError(
            f"patient {data.patient_id} (issuer '{data.issuer_of_patient_id}') already exists",
            field="patient_id",
        )
    audit.record(session, source=source, action="create", entity=ENTITY, entity_pk=pk)
    return _by_identity(session, data)


def ensure_patient(session: Session, data: PatientData, *, source: AuditSource) -> Patient:
    """Find or create the patient and merge in what ``data`` knows.

    Race-safe (see ``_insert``): concurrent messages about one new patient create one row.
    Empty values in ``data`` do not erase known ones; use ``update_patient`` to clear a field.
    """
    inserted_pk = _insert(session, data)
    patient = _by_identity(session, data)
    if inserted_pk is not None:
        audit.record(session, source=source, action="create", entity=ENTITY, entity_pk=inserted_pk)
        return patient
    changes = {f: getattr(data, f) for f in _DEMOGRAPHICS if getattr(data, f)}
    _apply(session, patient, changes, data.attributes, source=source)
    return patient


def _apply(
    session: Session,
    patient: Patient,
    changes: dict[str, str],
    attributes: JsonDataset,
    *,
    source: AuditSource,
) -> None:
    changed = [f for f, v in changes.items() if getattr(patient, f) != v]
    merged = {**patient.attributes, **attributes}
    if merged != patient.attributes:
        changed.append("attributes")
        patient.attributes = merged
    if not changed:
        return
    for name, value in changes.items():
        setattr(patient, name, value)
    patient.name_key = person_name_key(patient.name)
    patient.updated_at = utcnow()
    session.add(patient)
    assert patient.id is not None
    audit.record(
        session,
        source=source,
        action="update",
        entity=ENTITY,
        entity_pk=patient.id,
        detail={"fields": sorted(changed)},
    )


def get_patient(session: Session, *, pk: int) -> Patient:
    patient = session.get(Patient, pk)
    if patient is None:
        raise NotFoundError(f"no patient {pk}")
    return patient


def update_patient(
    session: Session,
    *,
    pk: int,
    changes: dict[str, str],
    attributes: JsonDataset | None = None,
    source: AuditSource,
) -> Patient:
    """Set the given demographic fields (an empty string clears one)."""
    patient = get_patient(session, pk=pk)
    _apply(session, patient, changes, attributes or {}, source=source)
    return patient


def list_patients(
    session: Session,
    *,
    patient_id: str = "",
    name: str = "",
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Patient]:
    """Patients filtered by ID and name (DICOM wildcards, name case-insensitive)."""
    name_key = NameKey.parse(name, case_insensitive=True)
    statement = select(Patient).order_by(col(Patient.id))
    for condition in (
        text_condition(col(Patient.patient_id), patient_id),
        name_key_condition(col(Patient.name_key), name_key),
    ):
        if condition is not None:
            statement = statement.where(condition)
    matched = (p for p in session.exec(statement) if name_key is None or name_key.matches(p.name))
    return list(islice(matched, offset, offset + limit))
