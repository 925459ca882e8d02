"""Known remote AEs: the one place the broker looks up where to send to an AE title.

C-MOVE destinations (service ``store``), storage commitment peers (``commit``) and MPPS
forwarding (``mpps``) come from the ``remote_ae`` table.
"""

from __future__ import annotations

from enum import StrEnum

from sqlmodel import Session, col, select

from app.models import RemoteAe
from app.schemas import RemoteAeView


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
