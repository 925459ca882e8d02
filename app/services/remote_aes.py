"""Known remote AEs: the one place the broker looks up where to send to an AE title.

C-MOVE destinations (service ``store``), storage commitment peers (``commit``) and MPPS
forwarding (``mpps``) come from the ``remote_ae`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.errors import ConflictError, NotFoundError, ValidationError
from app.models import RemoteAe
from app.schemas import RemoteAeView
from app.services import write


class RemoteService(StrEnum):
    """What the broker may do with a known remote AE."""

    STORE = "store"  # C-MOVE destination: the broker sends it C-STOREs
    COMMIT = "commit"  # storage commitment results (N-EVENT-REPORT)
    MPPS = "mpps"  # MPPS forwarding


def list_remote_aes(session: Session) -> list[RemoteAeView]:
    rows = session.exec(select(RemoteAe).order_by(col(RemoteAe.ae_title)))
    return [RemoteAeView.model_validate(row) for row in rows]


def lookup(session: Session, ae_title: str, service: RemoteService) -> RemoteAeView | None:
    """The remote AE called ``ae_title`` if it is known and allowed ``service``, else None."""
    row = session.exec(select(RemoteAe).where(RemoteAe.ae_title == ae_title.strip())).first()
    if row is None or service.value not in row.services:
        return None
    return RemoteAeView.model_validate(row)


# ---------------------------------------------------------------------------------------------
# Administration (REST /api/remote-aes) and seeding from BROKER_REMOTE_AES

ENTITY = "remote_ae"
_HOST_MAX = 255


@dataclass(frozen=True)
class RemoteAeData:
    ae_title: str
    host: str
    port: int
    tls: bool = False
    services: tuple[str, ...] = ()
    description: str = ""


def _check_title(value: str) -> str:
    """PS3.5 6.2: AE is 1 to 16 characters of the default repertoire, no backslash."""
    title = value.strip()
    if not title or len(title) > 16:
        raise ValidationError("ae_title has 1 to 16 characters", field="ae_title")
    if "\\" in title or not (title.isascii() and title.isprintable()):
        raise ValidationError("ae_title is printable ASCII without backslash", field="ae_title")
    return title


def _validate(data: RemoteAeData) -> RemoteAeData:
    title = _check_title(data.ae_title)
    host = data.host.strip()
    if (
        not host
        or len(host) > _HOST_MAX
        or not (host.isascii() and host.isprintable())
        or any(c.isspace() for c in host)
    ):
        raise ValidationError("host is a host name or IP address", field="host")
    if not 0 < data.port < 65536:
        raise ValidationError("port is 1 to 65535", field="port")
    known = {s.value for s in RemoteService}
    services = tuple(dict.fromkeys(s.strip().lower() for s in data.services))
    bad = [s for s in services if s not in known]
    if bad:
        raise ValidationError(
            f"services are {', '.join(sorted(known))}; got {', '.join(bad)}", field="services"
        )
    if len(data.description) > 128:
        raise ValidationError("description has at most 128 characters", field="description")
    return RemoteAeData(title, host, data.port, data.tls, services, data.description)


def _values(data: RemoteAeData) -> dict[str, Any]:
    values = asdict(data)
    values["services"] = list(data.services)
    return values


def _row(session: Session, pk: int) -> RemoteAe:
    row = session.get(RemoteAe, pk)
    if row is None:
        raise NotFoundError(f"no remote AE {pk}")
    return row


def _flush(session: Session, title: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"remote AE {title} exists", field="ae_title") from None


def get_remote_ae(session: Session, *, pk: int) -> RemoteAeView:
    return RemoteAeView.model_validate(_row(session, pk))


def create_remote_ae(session: Session, *, data: RemoteAeData, actor: Actor) -> RemoteAeView:
    data = _validate(data)
    row = RemoteAe(**_values(data))
    session.add(row)
    _flush(session, data.ae_title)
    assert row.id is not None
    write.audit(
        session, actor=actor, action="create", entity=ENTITY, entity_pk=row.id, after=_values(data)
    )
    return RemoteAeView.model_validate(row)


def update_remote_ae(
    session: Session, *, pk: int, data: RemoteAeData, actor: Actor
) -> RemoteAeView:
    row = _row(session, pk)
    data = _validate(data)
    changed = write.assign(row, _values(data))
    session.add(row)
    _flush(session, data.ae_title)
    write.audit_update(session, actor, ENTITY, pk, changed)
    return RemoteAeView.model_validate(row)


def delete_remote_ae(session: Session, *, pk: int, actor: Actor) -> None:
    row = _row(session, pk)
    before = {"ae_title": row.ae_title, "host": row.host, "port": row.port}
    session.delete(row)
    write.audit(session, actor=actor, action="delete", entity=ENTITY, entity_pk=pk, before=before)


def seed(session: Session, entries: Sequence[RemoteAeData], *, actor: Actor) -> int:
    """Upsert the configured remote AEs by AE title (idempotent); how many rows changed."""
    changed_rows = 0
    for entry in entries:
        data = _validate(entry)
        row = session.exec(select(RemoteAe).where(RemoteAe.ae_title == data.ae_title)).first()
        if row is None:
            create_remote_ae(session, data=data, actor=actor)
            changed_rows += 1
            continue
        assert row.id is not None
        changed = write.assign(row, _values(data))
        if changed:
            session.add(row)
            write.audit_update(session, actor, ENTITY, row.id, changed)
            changed_rows += 1
    return changed_rows


_AES = RemoteAe.__table__.c  # type: ignore[attr-defined]
# Built once: every MPPS message asks (a Core select of four columns, no ORM objects).
_DESTINATIONS = sa_select(_AES.ae_title, _AES.host, _AES.port, _AES.services).order_by(
    _AES.ae_title
)


def mpps_destinations(session: Session) -> tuple[str, ...]:
    """``AE@host:port`` of every remote AE allowed the ``mpps`` service (MPPS forwarding); the
    forwarder looks the AE up again to know whether it wants TLS."""
    rows = session.execute(_DESTINATIONS)
    return tuple(
        f"{title}@{host}:{port}"
        for title, host, port, services in rows
        if RemoteService.MPPS.value in services
    )
