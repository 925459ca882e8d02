"""Patients as plain JSON: create, find, read and correct demographics."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep
from app.domain.status import AuditSource
from app.models import Patient
from app.schemas import PatientIn, PatientOut, PatientUpdate
from app.services import patients

router = APIRouter(prefix="/api/patients", tags=["patients"])

MAX_LIMIT = 1000


def _out(patient: Patient) -> PatientOut:
    # Converted inside the request's session, before it commits and closes.
    return PatientOut.model_validate(patient)


@router.post("", status_code=201, summary="Create a patient")
def create_patient(body: PatientIn, session: SessionDep, _p: SchedulerDep) -> PatientOut:
    return _out(patients.create_patient(session, body.to_domain(), source=AuditSource.REST))


@router.get("", summary="Find patients (DICOM wildcards * and ?; name case-insensitive)")
def list_patients(
    session: SessionDep,
    patient_id: str = "",
    name: str = "",
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0),
) -> list[PatientOut]:
    found = patients.list_patients(
        session, patient_id=patient_id, name=name, limit=limit, offset=offset
    )
    return [_out(p) for p in found]


@router.get("/{pk}", summary="One patient")
def get_patient(pk: int, session: SessionDep) -> PatientOut:
    return _out(patients.get_patient(session, pk=pk))


@router.patch("/{pk}", summary='Change demographics; fields not sent stay, "" clears')
def update_patient(
    pk: int, body: PatientUpdate, session: SessionDep, _p: SchedulerDep
) -> PatientOut:
    patient = patients.update_patient(
        session, pk=pk, changes=body.changes(), source=AuditSource.REST
    )
    session.flush()
    return _out(patient)
