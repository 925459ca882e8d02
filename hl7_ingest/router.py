"""Which HL7 messages the broker takes, and the decoder of each (SPEC_DIGEST 3.1).

``to_command`` checks the envelope (type 200, event 201, processing id 202, version 203; all
``MessageRejected`` -> ACK AR) and hands the message to its decoder, which raises
``MessageError`` (ACK AE) for content it cannot use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain.intake import IntakeCommand
from hl7_ingest.adt import adt_command
from hl7_ingest.errors import (
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    FieldWarning,
    MessageRejected,
)
from hl7_ingest.orders import order_command
from hl7_ingest.parse import Envelope, Hl7Message
from hl7_ingest.siu import siu_command

# decoder(message, envelope, warnings) -> command; appends what it changed to ``warnings``
Decoder = Callable[[Hl7Message, Envelope, list[FieldWarning]], IntakeCommand]


@dataclass(frozen=True)
class Decoded:
    """A message's intake command and the warnings of its mapping (ERR severity W in the ACK)."""

    command: IntakeCommand
    warnings: tuple[FieldWarning, ...] = ()


SUPPORTED: dict[tuple[str, str], Decoder] = {
    ("ORM", "O01"): order_command,  # RAD-2/RAD-4/RAD-13, v2.3.1 (+ ZDS)
    ("OMI", "O23"): order_command,  # RAD-4/RAD-13 SWF.b, v2.5.1 (+ TQ1, IPC)
    ("OMG", "O19"): order_command,  # RAD-2 v2.5.1 / eye care
    ("SIU", "S12"): siu_command,  # new appointment booking -> as NW
    ("SIU", "S13"): siu_command,  # rescheduling -> as XO
    ("SIU", "S14"): siu_command,  # modification -> as XO
    ("SIU", "S15"): siu_command,  # cancellation -> as CA
    ("ADT", "A01"): adt_command,  # RAD-1 admit
    ("ADT", "A04"): adt_command,  # RAD-1 register outpatient
    ("ADT", "A05"): adt_command,  # RAD-1 pre-admit
    ("ADT", "A08"): adt_command,  # RAD-12 update patient information
    ("ADT", "A28"): adt_command,  # add person information (MPI): as a registration
    ("ADT", "A29"): adt_command,  # delete person information: only a patient without orders
    ("ADT", "A31"): adt_command,  # update person information (MPI): as A08
    ("ADT", "A40"): adt_command,  # RAD-12 merge patient - patient identifier list
    ("ADT", "A47"): adt_command,  # change patient identifier list
}
SUPPORTED_TYPES = frozenset(message_type for message_type, _ in SUPPORTED)
PROCESSING_IDS = frozenset({"", "P", "D", "T"})  # HL7 table 0103 (empty tolerated)


def check_envelope(env: Envelope) -> Decoder:
    """The decoder for this message, or ``MessageRejected`` (200/201 at MSH^1^9, 202, 203)."""
    if env.message_type not in SUPPORTED_TYPES:
        raise MessageRejected(
            UNSUPPORTED_MESSAGE_TYPE,
            f"message type '{env.message_type}' is not supported; supported: "
            + ", ".join(sorted(SUPPORTED_TYPES)),
            "MSH^1^9",
        )
    decoder = SUPPORTED.get((env.message_type, env.trigger_event))
    if decoder is None:
        events = sorted(e for t, e in SUPPORTED if t == env.message_type)
        raise MessageRejected(
            UNSUPPORTED_EVENT_CODE,
            f"event '{env.trigger_event}' of {env.message_type} is not supported; supported: "
            + ", ".join(events),
            "MSH^1^9",
        )
    if env.processing_id.upper() not in PROCESSING_IDS:
        raise MessageRejected(
            UNSUPPORTED_PROCESSING_ID,
            f"processing id '{env.processing_id}' is not P, D or T",
            "MSH^1^11",
        )
    if env.version and env.version_tuple[:1] != (2,):
        raise MessageRejected(
            UNSUPPORTED_VERSION_ID, f"version '{env.version}' is not HL7 v2.x", "MSH^1^12"
        )
    return decoder


def decode_message(text: str, env: Envelope) -> Decoded:
    """Decode a (``decode``d) message into the intake command its type and event call for,
    with the warnings of the mapping (values it had to shorten)."""
    decoder = check_envelope(env)
    warnings: list[FieldWarning] = []
    command = decoder(Hl7Message(text), env, warnings)
    # a field every group shares (PV1-3, say) is reported once
    return Decoded(command, tuple(dict.fromkeys(warnings)))


def to_command(text: str, env: Envelope) -> IntakeCommand:
    """The intake command of a message (``decode_message`` without the warnings)."""
    return decode_message(text, env).command
