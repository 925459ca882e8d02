"""The durable outbox: messages written in the same transaction as the change they report.

A delivery worker takes the due messages, sends them and marks them sent, or schedules a retry
with back-off. Order per ``ordering_key`` is kept: a message is due only when no earlier message
of its key is still pending, so an order's IN PROGRESS always reaches the RIS before its
COMPLETED, even across retries and restarts.

Payloads are plain JSON (the adapters format them):

- channel ``hl7``, kind ``mpps-status``: ``{"mpps_uid", "status", "at" (YYYYMMDDHHMMSS),
  "patient": {patient_id, issuer_of_patient_id, name, birth_date, sex},
  "order": {accession_number, placer_order_number, filler_order_number},
  "procedures": [{requested_procedure_id, study_instance_uid, sps_id, modality}],
  "discontinuation_reason": {code_value, coding_scheme, code_meaning} | null}``
- channel ``dicom``, kind ``mpps-create`` / ``mpps-set``:
  ``{"sop_instance_uid", "dataset": DICOM JSON}`` (for N-SET the modification list).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.domain.errors import ConflictError, NotFoundError
from app.models import OutboxMessage, utcnow

PENDING = "pending"
SENT = "sent"
HL7 = "hl7"
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
    return message.id


def due(session: Session, *, now: datetime | None = None, limit: int = 50) -> list[OutboxMessage]:
    """Pending messages whose time has come and that no earlier pending message of their key
    is waiting ahead of, oldest first."""
    now = now or utcnow()
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
    statement = (
        select(OutboxMessage)
        .where(OutboxMessage.state == PENDING, col(OutboxMessage.next_attempt_at) <= now)
        .where(~blocked)
        .order_by(col(OutboxMessage.id))
        .limit(limit)
    )
    return list(session.exec(statement))


def mark_sent(session: Session, *, pk: int) -> None:
    message = get_message(session, pk=pk)
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
    message = get_message(session, pk=pk)
    message.attempts += 1
    message.last_error = error[:1000]
    message.next_attempt_at = utcnow() + timedelta(
        seconds=backoff(message.attempts, minimum=minimum, maximum=maximum)
    )
    session.add(message)
    return message.next_attempt_at


def retry_now(session: Session, *, pk: int) -> OutboxMessage:
    """Make a pending message due at once (REST retry); a sent one is not sent twice."""
    message = get_message(session, pk=pk)
    if message.state != PENDING:
        raise ConflictError(f"outbox message {pk} was already sent", field="state")
    message.next_attempt_at = utcnow()
    session.add(message)
    return message


def get_message(session: Session, *, pk: int) -> OutboxMessage:
    message = session.get(OutboxMessage, pk)
    if message is None:
        raise NotFoundError(f"no outbox message {pk}")
    return message


def list_messages(
    session: Session, *, state: str = "", channel: str = "", limit: int = 100, offset: int = 0
) -> Sequence[OutboxMessage]:
    statement = select(OutboxMessage)
    if state:
        statement = statement.where(OutboxMessage.state == state)
    if channel:
        statement = statement.where(OutboxMessage.channel == channel)
    statement = statement.order_by(col(OutboxMessage.id).desc()).offset(offset).limit(limit)
    return session.exec(statement).all()
