"""Database gauges for ``GET /metrics``: one short aggregate query each, read at scrape time.

Both queries run on indexes (``ix_outbox_due`` leads with ``state``; MPPS ``status`` has its
own), so a scrape every few seconds from every broker stays cheap however large the tables get.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.models import OutboxMessage, PerformedProcedureStep
from app.schemas import OperationalGauges
from app.services.outbox import PENDING


def read(session: Session) -> OperationalGauges:
    """The outbox backlog (count, oldest) and the MPPS instances per status."""
    pending, oldest = session.exec(
        select(func.count(), func.min(col(OutboxMessage.created_at))).where(
            OutboxMessage.state == PENDING
        )
    ).one()
    by_status = session.exec(
        select(PerformedProcedureStep.status, func.count()).group_by(
            col(PerformedProcedureStep.status)
        )
    ).all()
    return OperationalGauges(
        outbox_pending=int(pending),
        outbox_oldest_created_at=oldest,
        mpps_by_status={str(status): int(count) for status, count in by_status},
    )
