"""Items POSTed as DICOM JSON come back to DCMTK findscu exactly: keys, values, names, charsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.items import mwl_item
from tests.support.tools import findscu

pytestmark = pytest.mark.interop

LATIN1_NAME = "MÜLLER^JOSÉ"
GREEK_NAME = "ΔΙΟΝΥΣΙΟΥ^ΑΛΕΞΑΝΔΡΟΣ"
JAPANESE_NAME = {
    "Alphabetic": "YAMADA^TARO",
    "Ideographic": "山田^太郎",
    "Phonetic": "やまだ^たろう",
}
JAPANESE_PN = "YAMADA^TARO=山田^太郎=やまだ^たろう"

ITEMS: dict[str, dict[str, Any]] = {
    "INTEROP-L1": mwl_item(
        patient_id="INTEROP-L1",
        name=LATIN1_NAME,
        accession="ACC-L1",
        study_uid="1.2.826.0.1.3680043.10.543.1",
        sps_id="SPS-L1",
        station=["CT01", "CT02"],
        date="20261201",
        time_="083000",
    ),
    "INTEROP-EL": mwl_item(
        patient_id="INTEROP-EL",
        name=GREEK_NAME,
        accession="ACC-EL",
        study_uid="1.2.826.0.1.3680043.10.543.2",
        sps_id="SPS-EL",
        modality="MR",
        date="20261202",
        time_="101500",
        sex="M",
    ),
    "INTEROP-JA": mwl_item(
        patient_id="INTEROP-JA",
        name=JAPANESE_NAME,
        accession="ACC-JA",
        study_uid="1.2.826.0.1.3680043.10.543.3",
        sps_id="SPS-JA",
        modality="US",
        date="20261203",
        time_="140000",
        sex="M",
    ),
}
EXPECTED_NAMES = {"INTEROP-L1": LATIN1_NAME, "INTEROP-EL": GREEK_NAME, "INTEROP-JA": JAPANESE_PN}

# Requested keys -> expected value ("" = zero length: Type 2 attributes these items lack).
TOP_KEYS: dict[str, str] = {
    "PatientName": "<name>",
    "PatientID": "<pid>",
    "PatientBirthDate": "19800101",
    "PatientSex": "<sex>",
    "AccessionNumber": "<accession>",
    "StudyInstanceUID": "<study_uid>",
    "RequestedProcedureID": "RP1",
    "RequestedProcedureDescription": "CT of the head",
    "MedicalAlerts": "",
}
STEP_KEYS: dict[str, str] = {
    "ScheduledStationAETitle": "<station>",
    "ScheduledProcedureStepStartDate": "<date>",
    "ScheduledProcedureStepStartTime": "<time>",
    "Modality": "<modality>",
    "ScheduledPerformingPhysicianName": "HOUSE^GREGORY",
    "ScheduledProcedureStepDescription": "CT HEAD",
    "ScheduledProcedureStepID": "<sps_id>",
    "ScheduledStationName": "",
    "ScheduledProcedureStepLocation": "",
}


@pytest.fixture(scope="module")
def posted(broker: BrokerProcess) -> dict[str, dict[str, Any]]:
    for item in ITEMS.values():
        response = httpx.post(
            f"{broker.base_url}/api/mwlitems",
            json=item,
            headers={**broker.headers, "content-type": "application/dicom+json"},
            timeout=10.0,
        )
        assert response.status_code == 201, response.text
    return ITEMS


def _keys(patient_id: str, *, charset: str | None = None) -> list[str]:
    keys = [k if k != "PatientID" else f"PatientID={patient_id}" for k in TOP_KEYS]
    keys += [f"(0040,0100)[0].{k}" for k in STEP_KEYS]
    if charset:
        keys.append(f"(0008,0005)={charset}")
    return keys


def _value(item: dict[str, Any], key: str) -> list[str]:
    values = item.get(key, {}).get("Value", [])
    return [str(v) for v in values]


def _expected(pid: str) -> tuple[dict[str, str], dict[str, str]]:
    item = ITEMS[pid]
    step = item["00400100"]["Value"][0]
    fill = {
        "<name>": EXPECTED_NAMES[pid],
        "<pid>": pid,
        "<sex>": _value(item, "00100040")[0],
        "<accession>": _value(item, "00080050")[0],
        "<study_uid>": _value(item, "0020000D")[0],
        "<station>": "\\".join(_value(step, "00400001")),
        "<date>": _value(step, "00400002")[0],
        "<time>": _value(step, "00400003")[0],
        "<modality>": _value(step, "00080060")[0],
        "<sps_id>": _value(step, "00400009")[0],
    }
    top = {k: fill.get(v, v) for k, v in TOP_KEYS.items()}
    steps = {k: fill.get(v, v) for k, v in STEP_KEYS.items()}
    return top, steps


def _text(ds: Dataset, keyword: str) -> str:
    elem = ds[Tag(keyword)]
    if elem.VM == 0 or elem.value is None:
        return ""
    if elem.VM > 1:
        return "\\".join(str(v) for v in elem.value)
    return str(elem.value)


def _assert_exact_keys(ds: Dataset, expected: dict[str, str]) -> None:
    """``ds`` holds exactly the ``expected`` keys with their values ("" = zero length)."""
    present = {elem.keyword for elem in ds}
    assert present == set(expected), f"unrequested or missing keys: {present ^ set(expected)}"
    for keyword, value in expected.items():
        assert _text(ds, keyword) == value, keyword
        if value == "":
            assert ds[Tag(keyword)].is_empty, f"{keyword} must be zero length"


@pytest.mark.parametrize("patient_id", list(ITEMS))
def test_each_requested_key_comes_back_with_its_value_and_nothing_else(
    broker: BrokerProcess, posted: dict[str, Any], patient_id: str, tmp_path: Path
) -> None:
    result = findscu(broker.dicom_port, BROKER_AE, tmp_path, keys=_keys(patient_id))
    assert result.returncode == 0, result.output
    assert len(result.responses) == 1, result.output
    response = result.responses[0]
    top, step_keys = _expected(patient_id)
    top_level = Dataset()
    for elem in response:
        if elem.keyword not in ("SpecificCharacterSet", "ScheduledProcedureStepSequence"):
            top_level.add(elem)
    _assert_exact_keys(top_level, top)
    assert "ScheduledProcedureStepSequence" in response
    assert len(response.ScheduledProcedureStepSequence) == 1
    _assert_exact_keys(response.ScheduledProcedureStepSequence[0], step_keys)
    # No request charset: plain ASCII needs none, anything else is answered in UTF-8.
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == EXPECTED_NAMES[patient_id]


def test_a_latin1_request_gets_latin1_when_the_item_fits_and_utf8_otherwise(
    broker: BrokerProcess, posted: dict[str, Any], tmp_path: Path
) -> None:
    expected_charsets = {
        "INTEROP-L1": "ISO_IR 100",
        "INTEROP-EL": "ISO_IR 192",
        "INTEROP-JA": "ISO_IR 192",
    }
    keys = ["PatientName", "PatientID=INTEROP-*", "(0008,0005)=ISO_IR 100"]
    result = findscu(broker.dicom_port, BROKER_AE, tmp_path, keys=keys)
    assert result.returncode == 0, result.output
    got = {str(r.PatientID): (r.SpecificCharacterSet, str(r.PatientName)) for r in result.responses}
    assert got == {pid: (expected_charsets[pid], EXPECTED_NAMES[pid]) for pid in ITEMS}
    raw = (tmp_path / "rsp0001.dcm").read_bytes() + (tmp_path / "rsp0002.dcm").read_bytes()
    raw += (tmp_path / "rsp0003.dcm").read_bytes()
    assert LATIN1_NAME.encode("latin-1") in raw  # really Latin-1 on the wire, not UTF-8
