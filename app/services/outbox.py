"""The durable outbox: messages written in the same transaction as the change they report.

A delivery worker claims a due message (``claim``: several broker processes may run a
worker on one database, and only one of them sends it), sends it and marks it sent, or
schedules a retry with back-off.

Order per ``ordering_key`` is kept: a message is due only when no earlier message of its key
is still pending, so an order's IN PROGRESS always reaches the RIS before its COMPLETED, even
across retries and restarts.

Payloads are plain JSON (the adapters format them):

- channel ``hl7``, kind ``mpps-status`` (``app.domain.reports.StatusReport.to_payload``):
  ``{"mpps_uid", "status", "at" (YYYYMMDDHHMMSS),
  "patient": {patient_id, issuer_of_patient_id, name, birth_date, sex},
  "order": {accession_number, placer_order_number, filler_order_number},
  "procedures": [{requested_procedure_id, study_instance_uid, sps_id, modality}],
  "discontinuation_reason": {code_value, coding_scheme, code_meaning} | null}``
- channel ``dicom``, kind ``mpps-create`` / ``mpps-set``:
  ``{"sop_instance_uid", "dataset": DICOM JSON}`` (for N-SET the modification list).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, insert, select, update

from app.domain.errors import ConflictError, NotFoundError
from app.events import ChangeEvent, note
from app.models import OutboxMessage, utcnow
from app.schemas import OutboxSummary, OutboxView

PENDING = "pending"
SENT = "sent"
HL7 = "hl7"
ENTITY = "outbox"  # change events about outbox rows wake the delivery worker
DICOM = "dicom"


def enqueue(
    session: Session,
    *,
    channel: str,
    destination: str,
    ordering_key: str,
    kind: str,
    payload: dict[str, Any],
) -> int:
    message = OutboxMessage(
        channel=channel,
        destination=destination,
        ordering_key=ordering_key,
        kind=kind,
        payload=payload,
    )
    session.add(message)
    session.flush()
    assert message.id is not None
    note(session, ChangeEvent(ENTITY, message.id, "queued"))
    return message.id


_TABLE = OutboxMessage.__table__  # type: ignore[attr-defined]
# Built once, on the table: a Core INSERT, ids back in the order of the rows.
_INSERT_MANY = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


@dataclass(frozen=True)
class Outgoing:
    """One message for ``enqueue_many``: ``enqueue``'s arguments."""

    channel: str
    destination: str
    ordering_key: str
    kind: str
    payload: dict[str, Any]


def enqueue_many(session: Session, messages: Sequence[Outgoing]) -> list[int]:
    """``enqueue`` for several messages in one Core INSERT (no ORM flush): ids in the order
    given, so messages of one ordering key are delivered in that order."""
    if not messages:
        return []
    now = utcnow()
    rows = [
        {
            "created_at": now,
            "channel": m.channel,
            "destination": m.destination,
            "ordering_key": m.ordering_key,
            "kind": m.kind,
            "payload": m.payload,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "sent_at": None,
        }
        for m in messages
    ]
    ids = [int(pk) for pk in session.execute(_INSERT_MANY, rows).scalars()]
    for pk in ids:
        note(session, ChangeEvent(ENTITY, pk, "queued"))
    return ids


def due(session: Session, *, now: datetime | None = None, limit: int = 50) -> list[OutboxMessage]:
    """Pending messages whose time has come and that no earlier pending message of their key
    is waiting ahead of, oldest first."""
    params = {"now": now or utcnow(), "limit": limit}
    return list(session.exec(_due_statement(), params=params))


@functools.cache
def _due_statement() -> Any:
    """Built once: every worker asks twice a second, and building the aliased statement
    again each time cost more than running it."""
    earlier = aliased(OutboxMessage)
    blocked = (
        select(earlier.id)
        .where(
            earlier.ordering_key == OutboxMessage.ordering_key,
            earlier.state == PENDING,
            col(earlier.id) < OutboxMessage.id,
        )
        .exists()
    )
    return (
        select(OutboxMessage)
        .where(
            OutboxMessage.state == PENDING, col(OutboxMessage.next_attempt_at) <= bindparam("now")
        )
        .where(~blocked)
        .order_by(col(OutboxMessage.id))
        .limit(bindparam("limit"))
    )


CLAIM_LEASE_SECONDS = 120.0  # longer than any sender's timeout


def claim(session: Session, *, pk: int, lease: float = CLAIM_LEASE_SECONDS) -> bool:
    """Take a due message for sending: True for exactly one of several racing workers.

    One conditional UPDATE moves ``next_attempt_at`` a lease ahead, so the message is no longer
    due for anyone else (and later messages of its key stay blocked behind it). If the worker
    dies while sending, the lease expires and another worker tries again (at-least-once).
    """
    now = utcnow()
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == pk,
            col(OutboxMessage.state) == PENDING,
            col(OutboxMessage.next_attempt_at) <= now,
        )
        .values(next_attempt_at=now + timedelta(seconds=lease))
    )
    return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]


def mark_sent(session: Session, *, pk: int) -> None:
    message = _message(session, pk)
    message.state = SENT
    message.sent_at = utcnow()
    message.attempts += 1
    message.last_error = ""
    session.add(message)


def backoff(attempts: int, *, minimum: float, maximum: float) -> float:
    """Seconds to wait after ``attempts`` failed tries: doubling from ``minimum``, capped."""
    return float(min(maximum, minimum * 2 ** max(0, attempts - 1)))


def mark_failed(
    session: Session, *, pk: int, error: str, minimum: float, maximum: float
) -> datetime:
    """Record a failed try and schedule the next; returns when."""
    message = _message(session, pk)
    message.attempts += 1
    message.last_error = error[:1000]
    message.next_attempt_at = utcnow() + timedelta(
        seconds=backoff(message.attempts, minimum=minimum, maximum=maximum)
    )
    session.add(message)
    return message.next_attempt_at


def retry_now(session: Session, *, pk: int) -> OutboxSummary:
    """Make a pending message due at once (REST retry); a sent one is not sent twice."""
    message = _message(session, pk)
    if message.state != PENDING:
        raise ConflictError(f"outbox message {pk} was already sent", field="state")
    message.next_attempt_at = utcnow()
    session.add(message)
    note(session, ChangeEvent(ENTITY, pk, "retry"))
    return OutboxSummary.model_validate(message)


def _message(session: Session, pk: int) -> OutboxMessage:
    message = session.get(OutboxMessage, pk)
    if message is None:
        raise NotFoundError(f"no outbox message {pk}")
    return message


def get_message(session: Session, *, pk: int) -> OutboxView:
    return OutboxView.model_validate(_message(session, pk))


def list_messages(
    session: Session, *, state: str = "", channel: str = "", limit: int = 100, offset: int = 0
) -> list[OutboxSummary]:
    statement = select(OutboxMessage)
    if state:
        statement = statement.where(OutboxMessage.state == state)
    if channel:
        statement = statement.where(OutboxMessage.channel == channel)
    statement = statement.order_by(col(OutboxMessage.id).desc()).offset(offset).limit(limit)
    return [OutboxSummary.model_validate(m) for m in session.exec(statement)]
