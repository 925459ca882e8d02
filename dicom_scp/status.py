"""DIMSE statuses and the one table from domain errors to them."""

from __future__ import annotations

from enum import IntEnum

from pydicom.dataset import Dataset

from app.domain.errors import (
    ConflictError,
    DomainError,
    InvalidQueryError,
    NotFoundError,
    ValidationError,
)

ERROR_COMMENT_MAX = 64  # Error Comment (0000,0902) is LO


class DimseStatus(IntEnum):
    """Statuses the broker sends (PS3.4 Table K.4-1, PS3.7 Annex C)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01  # optional keys not supported for this identifier
    CANCEL = 0xFE00
    OUT_OF_RESOURCES = 0xA700
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000


FIND_ERROR_STATUS: dict[type[DomainError], DimseStatus] = {
    InvalidQueryError: DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    ValidationError: DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    NotFoundError: DimseStatus.UNABLE_TO_PROCESS,
    ConflictError: DimseStatus.UNABLE_TO_PROCESS,
}


def status_dataset(
    status: DimseStatus, comment: str, offending: list[int] | None = None
) -> Dataset:
    """A status with Error Comment (0000,0902) and, when known, Offending Element (0000,0901)."""
    ds = Dataset()
    ds.Status = int(status)
    ds.ErrorComment = comment[:ERROR_COMMENT_MAX]
    if offending:
        ds.OffendingElement = offending
    return ds


def comment_for(error: DomainError) -> str:
    """The message without its ``Keyword: `` prefix when Offending Element names the attribute."""
    prefix = f"{error.field}: "
    if error.field and error.message.startswith(prefix):
        return error.message[len(prefix) :]
    return error.message


def find_failure(error: DomainError, offending: list[int] | None = None) -> Dataset:
    status = FIND_ERROR_STATUS.get(type(error), DimseStatus.UNABLE_TO_PROCESS)
    return status_dataset(status, comment_for(error) if offending else error.message, offending)
