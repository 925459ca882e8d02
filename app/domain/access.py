"""Who may do what: roles, the principal a request runs as, and the access errors.

Roles are ordered: ``viewer`` reads, ``scheduler`` also changes patients, orders and steps,
``admin`` also manages stations, the outbox, users and API tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from app.domain.actor import Actor
from app.domain.errors import DomainError
from app.domain.status import AuditSource


class Role(StrEnum):
    VIEWER = "viewer"
    SCHEDULER = "scheduler"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def allows(self, required: Role) -> bool:
        """Whether this role may do what ``required`` may (roles include the ones below)."""
        return self.rank >= Role(required).rank


_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.SCHEDULER, Role.ADMIN)

PrincipalKind = Literal["user", "token"]


@dataclass(frozen=True)
class Principal:
    """The signed-in user (session cookie) or the API token a request runs as."""

    name: str
    role: Role
    kind: PrincipalKind
    user_pk: int | None = None
    csrf_token: str | None = None

    def allows(self, required: Role) -> bool:
        return self.role.allows(required)

    def actor(self) -> Actor:
        """The audit trail's actor: ``WEB:name`` for a user, ``REST:token:name`` for a token."""
        if self.kind == "user":
            return Actor(AuditSource.WEB, self.name)
        return Actor(AuditSource.REST, f"token:{self.name}")


class AuthError(DomainError):
    """Credentials missing, wrong, expired or revoked (HTTP 401)."""


class ForbiddenError(DomainError):
    """Authenticated, but the role or a one-time code does not allow it (HTTP 403)."""


class RateLimitedError(DomainError):
    """Too many failed attempts; try again after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
