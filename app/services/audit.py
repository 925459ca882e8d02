"""The audit trail: one row for every change, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from app.domain.status import AuditSource
from app.models import AuditEvent


def record(
    session: Session,
    *,
    source: AuditSource,
    action: str,
    entity: str,
    entity_pk: int,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            source=source.value,
            action=action,
            entity=entity,
            entity_pk=entity_pk,
            detail=detail or {},
        )
    )
