"""A fast reader for the common shape of worklist files, giving what pydicom would give.

``import-wl`` spends most of its time in pydicom reading a file and turning it into DICOM JSON
(~0.5 ms a file). Worklist files are small and plain: Little Endian, text and person-name
elements, one or two sequences, ASCII, ISO_IR 100 or UTF-8 text. ``dataset_json`` reads exactly
that shape straight from the bytes (PS3.5 7.1, 7.5; PS3.10 7.1) and returns ``None`` for
anything else (big endian, compressed, binary or numeric VRs, private or unknown tags,
PN groups, other character sets, undefined lengths outside sequences, ...),
which ``wlimport`` then reads with pydicom as before. Where it answers, the answer equals
``pydicom.dcmread(path, force=True).to_json_dict()`` without group 0002 (tests compare both);
the derived identifiers of a re-import depend on that.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_has_tag, dictionary_VR

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
CHARSET_TAG = 0x00080005
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

# How pydicom strips each supported VR's value (values.convert_*): AE loses outer whitespace,
# the rest trailing spaces and NULs. Text VRs are decoded with the character set.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})
_UID_CHARS = frozenset("0123456789.")
_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT"})  # a backslash is text here
# Explicit VR: 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1)
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_ALL_VRS = _LONG_VRS | frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL",
    "SS", "ST", "TM", "UI", "UL", "US",
})  # fmt: skip
# (0008,0005) values read here; others (ISO 2022 code extensions, ...) go to pydicom.
_ENCODINGS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_IMPLICIT = struct.Struct("<HHI")

JsonElement = dict[str, Any]


class _Unsupported(Exception):
    """The file is not of the plain shape read here: pydicom reads it."""


def dataset_json(data: bytes) -> dict[str, JsonElement] | None:
    """The file's data set as DICOM JSON (without group 0002), or ``None`` to use pydicom."""
    try:
        return _read_file(data)
    except (_Unsupported, struct.error, UnicodeDecodeError, KeyError, ValueError):
        return None


def _read_file(data: bytes) -> dict[str, JsonElement] | None:
    pos = 132 if data[128:132] == b"DICM" else 0
    syntax, pos = _file_meta(data, pos)
    if syntax == EXPLICIT_LE:
        implicit = False
    elif syntax == IMPLICIT_LE:
        implicit = True
    else:
        raise _Unsupported
    # pydicom follows the bytes when they contradict the File Meta Information: so do not guess
    if _looks_explicit(data, pos) == implicit:
        raise _Unsupported
    reader = _Reader(data, implicit)
    elements, end = reader.dataset(pos, len(data), root=True)
    if end != len(data) or not elements:
        raise _Unsupported
    return elements


def _file_meta(data: bytes, pos: int) -> tuple[str, int]:
    """The Transfer Syntax UID of the File Meta Information (always Explicit VR LE)."""
    syntax = ""
    while pos + 8 <= len(data) and _TAG.unpack_from(data, pos)[0] == 0x0002:
        _, elem, vr, length = _SHORT.unpack_from(data, pos)
        if vr.decode("latin_1") in _LONG_VRS:
            length = _LONG.unpack_from(data, pos)[3]
            start = pos + 12
        else:
            start = pos + 8
        if length == UNDEFINED or start + length > len(data):
            raise _Unsupported
        if elem == 0x0010:
            syntax = data[start : start + length].decode("ascii").rstrip("\0 ")
        pos = start + length
    if not syntax:
        raise _Unsupported  # no meta: pydicom guesses the syntax from the bytes
    return syntax, pos


def _looks_explicit(data: bytes, pos: int) -> bool:
    return data[pos + 4 : pos + 6].decode("latin_1") in _ALL_VRS


