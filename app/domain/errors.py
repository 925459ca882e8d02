"""Domain errors. Each adapter maps these to its protocol through one explicit table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def lookup(table: Mapping[type[E], T], error: E, default: T) -> T:
    """The entry of the nearest class of ``error`` in ``table`` (walks the MRO), else ``default``.

    Every adapter maps errors to its protocol with this one helper, so a subclass of a mapped
    error is answered like its parent unless the table names it.
    """
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return default


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # the attribute keyword or field at fault, when there is one


class InvalidQueryError(DomainError):
    """A matching key value that cannot be interpreted (bad date, bad range...)."""


class ValidationError(DomainError):
    """Input that breaks a rule of the data model (missing Type 1 value, bad VR format...)."""


class MissingValueError(ValidationError):
    """A required value is absent or empty (a Type 1 attribute, a required field)."""


class UnknownCodeError(ValidationError):
    """A coded value that is not in its table (e.g. an order control the broker is not
    configured for)."""


class NotFoundError(DomainError):
    """The referenced entity does not exist."""


class ConflictError(DomainError):
    """The change collides with existing data (duplicate key, wrong state)."""


class InvalidTransitionError(ConflictError):
    """A status change the step's current state does not allow."""
