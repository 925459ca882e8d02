"""HL7 errors the intake raises, with their HL7 table 0357 code and ERR location, and the ACK
code (MSA-1) that answers each kind (``ACK_CODES``).

``MessageRejected`` is answered with ACK ``AR`` (the message cannot be read, or its type, event,
processing id, version or character set is not supported); ``MessageError`` with ACK ``AE`` (the
message was understood but cannot be applied: a required field is missing, a value is malformed,
a referenced record does not exist...). SPEC_DIGEST 3.2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from app.domain.errors import lookup


class AckCode(StrEnum):
    """MSA-1 (HL7 table 0008), original acknowledgement mode."""

    AA = "AA"  # accepted (and committed)
    AE = "AE"  # application error: understood, not applied
    AR = "AR"  # application reject: unparsable or unsupported


# HL7 table 0357 Message error condition codes (v2.5.1; 104 is from v2.6 and harmless earlier).
SEGMENT_SEQUENCE = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
VALUE_TOO_LONG = 104
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY_IDENTIFIER = 205
APPLICATION_RECORD_LOCKED = 206
APPLICATION_INTERNAL_ERROR = 207

DESCRIPTIONS: dict[int, str] = {
    0: "Message accepted",
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    VALUE_TOO_LONG: "Value too long",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}


def describe(code: int) -> str:
    """The table 0357 text of a code (``Application internal error`` for unknown codes)."""
    return DESCRIPTIONS.get(code, DESCRIPTIONS[APPLICATION_INTERNAL_ERROR])


class Hl7Error(Exception):
    """An error to report in an ACK: table 0357 ``code``, free ``text``, ERR ``location``.

    ``location`` is an ERL like ``OBR^1^18`` or ``ORC^1^7^1^4`` (segment ^ sequence ^ field
    [^ repetition ^ component]); ``""`` when the error is not tied to one field.
    """

    def __init__(self, code: int, text: str, location: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.location = location

    @property
    def description(self) -> str:
        return describe(self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.text!r}, {self.location!r})"


class MessageRejected(Hl7Error):
    """Answered with ACK AR: unparsable, unsupported type/event/version/charset."""


class MessageError(Hl7Error):
    """Answered with ACK AE: understood, but a field is missing or wrong, or it cannot apply."""


@dataclass(frozen=True)
class FieldWarning:
    """Something the broker changed while accepting a message (ERR with severity ``W``, HL7
    table 0516): table 0357 ``code``, ERR ``location`` and free ``text``. The mapping returns
    these with the command; the ACK reports them."""

    code: int
    text: str
    location: str

    @property
    def description(self) -> str:
        return describe(self.code)


# Which ACK answers an HL7 error (lookup() walks the class hierarchy).
ACK_CODES: Mapping[type[Hl7Error], AckCode] = {
    MessageRejected: AckCode.AR,
    MessageError: AckCode.AE,
}


def ack_code(error: Hl7Error) -> AckCode:
    """MSA-1 for an error: AR when the message is rejected, else AE."""
    return lookup(ACK_CODES, error, AckCode.AE)


def error_class(code: AckCode) -> type[Hl7Error]:
    """The error to raise or report for an ACK code (the inverse of ``ACK_CODES``)."""
    return MessageRejected if code is AckCode.AR else MessageError