class _Reader:
    def __init__(self, data: bytes, implicit: bool) -> None:
        self.data = data
        self.implicit = implicit
        self.encoding = "ascii"

    def dataset(
        self, pos: int, end: int, *, root: bool = False, delimited: bool = False
    ) -> tuple[dict[str, Any], int]:
        """Elements from ``pos`` up to ``end``, or up to an item delimiter (then past it)
        when ``delimited``."""
        data = self.data
        out: dict[str, Any] = {}
        last = -1
        while pos < end:
            group, elem = _TAG.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag == ITEM_END:
                if not delimited or _IMPLICIT.unpack_from(data, pos)[2] != 0:
                    raise _Unsupported
                return out, pos + 8
            if tag <= last or not dictionary_has_tag(tag) or group == 0x0002:
                raise _Unsupported  # out of order, duplicate, private, unknown
            last = tag
            vr, length, pos = self._header(pos, tag)
            if vr == "SQ":
                items, pos = self._sequence(pos, length)
                out[f"{tag:08X}"] = {"vr": "SQ", "Value": items}
                continue
            if length == UNDEFINED or pos + length > end:
                raise _Unsupported
            raw = data[pos : pos + length]
            pos += length
            if tag == CHARSET_TAG:
                if not root:
                    raise _Unsupported  # a character set per item: pydicom
                self.encoding = _ENCODINGS[raw.decode("ascii").rstrip(" \0")]
            out[f"{tag:08X}"] = self._element(vr, raw)
        if delimited:
            raise _Unsupported  # an undefined-length item without its delimiter
        return out, pos

    def _header(self, pos: int, tag: int) -> tuple[str, int, int]:
        data = self.data
        if self.implicit:
            length = _IMPLICIT.unpack_from(data, pos)[2]
            if _looks_explicit(data, pos):
                raise _Unsupported  # could be explicit VR: pydicom decides that
            return dictionary_VR(tag), length, pos + 8
        raw_vr = data[pos + 4 : pos + 6].decode("ascii")
        if raw_vr in _LONG_VRS:
            return raw_vr, _LONG.unpack_from(data, pos)[3], pos + 12
        if raw_vr not in _ALL_VRS:
            raise _Unsupported
        return raw_vr, _SHORT.unpack_from(data, pos)[3], pos + 8

    def _sequence(self, pos: int, length: int) -> tuple[list[dict[str, Any]], int]:
        data = self.data
        end = len(data) if length == UNDEFINED else pos + length
        if end > len(data):
            raise _Unsupported
        items: list[dict[str, Any]] = []
        while pos < end:
            group, elem, item_length = _IMPLICIT.unpack_from(data, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == SEQUENCE_END and length == UNDEFINED:
                if item_length != 0:
                    raise _Unsupported
                return items, pos
            if tag != ITEM:
                raise _Unsupported
            if item_length == UNDEFINED:
                item, pos = self.dataset(pos, len(data), delimited=True)
            else:
                if pos + item_length > end:
                    raise _Unsupported
                item, after = self.dataset(pos, pos + item_length)
                if after != pos + item_length:
                    raise _Unsupported
                pos = after
            items.append(item)
        if length == UNDEFINED or pos != end:
            raise _Unsupported
        return items, pos

    def _element(self, vr: str, raw: bytes) -> JsonElement:
        values = self._values(vr, raw)
        if len(values) == 1 and not values[0]:
            return {"vr": vr}  # an empty value: zero length
        if vr == "PN":
            if any("=" in v for v in values) or not all(values):
                raise _Unsupported  # ideographic / phonetic groups, empty names among others
            return {"vr": vr, "Value": [{"Alphabetic": v} for v in values]}
        return {"vr": vr, "Value": values}

    def _values(self, vr: str, raw: bytes) -> list[str]:
        """The element's values, stripped as pydicom strips them (``values.convert_*``)."""
        if vr in _ASCII_VRS:
            text = raw.decode("ascii")
            if vr == "AE":  # leading and trailing spaces are not significant
                return [v.strip() for v in text.split("\\")]
            values = text.rstrip(" \0").split("\\")
            if vr == "UI" and not all(_UID_CHARS.issuperset(v) for v in values):
                raise _Unsupported  # pydicom's UID strips whitespace too: keep to plain UIDs
            return values
        if vr not in _TEXT_VRS:
            raise _Unsupported  # numbers, binary, tags
        if b"\x1b" in raw:
            raise _Unsupported  # ISO 2022 escape sequences
        if vr == "PN":
            return raw.rstrip(b"\0 ").decode(self.encoding).split("\\")
        text = raw.decode(self.encoding)
        if vr in _SINGLE_VALUE_VRS:  # a backslash is text here
            return [text.rstrip(" \0")]
        return [v.rstrip(" \0") for v in text.split("\\")]
