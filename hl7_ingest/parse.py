"""Reading HL7 v2 ER7 text: character set (MSH-18), envelope (MSH), segments, fields, escapes.

The intake reads messages by plain string splitting rather than through hl7apy's object model:
a full ``hl7apy.parser.parse_message`` of a six-segment ORM costs about 6 ms, splitting and
picking the few dozen fields the mapping needs costs well under 0.1 ms, and splitting is tolerant
of Z-segments, unusual segment order and versions hl7apy has no library for. hl7apy is used for
what it does well where it matters: escaping text written into ACKs (``ack.escape``), and the
tests check that every ACK the broker builds parses with hl7apy.

Positions follow HL7 numbering: ``Segment.get(7, 4)`` is ORC-7.4. In ``MSH|^~\\&|A|B`` MSH-1 is
the field separator itself and MSH-2 the encoding characters; ``Segment.fields`` stores MSH with
the separator inserted so that ``fields[n]`` is field *n* for every segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from hl7_ingest.errors import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    MessageError,
    MessageRejected,
)

SEGMENT_BREAK = re.compile(r"\r\n|\r|\n")

# MSH-18 (HL7 table 0211) -> Python codec and DICOM Specific Character Set (SPEC_DIGEST 3.2).
# "" means the default repertoire (ASCII) and ISO_IR 6 in DICOM.
CHARSETS: dict[str, tuple[str, str]] = {
    "": ("ascii", ""),
    "ASCII": ("ascii", ""),
    "ISO IR6": ("ascii", ""),
    "8859/1": ("latin-1", "ISO_IR 100"),
    "8859/2": ("iso8859-2", "ISO_IR 101"),
    "8859/3": ("iso8859-3", "ISO_IR 109"),
    "8859/4": ("iso8859-4", "ISO_IR 110"),
    "8859/5": ("iso8859-5", "ISO_IR 144"),
    "8859/6": ("iso8859-6", "ISO_IR 127"),
    "8859/7": ("iso8859-7", "ISO_IR 126"),
    "8859/8": ("iso8859-8", "ISO_IR 138"),
    "8859/9": ("iso8859-9", "ISO_IR 148"),
    "8859/15": ("iso8859-15", "ISO_IR 203"),
    "UNICODE UTF-8": ("utf-8", "ISO_IR 192"),
    "UTF-8": ("utf-8", "ISO_IR 192"),  # not in table 0211, but sent by some systems
    "ISO IR14": ("iso2022_jp", "ISO 2022 IR 13"),
    "ISO IR87": ("iso2022_jp", "ISO 2022 IR 87"),
    "ISO IR159": ("iso2022_jp_1", "ISO 2022 IR 159"),
    "KS X 1001": ("euc_kr", "ISO 2022 IR 149"),
    "GB 18030-2000": ("gb18030", "GB18030"),
}

MSH18_LOCATION = "MSH^1^18"


@dataclass(frozen=True)
class Separators:
    """MSH-1 and MSH-2: field, component, repetition, escape and subcomponent characters."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_msh(cls, field_sep: str, encoding: str) -> Separators:
        defaults = cls()
        chars = [*encoding[:4]]
        names = ("component", "repetition", "escape", "subcomponent")
        values = {
            name: chars[i] if i < len(chars) else getattr(defaults, name)
            for i, name in enumerate(names)
        }
        return cls(field=field_sep, **values)


DEFAULT_SEPARATORS = Separators()


