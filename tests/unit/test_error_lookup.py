"""One lookup for every error table: the nearest mapped class wins, else the default."""

from __future__ import annotations

from app.domain.errors import (
    ConflictError,
    DomainError,
    InvalidTransitionError,
    NotFoundError,
    ValidationError,
    lookup,
)
from app.domain.mpps import MppsClosedError

TABLE: dict[type[DomainError], str] = {
    ConflictError: "conflict",
    InvalidTransitionError: "transition",
    ValidationError: "invalid",
}


def test_nearest_class_in_the_hierarchy_wins() -> None:
    assert lookup(TABLE, InvalidTransitionError("x"), "default") == "transition"
    assert lookup(TABLE, ConflictError("x"), "default") == "conflict"
    # MppsClosedError is an InvalidTransitionError: the table need not name it.
    assert lookup(TABLE, MppsClosedError("x"), "default") == "transition"


def test_unmapped_error_gets_the_default() -> None:
    assert lookup(TABLE, NotFoundError("x"), "default") == "default"
    assert lookup(TABLE, DomainError("x"), "default") == "default"
