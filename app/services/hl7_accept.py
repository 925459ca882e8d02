"""Exactly-once acceptance of an inbound HL7 message.

A message is accepted when the change it asks for and the log row holding its AA commit in one
transaction. The log has a unique index on MSH-3 + MSH-4 + MSH-10 for accepted messages, so of
two copies racing on two connections only one commits; the other finds the first one's ACK.
A sender that resends after a lost ACK gets that same ACK, and nothing changes twice.

The transaction is the point of this service, so it opens it itself (from a session factory)
instead of joining the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.intake import IntakeCommand
from app.group_commit import GroupCommit
from app.services import hl7_log, intake


class DatabaseUnavailable(Exception):
    """The database cannot be reached (connection refused or lost, pool exhausted): nothing was
    applied and nothing logged; the sender must resend later."""


# Errors that mean "cannot reach the database", not "this message is wrong".
_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # QueuePool limit reached, connection timed out
    ConnectionError,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(f"database unavailable ({type(exc).__name__})") from exc


def _guarded(function: Callable[_P, _R]) -> Callable[_P, _R]:
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _reachable():
            return function(*args, **kwargs)

    call.__name__ = function.__name__
    call.__doc__ = function.__doc__
    return call


@dataclass(frozen=True)
class Accepted:
    """The change and the message (with its ACK) are committed."""

    ack: str


@dataclass(frozen=True)
class AlreadyAccepted:
    """A message with the same MSH-3, MSH-4 and MSH-10 was accepted before: the ACK it got then
    and its raw text (the caller decides whether the content is the same); nothing changed now."""

    ack: str
    raw: str = field(default="", compare=False)


@dataclass(frozen=True)
class EarlierMessage:
    """The accepted message logged under an MSH-3 + MSH-4 + MSH-10."""

    raw: str
    ack: str


@_guarded
def earlier_message(
    session_factory: SessionFactory,
    *,
    sending_application: str,
    sending_facility: str,
    control_id: str,
) -> EarlierMessage | None:
    """The raw text and ACK of an accepted message with this MSH-3, MSH-4 and MSH-10.

    Raises :class:`DatabaseUnavailable` when the database cannot be reached.
    """
    with session_scope(session_factory) as session:
        found = hl7_log.accepted_message(
            session,
            sending_application=sending_application,
            sending_facility=sending_facility,
            control_id=control_id,
        )
    return None if found is None else EarlierMessage(*found)


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


@_guarded
def accept(
    commits: GroupCommit,
    *,
    command: IntakeCommand,
    policy: intake.IntakePolicy,
    actor: Actor,
    message: hl7_log.MessageRecord,
) -> Accepted | AlreadyAccepted:
    """Apply ``command`` (audited as ``actor``) and log ``message`` (outcome AA, the ACK to
    send) in one transaction. The log row is written first (``hl7_log.claim``): a redelivered
    message is recognised by that insert, before anything is applied.

    The transaction may be shared with messages arriving meanwhile on other connections
    (``commits``, group commit); this returns once it is committed.

    Raises the service's ``DomainError`` when the command cannot be applied (nothing is
    committed). When a message with the same MSH-3/4/10 committed first meanwhile, returns its
    ACK and raw text as :class:`AlreadyAccepted`. Raises :class:`DatabaseUnavailable` when the
    database cannot be reached (nothing committed).
    """

    def claim_and_apply(session: Session) -> Accepted | AlreadyAccepted:
        if hl7_log.claim(session, message=message):
            intake.apply(session, command, policy=policy, actor=actor)
            return Accepted(message.ack)
        previous = hl7_log.accepted_message(
            session,
            sending_application=message.sending_application,
            sending_facility=message.sending_facility,
            control_id=message.control_id,
        )
        if previous is None:
            raise RuntimeError("the message log row was neither inserted nor found")
        return AlreadyAccepted(previous[1], previous[0])

    try:
        return commits.run(claim_and_apply)
    except IntegrityError:  # a race the claim cannot see (another unique key): look again
        earlier = earlier_message(
            commits.session_factory,
            sending_application=message.sending_application,
            sending_facility=message.sending_facility,
            control_id=message.control_id,
        )
        if earlier is None:
            raise
        return AlreadyAccepted(earlier.ack, earlier.raw)


@_guarded
def record_refused(session_factory: SessionFactory, *, message: hl7_log.MessageRecord) -> None:
    """Log a message answered AE or AR (not deduplicated: a resend is processed again)."""
    with session_scope(session_factory) as session:
        hl7_log.record(session, message=message)