@dataclass(frozen=True)
class Envelope:
    """What the MSH says about a message: who sent it, what it is, how it is encoded."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str
    trigger_event: str
    structure: str
    version: str
    charset: str  # MSH-18 as given, "" when absent
    processing_id: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)


def version_tuple(version: str) -> tuple[int, ...]:
    """``2.5.1`` -> ``(2, 5, 1)``; unreadable parts are dropped (``""`` -> ``()``)."""
    parts = []
    for part in version.strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


# ---------------------------------------------------------------------------------------------
# Character set


def _msh18_from_bytes(raw: bytes) -> str | None:
    """MSH-18 (first repetition) read from the raw bytes; ``None`` when there is no MSH."""
    start = raw.lstrip(b"\x0b \t\r\n\xef\xbb\xbf")
    if not start.startswith(b"MSH") or len(start) < 8:
        return None
    line = SEGMENT_BREAK.split(start.decode("latin-1"), maxsplit=1)[0]
    if len(line) < 8:  # "MSH\r...", "MSH|\r...": envelope() rejects it
        return None
    field_sep, encoding = line[3], line[4:8].split(line[3])[0]
    after = line[4:].split(field_sep)  # after[0] is MSH-2, so MSH-n is after[n - 2]
    if len(after) < 17:
        return ""
    repetition = encoding[1] if len(encoding) > 1 else "~"
    return after[16].split(repetition)[0].strip()


def charset_codec(charset: str) -> str:
    """The Python codec of an MSH-18 value; ``MessageRejected`` when it is not supported."""
    entry = CHARSETS.get(charset.strip().upper())
    if entry is None:
        raise MessageRejected(
            APPLICATION_INTERNAL_ERROR,
            f"unsupported character set '{charset}' in MSH-18; supported: "
            + ", ".join(k for k in CHARSETS if k),
            MSH18_LOCATION,
        )
    return entry[0]


def dicom_charset(charset: str) -> str:
    """Specific Character Set (0008,0005) for an MSH-18 value (``""``: default repertoire)."""
    entry = CHARSETS.get(charset.strip().upper())
    return entry[1] if entry else ""


def normalize_segments(text: str) -> str:
    """Segments separated by ``\\r``, ``\\n`` or ``\\r\\n`` -> each terminated by ``\\r``.

    Empty lines and MLLP framing characters around the message are dropped.
    """
    stripped = text.strip("\x0b\x1c\r\n \t\ufeff")
    segments = [s for s in SEGMENT_BREAK.split(stripped) if s.strip()]
    return "".join(s + "\r" for s in segments)


# MSH-18 values naming a single-byte set (or none: ASCII) that real senders put on UTF-8 text.
SINGLE_BYTE = frozenset(k for k, (codec, _) in CHARSETS.items() if codec in ("ascii", "latin-1"))
SINGLE_BYTE |= frozenset(k for k in CHARSETS if k.startswith("8859/"))


@dataclass(frozen=True)
class DecodedText:
    """A decoded message; ``utf8_instead_of`` is the MSH-18 it was *not* read with (``None``
    when the declared set was used, ``""`` when none was declared)."""

    text: str
    utf8_instead_of: str | None = None


def decode_text(raw: bytes) -> DecodedText:
    """:func:`decode_charset`, then NUL refused: no HL7 data type allows a NUL character
    (v2.5.1 2.A), and PostgreSQL text cannot hold one. A NUL -> ``MessageError`` (AE) 102."""
    decoded = decode_charset(raw)
    nul = decoded.text.find("\x00")
    if nul != -1:
        raise MessageError(
            DATA_TYPE_ERROR,
            f"NUL character (0x00) at character {nul} of the message: not allowed in HL7 text; "
            "the message is not stored",
            "",
        )
    return decoded


def decode_charset(raw: bytes) -> DecodedText:
    """Decode a message with the character set its MSH-18 names; segments ``\\r``-terminated.

    MSH is ASCII in every supported character set, so MSH-18 is read from the bytes first. An
    MSH-18 value not in the table -> ``MessageRejected`` (AR) at ``MSH^1^18``.

    Real senders label UTF-8 text ``8859/1`` (or send no MSH-18 at all): when MSH-18 names a
    single-byte set (``SINGLE_BYTE``, or is empty) and the bytes are valid UTF-8 with at least
    one multi-byte sequence, the text is read as UTF-8 (a Latin-1 text is valid UTF-8 only by
    rare accident: every non-ASCII Latin-1 letter is a UTF-8 lead or continuation byte alone).
    Bytes valid neither in the declared set nor as UTF-8 -> ``MessageError`` (AE) at
    ``MSH^1^18``: never stored garbled. A message without MSH is decoded as Latin-1 (never
    fails) so that ``envelope`` can report the missing MSH.
    """
    charset = _msh18_from_bytes(raw)
    if charset is None:
        return DecodedText(normalize_segments(raw.decode("latin-1")))
    codec = charset_codec(charset)
    declared = charset.strip().upper()
    if declared in SINGLE_BYTE and not raw.isascii():
        try:
            return DecodedText(normalize_segments(raw.decode("utf-8")), declared)
        except UnicodeDecodeError:
            pass  # not UTF-8: the declared set decides
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        named = charset or "none (ASCII)"
        also = " nor as UTF-8" if declared in SINGLE_BYTE else ""
        raise MessageError(
            APPLICATION_INTERNAL_ERROR,
            f"byte 0x{raw[exc.start]:02X} at offset {exc.start} is not valid in the declared "
            f"character set {named}{also}; the message is not stored",
            MSH18_LOCATION,
        ) from None
    return DecodedText(normalize_segments(text))


def canonical(text: str) -> str:
    """A message's content for comparing a redelivery with the accepted original.

    Segment terminators (``\r``, ``\n``, ``\r\n``), empty segments and trailing whitespace
    of each segment do not count, nor does MSH-7 (date/time of message: an interface engine
    may stamp a resend anew). Everything else, including MSH-10 and every other MSH field,
    must be equal.
    """
    lines = [s.rstrip() for s in SEGMENT_BREAK.split(text.strip("\x0b\x1c\ufeff")) if s.strip()]
    if lines and lines[0].startswith("MSH") and len(lines[0]) > 3:
        sep = lines[0][3]
        fields = lines[0].split(sep)  # fields[6] is MSH-7 (fields[1] is MSH-2)
        if len(fields) > 6:
            fields[6] = ""
        lines[0] = sep.join(fields)
    return "\r".join(lines)


def decode(raw: bytes) -> str:
    """The text of a message (see :func:`decode_text`)."""
    return decode_text(raw).text


# ---------------------------------------------------------------------------------------------
# Escapes


@lru_cache(maxsize=8)
def _escape_pattern(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(f"{e}([^{e}\r]*){e}")


def unescape(value: str, seps: Separators = DEFAULT_SEPARATORS) -> str:
    """Decode HL7 escape sequences (v2.5.1 2.7): ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\Xhh\\``,
    ``\\.br\\`` (line break); highlighting ``\\H\\ \\N\\`` and character set switches are dropped.
    """
    if seps.escape not in value:
        return value
    table = {
        "F": seps.field,
        "S": seps.component,
        "T": seps.subcomponent,
        "R": seps.repetition,
        "E": seps.escape,
        "H": "",
        "N": "",
        ".br": "\n",
    }

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in table:
            return table[code]
        if code[:1] == "X" and len(code) % 2 == 1:
            try:
                data = bytes.fromhex(code[1:])
            except ValueError:
                return match.group(0)
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if code[:1] in ("C", "M", "Z") or code[:1] == ".":
            return ""
        return match.group(0)

    return _escape_pattern(seps.escape).sub(replace, value)


# ---------------------------------------------------------------------------------------------
# Segments and fields


class Segment:
    """One segment split into fields; ``fields[n]`` is field *n* (raw, still escaped)."""

    __slots__ = ("fields", "name", "seps")

    def __init__(self, line: str, seps: Separators) -> None:
        self.seps = seps
        fields = line.split(seps.field)
        if fields[0] == "MSH":
            fields.insert(1, seps.field)
        self.name = fields[0].strip()
        self.fields = fields

    def raw(self, field: int) -> str:
        """Field *n* as sent (with repetitions, components and escapes)."""
        return self.fields[field] if field < len(self.fields) else ""

    def repetitions(self, field: int) -> list[str]:
        """The raw repetitions of a field (``[]`` when empty)."""
        raw = self.raw(field)
        if not raw or (self.name == "MSH" and field <= 2):
            return [raw] if raw else []
        return raw.split(self.seps.repetition)

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        """One value, unescaped and stripped; ``""`` when absent or the HL7 null ``""``."""
        reps = self.repetitions(field)
        if len(reps) < repetition:
            return ""
        return pick(reps[repetition - 1], self.seps, component, subcomponent)

    def components(self, field: int, repetition: int = 1) -> list[str]:
        """The raw components of one repetition (``[]`` when absent)."""
        reps = self.repetitions(field)
        if len(reps) < repetition or not reps[repetition - 1]:
            return []
        return reps[repetition - 1].split(self.seps.component)

    def __repr__(self) -> str:
        return f"Segment({self.seps.field.join(self.fields)!r})"


def pick(raw: str, seps: Separators, component: int = 1, subcomponent: int = 1) -> str:
    """Component/subcomponent of one raw repetition, unescaped and stripped."""
    comps = raw.split(seps.component)
    if len(comps) < component:
        return ""
    subs = comps[component - 1].split(seps.subcomponent)
    if len(subs) < subcomponent:
        return ""
    value = subs[subcomponent - 1].strip()
    if value == '""':
        return ""
    return unescape(value, seps)


class Hl7Message:
    """A message as a list of segments, with the separators of its MSH."""

    __slots__ = ("segments", "seps")

    def __init__(self, text: str) -> None:
        lines = [s for s in SEGMENT_BREAK.split(text) if s.strip()]
        if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
            raise MessageRejected(
                SEGMENT_SEQUENCE, "the message does not start with an MSH segment", "MSH^1"
            )
        head = lines[0]
        self.seps = Separators.from_msh(head[3], head[4:].split(head[3])[0])
        self.segments = [Segment(line, self.seps) for line in lines]

    def first(self, name: str) -> Segment | None:
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


# ---------------------------------------------------------------------------------------------
# Envelope

# Default MSH-9.3 message structure when the sender leaves it out (v2.5 chapter 2/3 tables).
_STRUCTURES: dict[tuple[str, str], str] = {
    ("ADT", "A01"): "ADT_A01",
    ("ADT", "A04"): "ADT_A01",
    ("ADT", "A05"): "ADT_A01",
    ("ADT", "A08"): "ADT_A01",
    ("ADT", "A28"): "ADT_A05",
    ("ADT", "A29"): "ADT_A21",
    ("ADT", "A31"): "ADT_A05",
    ("ADT", "A40"): "ADT_A39",
    ("SIU", "S12"): "SIU_S12",
    ("SIU", "S13"): "SIU_S12",
    ("SIU", "S14"): "SIU_S12",
    ("SIU", "S15"): "SIU_S12",
    ("ADT", "A47"): "ADT_A43",
}


def default_structure(message_type: str, trigger: str, version: str) -> str:
    """MSH-9.3 for a message that omits it: ADT A04 -> ADT_A01, A40 -> ADT_A39, else TYPE_TRIG."""
    if not message_type:
        return ""
    if message_type == "ADT" and trigger == "A47" and version_tuple(version) < (2, 5):
        return "ADT_A30"
    structure = _STRUCTURES.get((message_type, trigger))
    if structure:
        return structure
    return f"{message_type}_{trigger}" if trigger else message_type


def _required(segment: Segment, field: int, name: str) -> str:
    value = segment.get(field)
    if not value:
        raise MessageRejected(
            REQUIRED_FIELD_MISSING, f"{name} (MSH-{field}) is missing", f"MSH^1^{field}"
        )
    return value


def envelope(text: str) -> Envelope:
    """Read the MSH by plain splitting: sender, receiver, MSH-9 type/trigger/structure, MSH-10...

    A message that does not start with MSH -> ``MessageRejected`` 100 at ``MSH^1``; without
    MSH-9 or MSH-10 -> ``MessageRejected`` 101 at ``MSH^1^9`` / ``MSH^1^10``.
    """
    head = SEGMENT_BREAK.split(text.lstrip("\x0b \t\r\n\ufeff"), maxsplit=1)[0]
    if not head.startswith("MSH") or len(head) < 8:
        raise MessageRejected(
            SEGMENT_SEQUENCE, "the message does not start with an MSH segment", "MSH^1"
        )
    seps = Separators.from_msh(head[3], head[4:].split(head[3])[0])
    msh = Segment(head, seps)
    message_type = _required(msh, 9, "message type").upper()
    trigger = msh.get(9, 2).upper()
    version = msh.get(12)
    structure = msh.get(9, 3).upper() or default_structure(message_type, trigger, version)
    return Envelope(
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        receiving_application=msh.get(5),
        receiving_facility=msh.get(6),
        control_id=_required(msh, 10, "message control id"),
        message_type=message_type,
        trigger_event=trigger,
        structure=structure,
        version=version,
        charset=msh.get(18),
        processing_id=msh.get(11),
    )
