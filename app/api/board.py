"""``GET /api/board``: one day's steps as flat rows for the staff page."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.api.deps import SessionDep, ViewerDep
from app.schemas import BoardRow
from app.services import board

router = APIRouter(tags=["board"])


@router.get("/api/board", summary="One day's scheduled steps with order and patient")
def get_board(
    session: SessionDep,
    _viewer: ViewerDep,
    date: str = Query(pattern=r"^\d{8}$", examples=["20261201"]),
    modality: str = "",
    station: str = Query("", description="a Scheduled Station AE Title"),
    q: str = Query("", description="patient name part, or start of patient ID or accession"),
) -> list[BoardRow]:
    return board.day_board(session, day=date, modality=modality, station=station, q=q)
