"""The one ER7 segment writer: escaping, fields and components, MSH, the message.

Both the ACKs (:mod:`hl7_ingest.ack`) and the status messages to the RIS
(:mod:`hl7_ingest.outbound.messages`) are written with these functions. Values passed to
:func:`segment` are already escaped; :func:`components` and :func:`msh` escape what they get.

Free text is escaped with hl7apy's ST encoder (``|`` -> ``\\F\\``, ``^`` -> ``\\S\\``, ``~`` ->
``\\R\\``, ``&`` -> ``\\T\\``); the escape character itself is turned into ``\\E\\`` first,
because hl7apy leaves text that already looks like an escape sequence (``\\F\\``) alone, which
would change its meaning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from hl7apy.base_datatypes import ST
from hl7apy.consts import DEFAULT_ENCODING_CHARS, VALIDATION_LEVEL

ENCODING_CHARACTERS = "^~\\&"  # MSH-2: component, repetition, escape, subcomponent
SEGMENT_END = "\r"
_ESCAPE = DEFAULT_ENCODING_CHARS["ESCAPE"]
_MSH_18 = 16  # index of MSH-18 in the MSH fields list (MSH-n is fields[n - 2]; MSH-1 is "|")


def escape(text: str) -> str:
    """Escape free text for an ER7 field (``|`` -> ``\\F\\``, ``^`` -> ``\\S\\``, ``\\`` ->
    ``\\E\\`` ...); line breaks become spaces (a CR would end the segment)."""
    one_line = " ".join(text.splitlines()) if ("\r" in text or "\n" in text) else text
    pre = one_line.replace(_ESCAPE, f"{_ESCAPE}E{_ESCAPE}")
    return str(ST(pre, validation_level=VALIDATION_LEVEL.TOLERANT).to_er7(DEFAULT_ENCODING_CHARS))


def segment(name: str, *fields: str, trim: bool = True) -> str:
    """A segment from already-escaped field values; trailing empty fields are dropped unless
    ``trim`` is false (the ACK keeps e.g. ``MSA|AR|`` as its readers expect)."""
    text = "|".join((name, *fields))
    return text.rstrip("|") if trim else text


def sparse_segment(name: str, fields: Mapping[int, str]) -> str:
    """A segment from ``{field number: escaped value}``; fields not given are empty."""
    values = [""] * max(fields, default=0)
    for index, value in fields.items():
        values[index - 1] = value
    return segment(name, *values)


def components(*values: str) -> str:
    """Values escaped and joined with ``^``, without trailing empty components."""
    return "^".join(escape(v) for v in values).rstrip("^")


def msh(
    *,
    sending_application: str,
    sending_facility: str,
    receiving_application: str = "",
    receiving_facility: str = "",
    now: datetime,
    message_type: tuple[str, ...],
    control_id: str,
    processing_id: str,
    version: str,
    charset: str = "",
) -> str:
    """MSH-1..12 (MSH-9 from the components of ``message_type``), and MSH-18 when ``charset``
    is given. Every value is escaped here."""
    fields = [
        ENCODING_CHARACTERS,
        escape(sending_application),
        escape(sending_facility),
        escape(receiving_application),
        escape(receiving_facility),
        now.strftime("%Y%m%d%H%M%S"),
        "",
        components(*message_type),
        escape(control_id),
        escape(processing_id),
        escape(version),
    ]
    if charset:
        fields += [""] * (_MSH_18 - len(fields)) + [escape(charset)]
    return segment("MSH", *fields)


def message(segments: Iterable[str]) -> str:
    """The ER7 message: each segment ``\\r``-terminated (not MLLP-framed)."""
    return "".join(s + SEGMENT_END for s in segments)
