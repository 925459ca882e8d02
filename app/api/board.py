"""``GET /api/board``: one day's steps as flat rows for the staff page."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from app.api.deps import SessionDep, ViewerDep
from app.domain.status import SpsStatus
from app.services import board

router = APIRouter(tags=["board"])


class BoardRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step_id: int
    order_id: int
    patient_pk: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    accession_number: str
    requested_procedure_id: str
    procedure_description: str
    study_instance_uid: str
    sps_id: str
    station_ae_titles: list[str]
    station_name: str
    modality: str
    start_date: str
    start_time: str
    status: SpsStatus
    description: str
    updated_at: datetime


@router.get("/api/board", summary="One day's scheduled steps with order and patient")
def get_board(
    session: SessionDep,
    _viewer: ViewerDep,
    date: str = Query(pattern=r"^\d{8}$", examples=["20261201"]),
    modality: str = "",
    station: str = Query("", description="a Scheduled Station AE Title"),
    q: str = Query("", description="patient name part, or start of patient ID or accession"),
) -> list[BoardRowOut]:
    rows = board.day_board(session, day=date, modality=modality, station=station, q=q)
    return [BoardRowOut.model_validate(row) for row in rows]
