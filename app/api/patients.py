"""Patients as plain JSON: create, find, read and correct demographics."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep
from app.api.limits import DbId, DbOffset
from app.schemas import PatientIn, PatientUpdate, PatientView
from app.services import patients

router = APIRouter(prefix="/api/patients", tags=["patients"])

MAX_LIMIT = 1000


@router.post("", status_code=201, summary="Create a patient")
def create_patient(body: PatientIn, session: SessionDep, principal: SchedulerDep) -> PatientView:
    return patients.create_patient(session, body.to_domain(), actor=principal.actor())


@router.get("", summary="Find patients (DICOM wildcards * and ?; name case-insensitive)")
def list_patients(
    session: SessionDep,
    patient_id: str = "",
    name: str = "",
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[PatientView]:
    return patients.list_patients(
        session, patient_id=patient_id, name=name, limit=limit, offset=offset
    )


@router.get("/{pk}", summary="One patient")
def get_patient(pk: DbId, session: SessionDep) -> PatientView:
    return patients.get_patient(session, pk=pk)


@router.patch("/{pk}", summary='Change demographics; fields not sent stay, "" clears')
def update_patient(
    pk: DbId, body: PatientUpdate, session: SessionDep, principal: SchedulerDep
) -> PatientView:
    return patients.update_patient(session, pk=pk, changes=body.changes(), actor=principal.actor())
