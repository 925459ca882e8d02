"""C-FIND responses from encoded elements: the fast path beside ``mwl.build_response``.

``mwl.build_response`` walks the request over an item and returns a pydicom Dataset, which
pynetdicom then encodes: about a millisecond per match. Here the request is compiled once
per C-FIND (``ResponsePlan``) and each item keeps, per requested element, the answer
``mwl`` gives for that element alone and its encoding per transfer syntax and character set
(``EncodedItem``). A response is then the requested elements' cached bytes in tag order.

Why this is the same response, byte for byte (``tests/unit/test_mwl_encoded.py`` checks it
over generated items and queries against ``encode(build_response(...))``):

- ``mwl._reduce`` answers each requested element on its own (nothing in it looks at the other
  requested elements), so the response is the union of the one-element answers;
- pydicom writes a data set as its elements in tag order, each with
  ``write_data_element(fp, elem, <the set's Specific Character Set>)``; an element written in
  a one-element data set under that character set gives the same bytes;
- the character set (``mwl.choose_charset``) depends only on the non-ASCII texts of the
  answered elements: none, the request's set when each of them fits it (``mwl._encodable``
  checks text by text and character by character, so it holds for the union when it holds
  for each part), else UTF-8.

Ambiguous VRs (``US or SS``...) are corrected by pydicom from other elements of the data set;
a response that holds one is built by the slow path instead.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from app.domain.dicom_json import JsonDataset
from dicom_scp import mwl

SPECIFIC_CHARACTER_SET_TAG = 0x00080005
ENCODED_CACHE_SIZE = 20_000  # items whose encoded elements are kept

ElementKey = tuple[Any, ...]
Charset = tuple[str, ...] | None


@dataclass(frozen=True)
class Syntax:
    """How a presentation context encodes data sets (PS3.5 10)."""

    implicit_vr: bool = True
    little_endian: bool = True
    deflated: bool = False

    @classmethod
    def of(cls, uid: str) -> Syntax:
        ts = UID(uid)
        return cls(ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)


IMPLICIT_LITTLE = Syntax()


def encode_dataset(ds: Dataset, syntax: Syntax, charset: Charset = None) -> bytes:
    """``ds`` as pynetdicom's ``dsutils.encode`` writes it (deflate aside), with ``charset``
    as the enclosing Specific Character Set."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = syntax.implicit_vr
    fp.is_little_endian = syntax.little_endian
    if charset is None:
        write_dataset(fp, ds)
    else:
        write_dataset(fp, ds, parent_encoding=_charset_value(charset))
    return bytes(fp.getvalue())


def deflate(data: bytes) -> bytes:
    """Deflated Explicit VR Little Endian (PS3.5 A.5), as pynetdicom does it."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = compressor.compress(data) + compressor.flush()
    return out + (b"\x00" if len(out) % 2 else b"")


def _charset_value(charset: tuple[str, ...]) -> Any:
    return list(charset) if len(charset) > 1 else charset[0]


def _fingerprint(elem: Any) -> ElementKey:
    """What ``mwl._reduce`` reads of a requested element: its tag, whether it is a sequence,
    and for a sequence whether it is universal and the keys of its (first) item."""
    tag = int(elem.tag)
    if elem.VR != "SQ":
        return (tag,)
    if mwl._is_universal_sequence(elem):
        return (tag, "SQ*")
    return (tag, "SQ", tuple(_fingerprint(sub) for sub in elem.value[0]))


@dataclass(frozen=True)
class PlannedElement:
    key: ElementKey
    tag: int
    template: Dataset  # the requested element alone, as ``mwl._reduce`` walks it


class ResponsePlan:
    """One request identifier, compiled: the elements to answer and the request's charset."""

    def __init__(self, identifier: Dataset, requested_charset: list[str] | None) -> None:
        self.identifier = identifier
        self.requested_charset = requested_charset
        self.charset_key: Charset = tuple(requested_charset) if requested_charset else None
        self.elements: list[PlannedElement] = []
        for elem in identifier:
            tag = int(elem.tag)
            if tag in mwl._NOT_ANSWERED or mwl.is_ignored(tag):
                continue
            template = Dataset()
            template.add(elem)
            self.elements.append(PlannedElement(_fingerprint(elem), tag, template))


@dataclass
class Answer:
    """Whether one requested element is answered for one item, and what decides the
    character set. The answer's data set is not kept (memory: one per element and item); its
    bytes are, per syntax and character set (``EncodedItem.encoded``)."""

    present: bool
    non_ascii: tuple[str, ...]
    ambiguous: bool
    fits: dict[Charset, bool] = field(default_factory=dict)

    def fits_charset(self, requested: list[str]) -> bool:
        key = tuple(requested)
        if key not in self.fits:
            self.fits[key] = mwl._encodable(list(self.non_ascii), requested)
        return self.fits[key]


