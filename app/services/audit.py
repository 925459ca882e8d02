"""The audit trail, read side: who changed what, when, through which interface.

Rows are written by ``app.services.write.audit`` in the transaction of the change itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from app.models import AuditEvent
from app.schemas import AuditView


def view(row: AuditEvent) -> AuditView:
    detail = dict(row.detail)
    before = detail.pop("before", {})
    after = detail.pop("after", {})
    assert row.id is not None
    return AuditView(
        id=row.id,
        at=row.at,
        source=row.source,
        actor=row.actor,
        action=row.action,
        entity=row.entity,
        entity_pk=row.entity_pk,
        context=row.context,
        before=before,
        after=after,
        detail=detail,
    )


def list_events(
    session: Session,
    *,
    entity: str = "",
    entity_pk: int | None = None,
    source: str = "",
    actor: str = "",
    context: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditView]:
    """Newest first, filtered exactly on the given fields."""
    statement = select(AuditEvent)
    for column, value in (
        (AuditEvent.entity, entity),
        (AuditEvent.source, source),
        (AuditEvent.actor, actor),
        (AuditEvent.context, context),
    ):
        if value:
            statement = statement.where(column == value)
    if entity_pk is not None:
        statement = statement.where(AuditEvent.entity_pk == entity_pk)
    if since is not None:
        statement = statement.where(col(AuditEvent.at) >= since)
    if until is not None:
        statement = statement.where(col(AuditEvent.at) < until)
    statement = statement.order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)
    return [view(row) for row in session.exec(statement)]


def history(session: Session, subjects: Iterable[tuple[str, int]]) -> list[AuditView]:
    """Every event about any of ``subjects`` ((entity, pk) pairs), oldest first."""
    conditions = [
        (col(AuditEvent.entity) == entity) & (col(AuditEvent.entity_pk) == pk)
        for entity, pk in subjects
    ]
    if not conditions:
        return []
    statement = select(AuditEvent).where(or_(*conditions)).order_by(col(AuditEvent.id))
    return [view(row) for row in session.exec(statement)]


def contexts(events: Sequence[AuditView], source: str) -> list[str]:
    """The distinct message contexts (MSH-10, MPPS UID) of ``events`` from ``source``."""
    return list(dict.fromkeys(e.context for e in events if e.source == source and e.context))
