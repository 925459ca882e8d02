"""A strict walk over the bytes of a received data set, before pydicom decodes it.

pydicom decodes lazily and forgives: an element whose length runs past the end of the data set
is read short without complaint, so a truncated C-FIND identifier or MPPS data set would be
answered as if it were whole. Every element header, length, sequence and item of the encoded
data set (PS3.5 7.1, 7.5) is checked here first; deflated data sets (PS3.5 A.5) are inflated
within a bound, so a small deflated message cannot unfold into a large one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

MAX_INFLATED = 4 * 1024 * 1024  # bytes a deflated identifier or MPPS data set may unfold to
MAX_DEPTH = 16  # nested sequences
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


class MalformedDataSet(ValueError):
    """The encoded data set cannot be decoded whole."""

    def __init__(self, message: str, tag: int | None = None) -> None:
        super().__init__(
            message if tag is None else f"{message} at ({tag >> 16:04X},{tag & 0xFFFF:04X})"
        )
        self.tag = tag


@dataclass(frozen=True)
class _Syntax:
    implicit: bool
    endian: str  # "<" or ">"


def check_encoded(raw: bytes, transfer_syntax: str) -> None:
    """Raise ``MalformedDataSet`` unless ``raw`` is a whole data set in ``transfer_syntax``."""
    ts = UID(transfer_syntax)
    if ts.is_deflated:
        raw = _inflate(raw)
    syntax = _Syntax(implicit=ts.is_implicit_VR, endian="<" if ts.is_little_endian else ">")
    end = _walk(raw, 0, len(raw), syntax, 0, in_item=False)
    if end != len(raw):
        raise MalformedDataSet("unexpected item delimiter")


def _inflate(raw: bytes) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, MAX_INFLATED + 1)
    except zlib.error as exc:
        raise MalformedDataSet(f"deflated data set cannot be inflated: {exc}") from None
    if len(data) > MAX_INFLATED or inflater.unconsumed_tail:
        raise MalformedDataSet(f"deflated data set unfolds past {MAX_INFLATED} bytes")
    return data


def _header(buf: bytes, pos: int, end: int, syntax: _Syntax) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, value position) of the element at ``pos``."""
    if end - pos < 8:
        raise MalformedDataSet(f"element header cut short ({end - pos} bytes left)")
    group, elem = struct.unpack_from(syntax.endian + "HH", buf, pos)
    tag = group << 16 | elem
    if syntax.implicit or group == 0xFFFE:
        (length,) = struct.unpack_from(syntax.endian + "L", buf, pos + 4)
        return tag, None, length, pos + 8
    vr = bytes(buf[pos + 4 : pos + 6])
    if not (vr.isalpha() and vr.isupper()):
        raise MalformedDataSet(f"invalid VR {vr!r}", tag)
    if vr in LONG_VRS:
        if end - pos < 12:
            raise MalformedDataSet("element header cut short", tag)
        (length,) = struct.unpack_from(syntax.endian + "L", buf, pos + 8)
        return tag, vr, length, pos + 12
    (length,) = struct.unpack_from(syntax.endian + "H", buf, pos + 6)
    return tag, vr, length, pos + 8


def _is_sequence(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr == b"SQ"
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False  # private or unknown: opaque bytes in Implicit VR


def _walk(buf: bytes, pos: int, end: int, syntax: _Syntax, depth: int, *, in_item: bool) -> int:
    """Check the elements in ``buf[pos:end]``; return where the data set ends.

    An undefined-length item ends at its Item Delimitation Item (``in_item``).
    """
    if depth > MAX_DEPTH:
        raise MalformedDataSet(f"sequences nested deeper than {MAX_DEPTH}")
    while pos < end:
        tag, vr, length, value = _header(buf, pos, end, syntax)
        if tag == ITEM_END:
            if not in_item:
                raise MalformedDataSet("item delimiter outside an item", tag)
            return value
        if tag in (ITEM, SEQUENCE_END):
            raise MalformedDataSet("item outside a sequence", tag)
        if length == UNDEFINED:
            if vr not in (None, b"SQ", b"UN"):
                raise MalformedDataSet("undefined length on a non-sequence", tag)
            pos = _walk_items(buf, value, end, syntax, depth + 1, undefined=True)
            continue
        if value + length > end:
            raise MalformedDataSet(f"value length {length} runs past the data set", tag)
        if _is_sequence(tag, vr):
            _walk_items(buf, value, value + length, syntax, depth + 1, undefined=False)
        pos = value + length
    if in_item:
        raise MalformedDataSet("item without its delimiter")
    return pos


def _walk_items(
    buf: bytes, pos: int, end: int, syntax: _Syntax, depth: int, *, undefined: bool
) -> int:
    """The items of a sequence; an undefined-length one ends at its Sequence Delimitation."""
    while pos < end:
        tag, _, length, value = _header(buf, pos, end, syntax)
        if tag == SEQUENCE_END and undefined:
            return value
        if tag != ITEM:
            raise MalformedDataSet("sequence holds something else than an item", tag)
        if length == UNDEFINED:
            pos = _walk(buf, value, end, syntax, depth, in_item=True)
            continue
        if value + length > end:
            raise MalformedDataSet(f"item length {length} runs past its sequence", tag)
        _walk(buf, value, value + length, syntax, depth, in_item=False)
        pos = value + length
    if undefined:
        raise MalformedDataSet("sequence without its delimiter")
    return pos
