"""Helpers for the DICOM JSON model (PS3.18 Annex F) used as the broker's plain item format.

A worklist item is a ``dict`` from eight-hex-digit tag to ``{"vr": ..., "Value": [...]}``; PN
values are objects with ``Alphabetic``/``Ideographic``/``Phonetic`` groups; sequences hold lists of
such dicts. This is plain JSON, so it crosses from adapters into services without protocol types.
"""

from __future__ import annotations

from typing import Any

from app.domain.errors import ValidationError

JsonDataset = dict[str, dict[str, Any]]

PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)


def tag_key(tag: int) -> str:
    return f"{tag:08X}"


def pn_to_json(value: str) -> dict[str, str]:
    """``Family^Given=山田^太郎`` to ``{"Alphabetic": ..., "Ideographic": ...}``."""
    groups = value.split("=")
    return {name: part for name, part in zip(PN_GROUPS, groups, strict=False) if part}


def pn_from_json(value: Any) -> str:
    if isinstance(value, str):  # tolerated: some producers send PN as a plain string
        return value
    if not isinstance(value, dict):
        raise ValidationError(f"a PN value is an object with {', '.join(PN_GROUPS)}")
    groups = [str(value.get(name, "")) for name in PN_GROUPS]
    return "=".join(groups).rstrip("=")


def element(vr: str, *values: Any) -> dict[str, Any]:
    """A DICOM JSON element; PN strings become PN objects; no values means zero length."""
    present = [v for v in values if v not in (None, "")]
    if not present:
        return {"vr": vr}
    if vr == "PN":
        present = [pn_to_json(v) if isinstance(v, str) else v for v in present]
    return {"vr": vr, "Value": present}


def values_of(item: JsonDataset, key: str) -> list[Any]:
    elem = item.get(key)
    if not elem:
        return []
    return list(elem.get("Value") or [])


def strings_of(item: JsonDataset, key: str) -> list[str]:
    """All values of a text or PN element as strings (PN in its ``A=I=P`` form)."""
    elem = item.get(key)
    if not elem:
        return []
    vr = elem.get("vr", "")
    out = []
    for value in elem.get("Value") or []:
        if value is None:
            continue
        out.append(pn_from_json(value) if vr == "PN" else str(value))
    return out


def string_of(item: JsonDataset, key: str) -> str:
    """The first value as a stripped string, or ``""`` when absent or empty."""
    values = strings_of(item, key)
    return values[0].strip() if values else ""


def sequence_items(item: JsonDataset, key: str) -> list[JsonDataset]:
    return [v for v in values_of(item, key) if isinstance(v, dict)]


def validate_json_dataset(data: Any, path: str = "") -> JsonDataset:
    """Check the shape of a DICOM JSON object and upper-case its keys, at every depth.

    Raises ``ValidationError`` naming the bad place (``00400100[0].00400001``).
    """
    if not isinstance(data, dict):
        raise ValidationError(f"{path or 'body'}: a DICOM JSON object is expected")
    out: JsonDataset = {}
    for key, elem in data.items():
        where = f"{path}{key}"
        if len(key) != 8 or any(c not in "0123456789abcdefABCDEF" for c in key):
            raise ValidationError(f"{where}: keys are eight hex digits (PS3.18 F.2.1)")
        if not isinstance(elem, dict) or not isinstance(elem.get("vr"), str):
            raise ValidationError(f"{where}: each element is an object with a 'vr'")
        value = elem.get("Value")
        if value is not None and not isinstance(value, list):
            raise ValidationError(f"{where}: 'Value' is an array")
        if elem["vr"] == "SQ" and value:
            elem = {
                "vr": "SQ",
                "Value": [
                    validate_json_dataset(sub, f"{where}[{i}].") for i, sub in enumerate(value)
                ],
            }
        out[key.upper()] = elem
    return out
