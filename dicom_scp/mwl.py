"""Modality Worklist identifiers: request identifier -> query keys, item -> response identifier.

Elements that are no key of the worklist model are ignored, for matching and in responses,
without refusing the query: Query/Retrieve Level (0008,0052) (PS3.4 K.6.1 has no levels; some
SCUs, dcmjs-dimse among them, send it anyway), private elements (odd groups: their meaning
depends on a private creator the broker does not know) and group lengths (gggg,0000).

Responses are built by walking the *request* identifier (PS3.4 K.4.1.1.3.2: a response holds no
attribute that was not requested, except Specific Character Set), so each response carries
exactly the requested keys, by return key type (PS3.5 7.4, PS3.4 K.2.2.1.2) of the attribute in
``app.domain.mwl_attributes``:

- a requested attribute the item has a value for: its value;
- Type 1 and 2 without a value: zero length;
- Type 2C without a value: zero length when the item carries the element (its source said the
  condition holds, value unknown), left out when it does not (nothing says the condition holds);
- Type 1C and 3 without a value: left out (a 1C element may not be empty, and its condition
  does not hold for an item that lacks it; a Type 3 key is optional);
- a requested attribute outside the table: its value when the item carries it (items keep every
  attribute they were given), otherwise left out, like a Type 3 key;
- a sequence requested with no item or one empty item: the whole stored sequence (universal);
  with keys in its item: each stored item reduced to those of its keys it carries (an item of
  a code or reference sequence has no Type 2 attributes to return empty, and a key it lacks is
  left out rather than sent empty);
- the Scheduled Procedure Step Sequence: exactly one item, the matched step.

Status of each match (PS3.4 Table K.4-1): 0xFF01 ("one or more Optional Keys were not supported")
when the request holds a key with a value the broker does not match on, so the matches may be
more than the modality asked for; 0xFF00 otherwise. Return keys never cause 0xFF01: each one is
answered by the rules above (an absent one is absent from the item), and ignored elements are no
Optional Keys of the model. (dcmjs-dimse 0.3.3 releases the association on the first response
that is not 0xFF00 and loses the remaining matches; wlmscpfs answers its default worklist query
with 0xFF01.)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import DataElement
from pydicom.charset import convert_encodings, decode_bytes, encode_string, python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from app.domain.dicom_json import STRING_VRS, JsonDataset, pn_from_json
from app.domain.errors import InvalidQueryError
from app.domain.mwl_attributes import (
    BY_TAG,
    SPECIFIC_CHARACTER_SET_TAG,
    SPS_SEQUENCE_TAG,
    STEP_ATTRIBUTES,
    TIMEZONE_OFFSET_TAG,
    TOP_LEVEL_ATTRIBUTES,
    Level,
    MwlAttribute,
)
from app.domain.worklist import SPS_LEVEL_KEYS, SUPPORTED_MATCHING_KEYS
from dicom_scp.status import DimseStatus

QUERY_RETRIEVE_LEVEL_TAG = 0x00080052
PREGNANCY_STATUS_TAG = 0x001021C0
UTF8 = "ISO_IR 192"
_NOT_ANSWERED = frozenset({SPECIFIC_CHARACTER_SET_TAG, TIMEZONE_OFFSET_TAG})
_TEXT_VRS = STRING_VRS | {"PN"}

# The attributes a level of the identifier may ask for, by tag; None inside other sequences
# (code items and the like), where a requested key is answered as the stored item carries it.
Table = Mapping[int, MwlAttribute] | None
_SPS_SEQUENCE = MwlAttribute(
    SPS_SEQUENCE_TAG, "ScheduledProcedureStepSequence", "SQ", Level.STEP, "1"
)
_TOP_TABLE: dict[int, MwlAttribute] = {a.tag: a for a in TOP_LEVEL_ATTRIBUTES}
_TOP_TABLE[SPS_SEQUENCE_TAG] = _SPS_SEQUENCE
_STEP_TABLE: dict[int, MwlAttribute] = {a.tag: a for a in STEP_ATTRIBUTES}


def is_ignored(tag: int) -> bool:
    """Elements that are no key of the worklist model: Query/Retrieve Level, private elements
    and group lengths. They are neither matched nor answered, and raise no warning."""
    return tag == QUERY_RETRIEVE_LEVEL_TAG or (tag >> 16) % 2 == 1 or tag & 0xFFFF == 0


@dataclass
class MwlRequest:
    """What the handler needs from one C-FIND identifier."""

    keys: dict[str, str] = field(default_factory=dict)
    unsupported_keys: list[int] = field(default_factory=list)  # non-empty, not matched on
    ignored: list[int] = field(default_factory=list)  # no keys of the model (``is_ignored``)
    charset: list[str] | None = None  # the request's Specific Character Set, if any


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    return str(value)


def pending_status(request: MwlRequest) -> DimseStatus:
    """The status of each match of ``request`` (see the module notes)."""
    return DimseStatus.PENDING_WARNING if request.unsupported_keys else DimseStatus.PENDING


def _has_value(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return any(
            _has_value(sub) for item in elem.value for sub in item if not is_ignored(int(sub.tag))
        )
    if int(elem.tag) == PREGNANCY_STATUS_TAG and elem.value == 0:
        return False  # no Enumerated Value (1-4): dcmjs-dimse writes an empty US key as 0
    return _text(elem.value).strip() not in ("", "*")


def _collect(ds: Dataset, allowed: frozenset[str] | None, request: MwlRequest) -> None:
    for elem in ds:
        if is_ignored(int(elem.tag)):
            request.ignored.append(int(elem.tag))
            continue
        keyword = elem.keyword
        if elem.VR == "SQ":
            if elem.tag == SPS_SEQUENCE_TAG:
                continue
            if _has_value(elem):
                request.unsupported_keys.append(int(elem.tag))  # sequence matching: SPS only
            continue
        supported = keyword in SUPPORTED_MATCHING_KEYS and (allowed is None or keyword in allowed)
        if supported:
            request.keys[keyword] = _text(elem.value)
        elif int(elem.tag) not in _NOT_ANSWERED and _has_value(elem):
            request.unsupported_keys.append(int(elem.tag))


def parse_request(identifier: Dataset) -> MwlRequest:
    """Matching keys by keyword, plus the keys the broker does not match on.

    Query/Retrieve Level, private elements and group lengths are ignored (``is_ignored``).
    Raises ``InvalidQueryError`` for a Scheduled Procedure Step Sequence with several items.
    """
    request = MwlRequest()
    if "SpecificCharacterSet" in identifier:
        charset = identifier.SpecificCharacterSet
        request.charset = list(charset) if isinstance(charset, MultiValue) else [charset]
    top_level = frozenset(SUPPORTED_MATCHING_KEYS) - SPS_LEVEL_KEYS
    _collect(identifier, top_level, request)
    if SPS_SEQUENCE_TAG in identifier:
        items = identifier[SPS_SEQUENCE_TAG].value or []
        if len(items) > 1:
            raise InvalidQueryError(
                "ScheduledProcedureStepSequence: a query holds at most one item (C.2.2.2.6)",
                field="ScheduledProcedureStepSequence",
            )
        if items:
            _collect(items[0], SPS_LEVEL_KEYS, request)
    return request


# ---------------------------------------------------------------------------------------------
# Responses


def _json_value(vr: str, stored: dict[str, Any]) -> Any:
    values = stored.get("Value") or []
    if vr == "SQ":
        return values
    if vr == "PN":
        values = [pn_from_json(v) for v in values]
    if not values:
        return "" if vr in _TEXT_VRS else None  # zero length either way; "" for text VRs
    return values[0] if len(values) == 1 else values


def _vr_of(tag: int, stored: dict[str, Any] | None) -> str:
    if stored and stored.get("vr"):
        return str(stored["vr"])
    attribute = BY_TAG.get(tag)
    if attribute:
        return attribute.vr
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _full_dataset(item: JsonDataset) -> Dataset:
    ds = Dataset()
    for key, stored in item.items():
        tag = int(key, 16)
        vr = _vr_of(tag, stored)
        if vr == "SQ":
            ds.add(
                DataElement(
                    tag, vr, Sequence([_full_dataset(i) for i in stored.get("Value") or []])
                )
            )
        else:
            ds.add(DataElement(tag, vr, _json_value(vr, stored)))
    return ds


def _is_universal_sequence(requested: DataElement) -> bool:
    items = requested.value or []
    return not items or (len(items) == 1 and len(items[0]) == 0)


def _build_sequence(requested: DataElement, stored: dict[str, Any] | None) -> DataElement:
    tag = int(requested.tag)
    stored_items = (stored or {}).get("Value") or []
    if _is_universal_sequence(requested):
        return DataElement(tag, "SQ", Sequence([_full_dataset(i) for i in stored_items]))
    template = requested.value[0]
    sub_table: Table = _STEP_TABLE if tag == SPS_SEQUENCE_TAG else None
    return DataElement(tag, "SQ", Sequence([_reduce(template, i, sub_table) for i in stored_items]))


def _has_stored_value(stored: dict[str, Any] | None) -> bool:
    if not stored:
        return False
    values = stored.get("Value") or []
    return any(v not in (None, "", {}) for v in values)


def _answered(table: Table, tag: int, stored: dict[str, Any] | None) -> bool:
    """Whether a requested key goes into the response (PS3.5 7.4, PS3.4 K.2.2.1.2)."""
    if _has_stored_value(stored):
        return True
    attribute = table.get(tag) if table is not None else None
    if attribute is None:
        return stored is not None  # outside the table, or in other sequences: as carried
    if attribute.return_type in ("1", "2"):
        return True  # zero length when unknown
    if attribute.return_type == "2C":
        return stored is not None  # carried empty: the condition holds, value unknown
    return False  # 1C and 3 without a value: left out


def _reduce(template: Dataset, item: JsonDataset, table: Table) -> Dataset:
    """The stored ``item`` reduced to the keys of ``template`` that are answered."""
    out = Dataset()
    for requested in template:
        tag = int(requested.tag)
        if tag in _NOT_ANSWERED or is_ignored(tag):
            continue
        stored = item.get(f"{tag:08X}")
        if not _answered(table, tag, stored):
            continue
        vr = _vr_of(tag, stored)
        if vr == "SQ" or requested.VR == "SQ":
            out.add(_build_sequence(requested, stored))
        else:
            out.add(DataElement(tag, vr, _json_value(vr, stored or {})))
    return out


def _strings(ds: Dataset) -> list[str]:
    out: list[str] = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out.extend(_strings(item))
        elif isinstance(elem.value, str | PersonName):
            out.append(str(elem.value))
        elif isinstance(elem.value, MultiValue):
            out.extend(str(v) for v in elem.value)
    return out


# Terms for the default repertoire: ASCII only, although pydicom decodes them as Latin-1.
_DEFAULT_REPERTOIRE = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})


def _encodable(texts: list[str], charset: list[str]) -> bool:
    """Whether every text fits ``charset`` exactly, non-ASCII characters in its extended terms.

    pydicom only warns on unknown terms and decodes IR 6 as Latin-1, so both are checked here:
    an answer labelled with a set must really be encoded in it.
    """
    terms = [t.strip() for t in charset]
    if any(t and t not in python_encoding for t in terms):
        return False
    extended_terms = [t for t in terms if t not in _DEFAULT_REPERTOIRE]
    if not extended_terms:
        return False
    extended = convert_encodings(extended_terms)
    for char in {c for text in texts for c in text if not c.isascii()}:
        if not any(_encodes(char, codec) for codec in extended):
            return False
    encodings = convert_encodings(terms)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a substitution warning means the text does not fit
        for text in texts:
            try:
                if decode_bytes(encode_string(text, encodings), encodings, set()) != text:
                    return False
            except (UnicodeError, LookupError, ValueError, UserWarning):
                return False
    return True


def _encodes(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except (UnicodeError, LookupError):
        return False
    return True


def choose_charset(ds: Dataset, requested: list[str] | None) -> list[str] | None:
    """Specific Character Set for a response (PS3.4 K.4.1.1.3.2, SPEC_DIGEST 1.5).

    Pure ASCII needs none. Otherwise answer in the request's character set when every value
    fits it (so a Latin-1 modality gets Latin-1), else in UTF-8 (ISO_IR 192).
    """
    texts = [t for t in _strings(ds) if not t.isascii()]
    if not texts:
        return None
    if requested and _encodable(texts, requested):
        return requested
    return [UTF8]


def build_response(
    identifier: Dataset, item: JsonDataset, requested_charset: list[str] | None
) -> Dataset:
    """The response identifier for one matched item."""
    response = _reduce(identifier, item, _TOP_TABLE)
    charset = choose_charset(response, requested_charset)
    if charset:
        response.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    return response
