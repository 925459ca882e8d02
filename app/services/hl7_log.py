"""The inbound HL7 message log: raw message, outcome, ACK; and exactly-once redelivery.

An accepted message (AA) is recorded in the same transaction as the change it caused, under a
unique index on MSH-3 + MSH-4 + MSH-10: a redelivered copy finds it and gets the very same ACK,
and two copies racing each other cannot both commit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, delete, select

from app.domain.errors import NotFoundError
from app.models import Hl7Message, utcnow
from app.schemas import Hl7MessageSummary, Hl7MessageView

ACCEPTED = "AA"


@dataclass(frozen=True)
class MessageRecord:
    """What the log keeps of one message (plain data from the adapter)."""

    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    outcome: str
    raw: str
    ack: str
    error: str = ""


def accepted_ack(
    session: Session, *, sending_application: str, sending_facility: str, control_id: str
) -> str | None:
    """The ACK already sent for this accepted message, if it was accepted before."""
    return session.exec(
        select(Hl7Message.ack).where(
            Hl7Message.sending_application == sending_application,
            Hl7Message.sending_facility == sending_facility,
            Hl7Message.control_id == control_id,
            Hl7Message.outcome == ACCEPTED,
        )
    ).first()


def accepted_message(
    session: Session, *, sending_application: str, sending_facility: str, control_id: str
) -> tuple[str, str] | None:
    """The raw text and the ACK of the accepted message with this MSH-3, MSH-4 and MSH-10."""
    row = session.exec(
        select(Hl7Message.raw, Hl7Message.ack).where(
            Hl7Message.sending_application == sending_application,
            Hl7Message.sending_facility == sending_facility,
            Hl7Message.control_id == control_id,
            Hl7Message.outcome == ACCEPTED,
        )
    ).first()
    return None if row is None else (row[0], row[1])


def claim(session: Session, *, message: MessageRecord) -> bool:
    """Log an accepted message first thing in its transaction, unless its MSH-3/4/10 is
    already accepted: ``INSERT ... ON CONFLICT DO NOTHING`` on the partial unique index, so
    the redelivery check and the log row are one statement. ``False``: a copy was accepted
    (or is being accepted on another connection, which this statement waits for)."""
    statement = _claim_statement(session.get_bind().dialect.name)
    values = {**vars(message), "received_at": utcnow()}
    return session.execute(statement, values).scalar_one_or_none() is not None


@functools.cache
def _claim_statement(dialect: str) -> Any:
    """Built once per dialect, values bound at execution (a Core statement: no ORM machinery,
    and SQLAlchemy's cache key of a statement object is computed once)."""
    table = Hl7Message.__table__  # type: ignore[attr-defined]
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return insert.on_conflict_do_nothing(
        index_elements=["sending_application", "sending_facility", "control_id"],
        index_where=text(f"outcome = '{ACCEPTED}'"),
    ).returning(table.c.id)


# Longest value each column takes; PostgreSQL refuses longer ones (SQLite stores anything).
KEY_LENGTHS: dict[str, int] = {
    column.name: column.type.length
    for column in Hl7Message.__table__.columns  # type: ignore[attr-defined]
    if getattr(column.type, "length", None)
}
_NUL = "\x00"
NUL_STAND_IN = "\ufffd"  # PostgreSQL text cannot hold NUL: the log shows the replacement char


def storable(message: MessageRecord) -> MessageRecord:
    """The record as every database can keep it: NUL characters replaced (PostgreSQL text
    cannot hold them) and values cut to their column's length.

    Only a refused message can need this: the adapter refuses a key (MSH-3, MSH-4, MSH-10)
    longer than its column, so an accepted message is always logged as it came.
    """
    values = {name: value.replace(_NUL, NUL_STAND_IN) for name, value in vars(message).items()}
    for name, length in KEY_LENGTHS.items():
        if name in values:
            values[name] = values[name][:length]
    return MessageRecord(**values)


def record(session: Session, *, message: MessageRecord) -> int:
    row = Hl7Message(**vars(storable(message)))
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def list_messages(
    session: Session,
    *,
    control_id: str = "",
    sending_application: str = "",
    message_type: str = "",
    outcome: str = "",
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Hl7MessageSummary]:
    """Newest first, filtered exactly on the given fields."""
    statement = select(Hl7Message)
    for column, value in (
        (Hl7Message.control_id, control_id),
        (Hl7Message.sending_application, sending_application),
        (Hl7Message.message_type, message_type),
        (Hl7Message.outcome, outcome),
    ):
        if value:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(col(Hl7Message.received_at) >= since)
    statement = statement.order_by(col(Hl7Message.id).desc()).offset(offset).limit(limit)
    return [Hl7MessageSummary.model_validate(m) for m in session.exec(statement)]


def get_message(session: Session, *, pk: int) -> Hl7MessageView:
    message = session.get(Hl7Message, pk)
    if message is None:
        raise NotFoundError(f"no HL7 message {pk}")
    return Hl7MessageView.model_validate(message)


def purge(session: Session, *, retention_days: int, now: datetime | None = None) -> int:
    """Delete messages older than the retention; returns how many went."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    result = session.execute(delete(Hl7Message).where(col(Hl7Message.received_at) < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def sent_by(session: Session, senders: Sequence[tuple[str, str]]) -> list[Hl7MessageSummary]:
    """The logged messages named by (MSH-3 sending application, MSH-10 control ID) pairs."""
    if not senders:
        return []
    statement = (
        select(Hl7Message)
        .where(
            or_(
                *(
                    (col(Hl7Message.sending_application) == app)
                    & (col(Hl7Message.control_id) == control)
                    for app, control in senders
                )
            )
        )
        .order_by(col(Hl7Message.id))
    )
    return [Hl7MessageSummary.model_validate(m) for m in session.exec(statement)]
