"""Modality Worklist identifiers: request identifier -> query keys, item -> response identifier.

Responses are built by walking the *request* identifier (PS3.4 K.4.1.1.3.2: a response holds no
attribute that was not requested, except Specific Character Set), so each response carries
exactly the requested keys:

- a requested attribute the item has: its value;
- a requested attribute of the model the item lacks: zero length (Type 2 semantics);
- a requested attribute outside the model: left out, and the response is Pending with warning
  0xFF01 (as DCMTK's wlmscpfs does);
- a sequence requested with no item or one empty item: the whole stored sequence (universal);
  with keys in its item: each stored item reduced to those keys;
- the Scheduled Procedure Step Sequence: exactly one item, the matched step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
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
)
from app.domain.worklist import SPS_LEVEL_KEYS, SUPPORTED_MATCHING_KEYS

QUERY_RETRIEVE_LEVEL_TAG = 0x00080052
UTF8 = "ISO_IR 192"
_NOT_ANSWERED = frozenset({SPECIFIC_CHARACTER_SET_TAG, TIMEZONE_OFFSET_TAG})
_STEP_TAGS = frozenset(a.tag for a in STEP_ATTRIBUTES)
_TOP_TAGS = frozenset(t for t in BY_TAG if t not in _STEP_TAGS)
_TEXT_VRS = STRING_VRS | {"PN"}

Known = Callable[[int], bool]


@dataclass
class MwlRequest:
    """What the handler needs from one C-FIND identifier."""

    keys: dict[str, str] = field(default_factory=dict)
    unsupported_keys: list[int] = field(default_factory=list)  # non-empty, not matched on
    charset: list[str] | None = None  # the request's Specific Character Set, if any


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    return str(value)


def _has_value(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return any(_has_value(sub) for item in elem.value for sub in item)
    return _text(elem.value).strip() not in ("", "*")


def _collect(ds: Dataset, allowed: frozenset[str] | None, request: MwlRequest) -> None:
    for elem in ds:
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

    Raises ``InvalidQueryError`` for identifiers that do not fit the single-level MWL model.
    """
    if QUERY_RETRIEVE_LEVEL_TAG in identifier:
        raise InvalidQueryError(
            "Query/Retrieve Level is not part of the worklist model", field="QueryRetrieveLevel"
        )
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


def _build_sequence(
    requested: DataElement, stored: dict[str, Any] | None, known: Known
) -> tuple[DataElement, bool]:
    tag = int(requested.tag)
    stored_items = (stored or {}).get("Value") or []
    if _is_universal_sequence(requested):
        return DataElement(tag, "SQ", Sequence([_full_dataset(i) for i in stored_items])), False
    template = requested.value[0]
    sub_known: Known = (lambda t: t in _STEP_TAGS) if tag == SPS_SEQUENCE_TAG else (lambda _t: True)
    warn = False
    items = []
    for stored_item in stored_items:
        sub, sub_warn = _reduce(template, stored_item, sub_known)
        items.append(sub)
        warn = warn or sub_warn
    return DataElement(tag, "SQ", Sequence(items)), warn


def _reduce(template: Dataset, item: JsonDataset, known: Known) -> tuple[Dataset, bool]:
    """The stored ``item`` reduced to the keys of ``template``; True when a key was left out."""
    out = Dataset()
    warn = False
    for requested in template:
        tag = int(requested.tag)
        if tag in _NOT_ANSWERED:
            continue
        stored = item.get(f"{tag:08X}")
        if stored is None and not known(tag):
            warn = True
            continue
        vr = _vr_of(tag, stored)
        if vr == "SQ" or requested.VR == "SQ":
            elem, sub_warn = _build_sequence(requested, stored, known)
            warn = warn or sub_warn
            out.add(elem)
        else:
            out.add(DataElement(tag, vr, _json_value(vr, stored or {})))
    return out, warn


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
) -> tuple[Dataset, bool]:
    """The response identifier for one matched item, and whether a key was left out."""
    response, warn = _reduce(identifier, item, lambda t: t in _TOP_TAGS or t == SPS_SEQUENCE_TAG)
    charset = choose_charset(response, requested_charset)
    if charset:
        response.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    return response, warn
