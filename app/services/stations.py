"""The station table: which Scheduled Station AE Title serves a modality (and location).

HL7 ORM orders name the modality and perhaps a location, never the AE title (SPEC_DIGEST 3.4),
so the broker routes them here: the row for (modality, location) first, else the modality's
default row (empty location).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.errors import ConflictError, MissingValueError, NotFoundError, ValidationError
from app.domain.items import validate_ae_titles
from app.models import Station
from app.schemas import StationView
from app.services import write

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


Route = tuple[tuple[str, ...], str]  # the station's AE titles (one) and Station Name
# Built once: SQLAlchemy computes a statement object's cache key once.
_STATION = Station.__table__.c  # type: ignore[attr-defined]  # Core columns: no ORM execution
_ROUTES = select(
    _STATION.modality, _STATION.location, _STATION.ae_title, _STATION.station_name
).where(_STATION.modality.in_(bindparam("modalities", expanding=True)))


def routes(session: Session, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Route]:
    """``route`` for many (modality, location) pairs in one SELECT: the AE title and station
    name of each pair that has a station (a pair without one is left out)."""
    pairs = set(wanted)
    if not pairs:
        return {}
    modalities = sorted({modality for modality, _ in pairs})
    rows = session.execute(_ROUTES, {"modalities": modalities})
    table = {(modality, location): ((title,), name) for modality, location, title, name in rows}
    found: dict[tuple[str, str], Route] = {}
    for modality, location in pairs:
        for where in (location, "") if location else ("",):
            if (modality, where) in table:
                found[modality, location] = table[modality, where]
                break
    return found


def list_stations(session: Session) -> list[StationView]:
    rows = session.exec(select(Station).order_by(col(Station.modality), col(Station.location)))
    return [StationView.model_validate(row) for row in rows]


def _row(session: Session, pk: int) -> Station:
    station = session.get(Station, pk)
    if station is None:
        raise NotFoundError(f"no station {pk}")
    return station


def get_station(session: Session, *, pk: int) -> StationView:
    return StationView.model_validate(_row(session, pk))


def _flush(session: Session, data: StationData) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(
            f"a station for modality {data.modality} at '{data.location}' already exists",
            field="location",
        ) from None


def create_station(session: Session, *, data: StationData, actor: Actor) -> StationView:
    data = _validate(data)
    station = Station(**vars(data))
    session.add(station)
    _flush(session, data)
    assert station.id is not None
    write.audit(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_pk=station.id,
        after=vars(data),
    )
    return StationView.model_validate(station)


def update_station(session: Session, *, pk: int, data: StationData, actor: Actor) -> StationView:
    station = _row(session, pk)
    data = _validate(data)
    changed = write.assign(station, vars(data))
    session.add(station)
    _flush(session, data)
    write.audit_update(session, actor, ENTITY, pk, changed)
    return StationView.model_validate(station)


def delete_station(session: Session, *, pk: int, actor: Actor) -> None:
    station = _row(session, pk)
    before = {
        "modality": station.modality,
        "location": station.location,
        "ae_title": station.ae_title,
    }
    session.delete(station)
    write.audit(session, actor=actor, action="delete", entity=ENTITY, entity_pk=pk, before=before)
