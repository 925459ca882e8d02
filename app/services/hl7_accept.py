"""Exactly-once acceptance of an inbound HL7 message.

A message is accepted when the change it asks for and the log row holding its AA commit in one
transaction. The log has a unique index on MSH-3 + MSH-4 + MSH-10 for accepted messages, so of
two copies racing on two connections only one commits; the other finds the first one's ACK.
A sender that resends after a lost ACK gets that same ACK, and nothing changes twice.

The transaction is the point of this service, so it opens it itself (from a session factory)
instead of joining the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.intake import IntakeCommand
from app.services import hl7_log, intake


@dataclass(frozen=True)
class Accepted:
    """The change and the message (with its ACK) are committed."""

    ack: str


@dataclass(frozen=True)
class AlreadyAccepted:
    """The same message was accepted before: the ACK it got then; nothing changed now."""

    ack: str


def earlier_ack(
    session_factory: SessionFactory,
    *,
    sending_application: str,
    sending_facility: str,
    control_id: str,
) -> str | None:
    """The ACK an accepted message with this MSH-3, MSH-4 and MSH-10 got, if there is one."""
    with session_scope(session_factory) as session:
        return hl7_log.accepted_ack(
            session,
            sending_application=sending_application,
            sending_facility=sending_facility,
            control_id=control_id,
        )


def accept(
    session_factory: SessionFactory,
    *,
    command: IntakeCommand,
    policy: intake.IntakePolicy,
    actor: Actor,
    message: hl7_log.MessageRecord,
) -> Accepted | AlreadyAccepted:
    """Apply ``command`` (audited as ``actor``) and log ``message`` (outcome AA, the ACK to
    send) in one transaction.

    Raises the service's ``DomainError`` when the command cannot be applied (nothing is
    committed). When a copy of the message committed first meanwhile, returns its ACK as
    :class:`AlreadyAccepted`.
    """
    try:
        with session_scope(session_factory) as session:
            intake.apply(session, command, policy=policy, actor=actor)
            hl7_log.record(session, message=message)
    except IntegrityError:
        previous = earlier_ack(
            session_factory,
            sending_application=message.sending_application,
            sending_facility=message.sending_facility,
            control_id=message.control_id,
        )
        if previous is None:
            raise
        return AlreadyAccepted(previous)
    return Accepted(message.ack)


def record_refused(session_factory: SessionFactory, *, message: hl7_log.MessageRecord) -> None:
    """Log a message answered AE or AR (not deduplicated: a resend is processed again)."""
    with session_scope(session_factory) as session:
        hl7_log.record(session, message=message)