def _answer(element: PlannedElement, item: JsonDataset) -> Answer:
    reduced = mwl._reduce(element.template, item, mwl._TOP_TABLE)
    if len(reduced) == 0:
        return Answer(False, (), False)
    texts = tuple(t for t in mwl._strings(reduced) if not t.isascii())
    ambiguous = any(" or " in str(e.VR) for e in reduced.iterall())
    return Answer(True, texts, ambiguous)


class EncodedItem:
    """One item's answers and their encodings, filled as queries ask for them."""

    def __init__(self, item: JsonDataset) -> None:
        self.item = item
        self._answers: dict[ElementKey, Answer] = {}
        self._bytes: dict[tuple[ElementKey, Syntax, Charset], bytes] = {}

    def answer(self, element: PlannedElement) -> Answer:
        found = self._answers.get(element.key)
        if found is None:
            found = _answer(element, self.item)
            self._answers[element.key] = found
        return found

    def encoded(self, element: PlannedElement, syntax: Syntax, charset: Charset) -> bytes:
        key = (element.key, syntax, charset)
        found = self._bytes.get(key)
        if found is None:
            # Built afresh for each encoding: pydicom value objects may keep encoded forms.
            fresh = mwl._reduce(element.template, self.item, mwl._TOP_TABLE)
            found = encode_dataset(fresh, syntax, charset)
            self._bytes[key] = found
        return found


_CHARSET_ELEMENTS: dict[tuple[tuple[str, ...], Syntax], bytes] = {}


def _charset_element(charset: tuple[str, ...], syntax: Syntax) -> bytes:
    key = (charset, syntax)
    found = _CHARSET_ELEMENTS.get(key)
    if found is None:
        ds = Dataset()
        ds.SpecificCharacterSet = _charset_value(charset)
        found = encode_dataset(ds, syntax)
        _CHARSET_ELEMENTS[key] = found
    return found


def _choose_charset(plan: ResponsePlan, answers: Sequence[Answer]) -> Charset:
    """``mwl.choose_charset`` over the answers (see the module notes)."""
    with_text = [a for a in answers if a.non_ascii]
    if not with_text:
        return None
    requested = plan.requested_charset
    if requested and all(a.fits_charset(requested) for a in with_text):
        return tuple(requested)
    return (mwl.UTF8,)


def encode_response(plan: ResponsePlan, entry: EncodedItem, syntax: Syntax) -> bytes:
    """The encoded response identifier of one item: equal to pynetdicom's encoding of
    ``mwl.build_response(plan.identifier, entry.item, plan.requested_charset)``."""
    present = [(e, a) for e in plan.elements if (a := entry.answer(e)).present]
    if any(a.ambiguous for _, a in present):
        return slow_response(plan, entry.item, syntax)
    charset = _choose_charset(plan, [a for _, a in present])
    parts = [(e.tag, entry.encoded(e, syntax, charset)) for e, _ in present]
    if charset is not None:
        parts.append((SPECIFIC_CHARACTER_SET_TAG, _charset_element(charset, syntax)))
    parts.sort(key=lambda p: p[0])
    data = b"".join(p for _, p in parts)
    return deflate(data) if syntax.deflated else data


def slow_response(plan: ResponsePlan, item: JsonDataset, syntax: Syntax) -> bytes:
    """The reference: ``mwl.build_response`` encoded as pynetdicom encodes it."""
    response = mwl.build_response(plan.identifier, item, plan.requested_charset)
    data = encode_dataset(response, syntax)
    return deflate(data) if syntax.deflated else data


class EncodedCache:
    """``EncodedItem`` per step, valid for one item version (least recently used go first).

    Keyed like ``app.services.worklist.ItemCache``: the version read with the match, so an
    item changed by any process is encoded afresh. Thread-safe."""

    def __init__(self, max_items: int = ENCODED_CACHE_SIZE) -> None:
        self.max_items = max_items
        self._items: OrderedDict[int, tuple[Any, EncodedItem]] = OrderedDict()
        self._lock = threading.Lock()

    def entry(self, version: tuple[Any, ...], item: JsonDataset) -> EncodedItem:
        step_pk = version[0]
        with self._lock:
            found = self._items.get(step_pk)
            if found is not None and found[0] == version:
                self._items.move_to_end(step_pk)
                return found[1]
            entry = EncodedItem(item)
            self._items[step_pk] = (version, entry)
            self._items.move_to_end(step_pk)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
            return entry
