"""The C-FIND fast path answers byte for byte what the reference path answers.

Reference: ``mwl.build_response`` encoded by pynetdicom's own ``dsutils.encode``, as the broker
sent it before the fast path. Generated items (values or not, non-ASCII names, sequences, extra
attributes) and generated request identifiers (return keys, universal and keyed sequences,
ignored elements, character sets), in every transfer syntax the listener accepts; each cached
item answers several identifiers, so answers cached for one request are reused by the next.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import encode

from dicom_scp import mwl
from dicom_scp.mwl_encoded import EncodedItem, ResponsePlan, Syntax, encode_response

SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]
NAMES = [
    "DOE^JANE",
    "MÜLLER^JOSÉ",
    "Ψυχάρης^Γιάννης",
    "ŁUKASZ^ŻÓŁW",
    "",
    "O'NEIL^SEÁN^^DR",
]
IDEOGRAPHIC = {
    "Alphabetic": "YAMADA^TAROU",
    "Ideographic": "山田^太郎",
    "Phonetic": "やまだ^たろう",
}
CHARSETS: list[Any] = [
    None,
    "ISO_IR 100",
    "ISO_IR 126",
    "ISO_IR 192",
    "ISO_IR 148",
    ["", "ISO 2022 IR 87"],
    "",
    "NOT A CHARSET",
]
TEXT = st.text(alphabet="ABCDEFGH xyz019-éüßΣ", max_size=12).map(str.strip)


def _el(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _maybe(draw: st.DrawFn, key: str, value: dict[str, Any], out: dict[str, Any]) -> None:
    choice = draw(st.sampled_from(["value", "empty", "absent"]))
    if choice == "value":
        out[key] = value
    elif choice == "empty":
        out[key] = {"vr": value["vr"]}


def _code(value: str, meaning: str) -> dict[str, Any]:
    return {
        "00080100": _el("SH", value),
        "00080102": _el("SH", "99LOCAL"),
        "00080104": _el("LO", meaning),
    }


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from([*NAMES, "IDEOGRAPHIC"]))
    pn = IDEOGRAPHIC if name == "IDEOGRAPHIC" else {"Alphabetic": name}
    stations = draw(st.lists(st.sampled_from(["CT01", "CT02", "MR1"]), min_size=1, max_size=2))
    step: dict[str, Any] = {
        "00400001": _el("AE", *stations),
        "00400002": _el("DA", "20261201"),
        "00400003": _el("TM", draw(st.sampled_from(["083000", "0830", "235959"]))),
        "00080060": _el("CS", draw(st.sampled_from(["CT", "MR"]))),
        "00400009": _el("SH", "SPS1"),
    }
    _maybe(draw, "00400006", _el("PN", {"Alphabetic": draw(st.sampled_from(NAMES))}), step)
    _maybe(draw, "00400007", _el("LO", draw(TEXT)), step)
    _maybe(draw, "00400010", _el("SH", draw(TEXT)), step)
    _maybe(draw, "00400020", _el("CS", "SCHEDULED"), step)
    _maybe(draw, "00400008", {"vr": "SQ", "Value": [_code("P1", draw(TEXT))]}, step)
    item: dict[str, Any] = {
        "00100010": _el("PN", pn) if name else {"vr": "PN"},
        "00100020": _el("LO", "P1"),
        "00401001": _el("SH", "RP1"),
        "0020000D": _el("UI", "1.2.3.4.5"),
        "00400100": {"vr": "SQ", "Value": [step]},
    }
    _maybe(draw, "00100030", _el("DA", "19800101"), item)
    _maybe(draw, "00100040", _el("CS", draw(st.sampled_from(["F", "M", "O"]))), item)
    _maybe(draw, "00080050", _el("SH", draw(TEXT)), item)
    _maybe(draw, "00321060", _el("LO", draw(TEXT)), item)
    _maybe(draw, "00080090", _el("PN", {"Alphabetic": draw(st.sampled_from(NAMES))}), item)
    _maybe(draw, "001021C0", _el("US", 4), item)
    _maybe(draw, "00102160", _el("SH", draw(TEXT)), item)  # outside the model's table
    _maybe(draw, "00401002", _el("LO", draw(TEXT)), item)
    codes = draw(st.lists(st.sampled_from(["A", "B"]), max_size=2))
    if codes:
        item["00321064"] = {"vr": "SQ", "Value": [_code(c, draw(TEXT)) for c in codes]}
    return dict(sorted(item.items()))


TOP_KEYS = [
    ("PatientName", "PN"),
    ("PatientID", "LO"),
    ("PatientBirthDate", "DA"),
    ("PatientSex", "CS"),
    ("AccessionNumber", "SH"),
    ("StudyInstanceUID", "UI"),
    ("RequestedProcedureID", "SH"),
    ("RequestedProcedureDescription", "LO"),
    ("ReferringPhysicianName", "PN"),
    ("EthnicGroup", "SH"),
    ("ReasonForTheRequestedProcedure", "LO"),
    ("PregnancyStatus", "US"),
    ("AdmissionID", "LO"),
]
STEP_KEYS = [
    ("ScheduledStationAETitle", "AE"),
    ("ScheduledProcedureStepStartDate", "DA"),
    ("ScheduledProcedureStepStartTime", "TM"),
    ("Modality", "CS"),
    ("ScheduledPerformingPhysicianName", "PN"),
    ("ScheduledProcedureStepDescription", "LO"),
    ("ScheduledStationName", "SH"),
    ("ScheduledProcedureStepID", "SH"),
    ("ScheduledProcedureStepStatus", "CS"),
    ("ScheduledProcedureStepLocation", "SH"),
]


def _code_template(draw: st.DrawFn) -> list[Dataset]:
    shape = draw(st.sampled_from(["none", "empty item", "keys"]))
    if shape == "none":
        return []
    item = Dataset()
    if shape == "keys":
        for keyword in draw(st.sets(st.sampled_from(["CodeValue", "CodeMeaning"]), min_size=1)):
            setattr(item, keyword, "")
    return [item]


@st.composite
def identifiers(draw: st.DrawFn) -> Dataset:
    ds = Dataset()
    charset = draw(st.sampled_from(CHARSETS))
    if charset is not None:
        ds.SpecificCharacterSet = charset
    for keyword, vr in draw(st.lists(st.sampled_from(TOP_KEYS), unique=True, max_size=10)):
        setattr(ds, keyword, None if vr == "US" else "")
    if draw(st.booleans()):
        ds.RequestedProcedureCodeSequence = _code_template(draw)
    if draw(st.booleans()):
        ds.QueryRetrieveLevel = "WORKLIST"  # ignored
    if draw(st.booleans()):
        ds.add(DataElement(0x00090010, "LO", "PRIVATE"))  # ignored
    shape = draw(st.sampled_from(["absent", "no item", "empty item", "keys"]))
    if shape != "absent":
        items_: list[Dataset] = []
        if shape != "no item":
            step = Dataset()
            if shape == "keys":
                chosen = draw(st.lists(st.sampled_from(STEP_KEYS), unique=True, min_size=1))
                for keyword, _vr in chosen:
                    setattr(step, keyword, "")
                if draw(st.booleans()):
                    step.ScheduledProtocolCodeSequence = _code_template(draw)
            items_.append(step)
        ds.ScheduledProcedureStepSequence = items_
    return ds


def _reference(identifier: Dataset, item: dict[str, Any], syntax: str) -> bytes:
    request = mwl.parse_request(identifier)
    response = mwl.build_response(identifier, item, request.charset)
    ts = Syntax.of(syntax)
    encoded = encode(response, ts.implicit_vr, ts.little_endian, ts.deflated)
    assert encoded is not None
    return encoded


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(items(), min_size=1, max_size=3),
    st.lists(identifiers(), min_size=1, max_size=3),
    st.sampled_from(SYNTAXES),
)
def test_encoded_responses_equal_the_reference(
    items_: list[dict[str, Any]], identifiers_: list[Dataset], syntax: str
) -> None:
    entries = [EncodedItem(item) for item in items_]
    for identifier in identifiers_:
        request = mwl.parse_request(identifier)
        plan = ResponsePlan(identifier, request.charset)
        for entry in entries:
            fast = encode_response(plan, entry, Syntax.of(syntax))
            assert fast == _reference(identifier, entry.item, syntax)


def test_a_non_ascii_key_switches_the_whole_response_to_its_charset() -> None:
    """The character set is chosen over all answered keys, whichever element brings the
    non-ASCII text, and cached ASCII elements are re-encoded under it."""
    item = {
        "00100010": _el("PN", {"Alphabetic": "MÜLLER^JOSÉ"}),
        "00100020": _el("LO", "P1"),
    }
    entry = EncodedItem(item)
    ascii_only = Dataset()
    ascii_only.PatientID = ""
    both = Dataset()
    both.SpecificCharacterSet = "ISO_IR 100"
    both.PatientID = ""
    both.PatientName = ""
    for identifier in (ascii_only, both, ascii_only):
        request = mwl.parse_request(identifier)
        plan = ResponsePlan(identifier, request.charset)
        syntax = Syntax.of(ExplicitVRLittleEndian)
        fast = encode_response(plan, entry, syntax)
        assert fast == _reference(identifier, item, ExplicitVRLittleEndian)
    assert b"ISO_IR 100" in encode_response(plan_of(both), entry, syntax)


def plan_of(identifier: Dataset) -> ResponsePlan:
    return ResponsePlan(identifier, mwl.parse_request(identifier).charset)
