"""``/api/stations``: the station table that routes HL7 orders to Scheduled Station AE Titles."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import AdminDep, SessionDep
from app.api.limits import DbId
from app.schemas import StationIn, StationView
from app.services import stations

router = APIRouter(prefix="/api/stations", tags=["stations"])


def _data(body: StationIn) -> stations.StationData:
    return stations.StationData(body.modality, body.ae_title, body.location, body.station_name)


@router.get("", summary="All stations")
def list_stations(session: SessionDep) -> list[StationView]:
    return stations.list_stations(session)


@router.post("", status_code=201, summary="Add a station route")
def create_station(body: StationIn, session: SessionDep, principal: AdminDep) -> StationView:
    return stations.create_station(session, data=_data(body), actor=principal.actor())


@router.get("/{pk}", summary="One station")
def get_station(pk: DbId, session: SessionDep) -> StationView:
    return stations.get_station(session, pk=pk)


@router.put("/{pk}", summary="Replace a station route")
def update_station(
    pk: DbId, body: StationIn, session: SessionDep, principal: AdminDep
) -> StationView:
    return stations.update_station(session, pk=pk, data=_data(body), actor=principal.actor())


@router.delete("/{pk}", status_code=204, summary="Remove a station route")
def delete_station(pk: DbId, session: SessionDep, principal: AdminDep) -> Response:
    stations.delete_station(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)
