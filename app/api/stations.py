"""``/api/stations``: the station table that routes HL7 orders to Scheduled Station AE Titles."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import AdminDep, SessionDep
from app.domain.status import AuditSource
from app.services import stations

router = APIRouter(prefix="/api/stations", tags=["stations"])


class StationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(min_length=1, max_length=16, examples=["CT"])
    ae_title: str = Field(min_length=1, max_length=16, examples=["CT01"])
    location: str = Field(default="", max_length=64, description="empty: the modality's default")
    station_name: str = Field(default="", max_length=16)

    def to_domain(self) -> stations.StationData:
        return stations.StationData(self.modality, self.ae_title, self.location, self.station_name)


class StationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    modality: str
    ae_title: str
    location: str
    station_name: str
    updated_at: datetime


@router.get("", summary="All stations")
def list_stations(session: SessionDep) -> list[StationOut]:
    return [StationOut.model_validate(s) for s in stations.list_stations(session)]


@router.post("", status_code=201, summary="Add a station route")
def create_station(body: StationIn, session: SessionDep, _p: AdminDep) -> StationOut:
    station = stations.create_station(session, data=body.to_domain(), source=AuditSource.REST)
    return StationOut.model_validate(station)


@router.get("/{pk}", summary="One station")
def get_station(pk: int, session: SessionDep) -> StationOut:
    return StationOut.model_validate(stations.get_station(session, pk=pk))


@router.put("/{pk}", summary="Replace a station route")
def update_station(pk: int, body: StationIn, session: SessionDep, _p: AdminDep) -> StationOut:
    station = stations.update_station(
        session, pk=pk, data=body.to_domain(), source=AuditSource.REST
    )
    return StationOut.model_validate(station)


@router.delete("/{pk}", status_code=204, summary="Remove a station route")
def delete_station(pk: int, session: SessionDep, _p: AdminDep) -> Response:
    stations.delete_station(session, pk=pk, source=AuditSource.REST)
    return Response(status_code=204)
