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
    lookup,
)
from app.domain.mpps import (
    DuplicateInstanceError,
    InvalidAttributeValueError,
    MissingAttributeError,
    MissingAttributeValueError,
    MppsClosedError,
    NoSuchInstanceError,
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


def status_dataset(status: int, comment: str, offending: list[int] | None = None) -> Dataset:
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
    status = lookup(FIND_ERROR_STATUS, error, DimseStatus.UNABLE_TO_PROCESS)
    return status_dataset(status, comment_for(error) if offending else error.message, offending)


class NStatus(IntEnum):
    """N-CREATE / N-SET / N-GET statuses (PS3.7 10.1.5.1.6, 10.1.3.1.9, Annex C)."""

    SUCCESS = 0x0000
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_ARGUMENT_VALUE = 0x0115  # N-ACTION (PS3.7 10.1.4.1.10)
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    NO_SUCH_ACTION = 0x0123


MPPS_CLOSED_ERROR_ID = 0xA710  # PS3.4 Table F.7.2-2

MPPS_ERROR_STATUS: dict[type[DomainError], NStatus] = {
    MissingAttributeError: NStatus.MISSING_ATTRIBUTE,
    MissingAttributeValueError: NStatus.MISSING_ATTRIBUTE_VALUE,
    InvalidAttributeValueError: NStatus.INVALID_ATTRIBUTE_VALUE,
    DuplicateInstanceError: NStatus.DUPLICATE_SOP_INSTANCE,
    NoSuchInstanceError: NStatus.NO_SUCH_SOP_INSTANCE,
    MppsClosedError: NStatus.PROCESSING_FAILURE,
}


def mpps_failure(error: DomainError, tag: int | None, *, identifier_list: bool) -> Dataset:
    """The status for a failed N-CREATE / N-SET / N-GET.

    The attribute at fault goes in Attribute Identifier List (0000,1005) where the response can
    carry it (N-SET, PS3.7 Annex C); N-CREATE responses have only Error Comment (0000,0902), so
    the comment names it there.
    """
    status = lookup(MPPS_ERROR_STATUS, error, NStatus.PROCESSING_FAILURE)
    if isinstance(error, MppsClosedError):
        ds = status_dataset(status, MppsClosedError.COMMENT)
        ds.ErrorID = MPPS_CLOSED_ERROR_ID
        return ds
    if identifier_list and tag is not None:
        ds = status_dataset(status, comment_for(error))
        ds.AttributeIdentifierList = [tag]
        return ds
    return status_dataset(status, error.message)
