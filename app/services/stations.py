"""The station table: which Scheduled Station AE Title serves a modality (and location).

HL7 ORM orders name the modality and perhaps a location, never the AE title (SPEC_DIGEST 3.4),
so the broker routes them here: the row for (modality, location) first, else the modality's
default row (empty location).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.errors import ConflictError, MissingValueError, NotFoundError, ValidationError
from app.domain.items import validate_ae_titles
from app.domain.status import AuditSource
from app.models import Station, utcnow
from app.services import audit

ENTITY = "station"


@dataclass(frozen=True)
class StationData:
    modality: str
    ae_title: str
    location: str = ""
    station_name: str = ""


def _validate(data: StationData) -> StationData:
    if not data.modality.strip():
        raise MissingValueError("modality is required", field="modality")
    if len(data.station_name) > 16:
        raise ValidationError("station_name has at most 16 characters (SH)", field="station_name")
    (title,) = validate_ae_titles([data.ae_title])
    return StationData(data.modality.strip(), title, data.location.strip(), data.station_name)


def route(session: Session, *, modality: str, location: str = "") -> Station | None:
    """The station for ``modality`` at ``location``, else the modality's default, else None."""
    for where in (location, "") if location else ("",):
        found = session.exec(
            select(Station).where(Station.modality == modality, Station.location == where)
        ).first()
        if found is not None:
            return found
    return None


def list_stations(session: Session) -> Sequence[Station]:
    return session.exec(
        select(Station).order_by(col(Station.modality), col(Station.location))
    ).all()


def get_station(session: Session, *, pk: int) -> Station:
    station = session.get(Station, pk)
    if station is None:
        raise NotFoundError(f"no station {pk}")
    return station


def _flush(session: Session, data: StationData) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(
            f"a station for modality {data.modality} at '{data.location}' already exists",
            field="location",
        ) from None


def create_station(session: Session, *, data: StationData, source: AuditSource) -> Station:
    data = _validate(data)
    station = Station(**vars(data))
    session.add(station)
    _flush(session, data)
    assert station.id is not None
    audit.record(session, source=source, action="create", entity=ENTITY, entity_pk=station.id)
    return station


def update_station(session: Session, *, pk: int, data: StationData, source: AuditSource) -> Station:
    station = get_station(session, pk=pk)
    data = _validate(data)
    for name, value in vars(data).items():
        setattr(station, name, value)
    station.updated_at = utcnow()
    session.add(station)
    _flush(session, data)
    audit.record(session, source=source, action="update", entity=ENTITY, entity_pk=pk)
    return station


def delete_station(session: Session, *, pk: int, source: AuditSource) -> None:
    session.delete(get_station(session, pk=pk))
    audit.record(session, source=source, action="delete", entity=ENTITY, entity_pk=pk)
