"""Patients: identity is Patient ID + Issuer of Patient ID. Rows are written by ``write``."""

from __future__ import annotations

from itertools import islice

from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset
from app.domain.errors import ConflictError, NotFoundError
from app.domain.items import PatientData
from app.domain.matching import NameKey
from app.models import Patient
from app.schemas import PatientView
from app.services import read, write
from app.services.sql import name_key_condition, text_condition

ENTITY = write.PATIENT


def create_patient(session: Session, data: PatientData, *, actor: Actor) -> PatientView:
    """Create a new patient; ``ConflictError`` when that Patient ID + Issuer exists."""
    pk = write.insert_patient(session, data)
    if pk is None:
        raise ConflictError(
            f"patient {data.patient_id} (issuer '{data.issuer_of_patient_id}') already exists",
            field="patient_id",
        )
    return read.patient_view(write.created_patient(session, data, pk, actor=actor))


def _row(session: Session, pk: int) -> Patient:
    patient = session.get(Patient, pk)
    if patient is None:
        raise NotFoundError(f"no patient {pk}")
    return patient


def get_patient(session: Session, *, pk: int) -> PatientView:
    return read.patient_view(_row(session, pk))


def update_patient(
    session: Session,
    *,
    pk: int,
    changes: dict[str, str],
    attributes: JsonDataset | None = None,
    actor: Actor,
) -> PatientView:
    """Set the given demographic fields (an empty string clears one)."""
    patient = _row(session, pk)
    write.update_patient_row(session, patient, changes, attributes or {}, actor=actor)
    session.flush()
    return read.patient_view(patient)


def list_patients(
    session: Session,
    *,
    patient_id: str = "",
    name: str = "",
    limit: int = 100,
    offset: int = 0,
) -> list[PatientView]:
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
    return [read.patient_view(p) for p in islice(matched, offset, offset + limit)]
