"""HL7 v2 data types -> DICOM values, and the PID segment both ADT and order messages carry.

XPN / XCN -> PN (component order differs: HL7 family^given^middle^suffix^prefix, DICOM
family^given^middle^prefix^suffix), TS / DT -> DA / ``YYYYMMDDHHMMSS``, CE -> Code Sequence item,
EI / CX issuer -> Issuer ... Sequence item, ERL locations for ERR. PID mapping per SPEC_DIGEST 3.4
(``adt_in_pid_dicom``): PID-3 -> Patient ID / Issuer, PID-5 -> Patient's Name, PID-7 -> Birth
Date, PID-8 -> Sex, further PID-3 repetitions -> Other Patient IDs Sequence.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from app.domain.dicom_json import JsonDataset, element
from app.domain.intake import descriptive_limit
from app.domain.items import PatientData
from app.domain.matching import normalize_person_name
from hl7_ingest.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    VALUE_TOO_LONG,
    FieldWarning,
    MessageError,
)
from hl7_ingest.parse import Hl7Message, Segment, Separators, pick

# PID-8 (HL7 table 0001) -> Patient's Sex (M, F, O or empty); SPEC_DIGEST 3.4 recommendation.
SEX_MAP = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}
_TS_RE = re.compile(r"^(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?(?:[+-]\d{4})?$")
_PN_GROUPS = {"A": 0, "I": 1, "P": 2}


def location(segment: str, sequence: int, field: int, *more: int) -> str:
    """An ERL ``SEG^seq^field[^rep^component]``, e.g. ``location("ORC", 1, 7, 1, 4)``."""
    return "^".join(str(p) for p in (segment, sequence, field, *more))


# ---------------------------------------------------------------------------------------------
# Values


def person_name(family: str, given: str, middle: str, suffix: str, prefix: str) -> str:
    """HL7 family/given/middle/suffix/prefix -> DICOM PN ``family^given^middle^prefix^suffix``."""
    return normalize_person_name("^".join((family, given, middle, prefix, suffix)))


def xpn_to_pn(raw_rep: str, seps: Separators) -> str:
    """One XPN repetition (family^given^middle^suffix^prefix) -> one PN component group.

    XPN-1 is FN in v2.5 (surname&own prefix...): its first subcomponent is the family name.
    """
    return person_name(*(pick(raw_rep, seps, c) for c in (1, 2, 3, 4, 5)))


def xcn_to_pn(raw_rep: str, seps: Separators) -> str:
    """One XCN repetition (id^family^given^middle^suffix^prefix) -> PN."""
    return person_name(*(pick(raw_rep, seps, c) for c in (2, 3, 4, 5, 6)))


def patient_name(pid: Segment) -> str:
    """PID-5 -> PN. The first repetition is the alphabetic group; a repetition whose XPN-8
    (name representation code) is ``I`` or ``P`` fills the ideographic or phonetic group.
    """
    groups = ["", "", ""]
    for raw in pid.repetitions(5):
        code = pick(raw, pid.seps, 8).upper()
        index = _PN_GROUPS.get(code, 0)
        if not groups[index]:
            groups[index] = xpn_to_pn(raw, pid.seps)
    return "=".join(groups).rstrip("=")


def hl7_date(value: str, where: str, what: str) -> str:
    """A DT/TS value -> DA ``YYYYMMDD`` (the first 8 characters); 102 when it is not a date."""
    if not value:
        return ""
    match = _TS_RE.match(value)
    if match and _is_date(match.group(1)):
        return match.group(1)
    raise MessageError(DATA_TYPE_ERROR, f"{what} '{value}' is not a date YYYYMMDD[HHMM[SS]]", where)


def hl7_datetime(value: str, where: str, what: str) -> str:
    """A TS value ``YYYYMMDD[HH[MM[SS[.S]]]][+ZZZZ]`` -> ``YYYYMMDDHHMMSS`` (offset dropped)."""
    match = _TS_RE.match(value)
    if match and _is_date(match.group(1)):
        hh, mm, ss = (g or "00" for g in match.group(2, 3, 4))
        if int(hh) <= 23 and int(mm) <= 59 and int(ss) <= 60:
            return f"{match.group(1)}{hh}{mm}{min(ss, '59')}"
    raise MessageError(
        DATA_TYPE_ERROR, f"{what} '{value}' is not a date/time YYYYMMDDHHMM[SS]", where
    )


def _is_date(text: str) -> bool:
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def fit_text(warnings: list[FieldWarning], keyword: str, text: str, where: str) -> str:
    """Free text for a descriptive attribute: one line, cut to its VR's length.

    A cut value is not an error (real RIS send 20-character station names): the message is
    accepted and ``warnings`` gets a 104 (value too long) at ``where`` for the ACK (ERR W).
    """
    value = " ".join(text.split())
    limit = descriptive_limit(keyword)
    if len(value) <= limit:
        return value
    warnings.append(
        FieldWarning(
            VALUE_TOO_LONG,
            f"{keyword} has {len(value)} characters, more than {limit}; stored cut to {limit}",
            where,
        )
    )
    return value[:limit]


def coded(value: str, scheme: str, meaning: str) -> dict[str, Any]:
    """A Code Sequence item (value 0008,0100 / scheme 0008,0102 / meaning 0008,0104)."""
    return {
        "00080100": element("SH", value),
        "00080102": element("SH", scheme),
        "00080104": element("LO", meaning[:64]),
    }


def issuer_item(namespace: str, universal_id: str = "", universal_type: str = "") -> JsonDataset:
    """An Issuer ... Sequence item: Local Namespace / Universal Entity ID / ID Type."""
    item: JsonDataset = {"00400031": element("UT", namespace)}
    if universal_id:
        item["00400032"] = element("UT", universal_id)
        item["00400033"] = element("CS", universal_type)
    return item


# ---------------------------------------------------------------------------------------------
# Patient


def pid_segment(msg: Hl7Message, *, sequence: int = 1) -> Segment:
    pids = msg.all("PID")
    if len(pids) < sequence:
        raise MessageError(SEGMENT_SEQUENCE, "the PID segment is missing", "PID^1")
    return pids[sequence - 1]


def _other_ids(pid: Segment) -> list[JsonDataset]:
    items = []
    for raw in pid.repetitions(3)[1:]:
        value = pick(raw, pid.seps, 1)
        if not value:
            continue
        item: JsonDataset = {"00100020": element("LO", value), "00100022": element("CS", "TEXT")}
        issuer = pick(raw, pid.seps, 4)
        if issuer:
            item["00100021"] = element("LO", issuer)
        items.append(item)
    return items


def patient_from_pid(
    pid: Segment, *, require_id: bool, require_name: bool, sequence: int = 1
) -> PatientData:
    """PID -> PatientData; PID-3 / PID-5 missing -> 101 when required, bad PID-7 -> 102."""
    seps = pid.seps
    first_id = pid.repetitions(3)[:1]
    patient_id = pick(first_id[0], seps, 1) if first_id else ""
    if require_id and not patient_id:
        raise MessageError(
            REQUIRED_FIELD_MISSING, "PID-3 Patient ID is missing", location("PID", sequence, 3)
        )
    name = patient_name(pid)
    if require_name and not name:
        raise MessageError(
            REQUIRED_FIELD_MISSING, "PID-5 Patient Name is missing", location("PID", sequence, 5)
        )
    attributes: JsonDataset = {}
    if first_id:
        universal_id = pick(first_id[0], seps, 4, 2)
        if universal_id:
            qualifiers: JsonDataset = {
                "00400032": element("UT", universal_id),
                "00400033": element("CS", pick(first_id[0], seps, 4, 3)),
            }
            attributes["00100024"] = {"vr": "SQ", "Value": [qualifiers]}
    others = _other_ids(pid)
    if others:
        attributes["00101002"] = {"vr": "SQ", "Value": others}
    return PatientData(
        patient_id=patient_id,
        name=name,
        issuer_of_patient_id=pick(first_id[0], seps, 4) if first_id else "",
        birth_date=hl7_date(pid.get(7), location("PID", sequence, 7), "PID-7 Date of Birth"),
        sex=SEX_MAP.get(pid.get(8).upper(), ""),
        attributes=attributes,
    )
