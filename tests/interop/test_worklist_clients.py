"""Worklist queries from clients nobody on the project wrote get the same, exact answers.

dcmjs-dimse's default worklist query (``CFindRequest.createWorklistFindRequest()``, run by
``dcmjs/worklist_find.mjs``) carries Query/Retrieve Level (0008,0052), attributes the worklist
model does not define and empty code sequences; the broker ignores what is no key of the model
and finds the items. DCMTK's ``findscu -W`` with private tags still matches. The same identifier
sent by dcmjs-dimse, findscu and pynetdicom brings back the same keys and values: Type 1C and 3
keys the item has no value for are left out, Type 2 keys come back empty.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmwrite
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.ci import IN_CI
from tests.support.items import mwl_item
from tests.support.tools import dimse_statuses, findscu, require_tool

pytestmark = pytest.mark.interop

DCMJS_DIR = Path(__file__).resolve().parent / "dcmjs"
SCRIPT = DCMJS_DIR / "worklist_find.mjs"
NODE_TIMEOUT = 90.0
HTTP_TIMEOUT = 10.0
PENDING, PENDING_WARNING, SUCCESS = 0xFF00, 0xFF01, 0x0000

# Two items, so a client that stops at the first response would be caught. The first carries
# code sequences (Type 1C with a value) and a Type 3 key; the second has none of them.
RICH = mwl_item(
    patient_id="CLIENTS-1",
    name="CLIENT^RICH",
    accession="ACC-C1",
    study_uid="1.2.826.0.1.3680043.10.543.21",
    sps_id="SPS-C1",
    extra={
        "00321064": {
            "vr": "SQ",
            "Value": [
                {
                    "00080100": {"vr": "SH", "Value": ["CTHEAD"]},
                    "00080102": {"vr": "SH", "Value": ["99LOCAL"]},
                    "00080104": {"vr": "LO", "Value": ["CT head without contrast"]},
                }
            ],
        },
        "00401002": {"vr": "LO", "Value": ["Headache"]},
        "00380010": {"vr": "LO", "Value": ["ADM-1"]},
    },
    step_extra={
        "00400008": {
            "vr": "SQ",
            "Value": [
                {
                    "00080100": {"vr": "SH", "Value": ["P1"]},
                    "00080102": {"vr": "SH", "Value": ["99LOCAL"]},
                    "00080104": {"vr": "LO", "Value": ["Head routine"]},
                }
            ],
        },
        "00400010": {"vr": "SH", "Value": ["CT ROOM 1"]},
    },
)
PLAIN = mwl_item(
    patient_id="CLIENTS-2",
    name="CLIENT^PLAIN",
    accession="ACC-C2",
    study_uid="1.2.826.0.1.3680043.10.543.22",
    sps_id="SPS-C2",
    time_="093000",
)
PLAIN["00321060"] = {"vr": "LO"}  # no Requested Procedure Description either (Type 1C)
ITEMS = {"CLIENTS-1": RICH, "CLIENTS-2": PLAIN}

Normal = dict[str, Any]


def require_dcmjs() -> str:
    node = require_tool("node")
    if not (DCMJS_DIR / "node_modules" / "dcmjs-dimse" / "package.json").is_file():
        message = (
            "dcmjs-dimse is not installed: run .ci/install-test-deps "
            "(npm ci --prefix tests/interop/dcmjs)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return node


@pytest.fixture(scope="module")
def posted(broker: BrokerProcess) -> dict[str, dict[str, Any]]:
    for item in ITEMS.values():
        response = httpx.post(
            f"{broker.base_url}/api/mwlitems",
            content=json.dumps(item),
            headers={**broker.headers, "Content-Type": "application/dicom+json"},
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 201, response.text
    return ITEMS


@pytest.fixture(scope="module")
def dcmjs_result(broker: BrokerProcess, posted: dict[str, Any]) -> dict[str, Any]:
    """dcmjs-dimse's default worklist query against the broker: request, statuses, matches."""
    command = [require_dcmjs(), str(SCRIPT), "--port", str(broker.dicom_port)]
    command += ["--called", BROKER_AE, "--calling", "DCMJS"]
    done = subprocess.run(
        command, cwd=DCMJS_DIR, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False
    )
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nbroker log:\n{broker.log()}"
    assert done.returncode == 0, report
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, report
    result: dict[str, Any] = json.loads(lines[0])
    return result


# ---------------------------------------------------------------------------------------------
# One comparable form for pydicom datasets and dcmjs "naturalized" objects: keyword -> text
# ("\\"-joined values, "" for zero length) or, for sequences with items, a list of such dicts.
# dcmjs shows any zero-length element as [], a sequence or not, so an empty sequence is "";
# it reads a zero-length binary integer (US: Pregnancy Status) as 0, so that 0 is "" too.
_BINARY_INTEGER_VRS = ("US", "SS", "UL", "SL")


def _pn_text(value: Any) -> str:
    if isinstance(value, dict):
        groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    return str(value)


def _dcmjs_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(_dcmjs_text(v) for v in value)
    if isinstance(value, dict):
        return _pn_text(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normal_dcmjs(obj: dict[str, Any]) -> Normal:
    out: Normal = {}
    for keyword, value in obj.items():
        if keyword == "_vrMap":
            continue
        is_list_of_objects = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        if value and is_list_of_objects and not any("Alphabetic" in v for v in value):
            out[keyword] = [normal_dcmjs(v) for v in value]  # a sequence, not person names
            continue
        if value == 0 and _vr(keyword) in _BINARY_INTEGER_VRS:
            value = None
        out[keyword] = _dcmjs_text(value)
    return out


def _vr(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return dictionary_VR(tag) if tag is not None else ""


def _pydicom_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(_pydicom_text(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    return str(value)


def normal_pydicom(ds: Dataset) -> Normal:
    out: Normal = {}
    for elem in ds:
        if elem.VR == "SQ":
            items = [normal_pydicom(item) for item in elem.value]
            out[elem.keyword] = items or ""
        else:
            out[elem.keyword] = _pydicom_text(elem.value)
    return out


def identifier_from_dcmjs(obj: dict[str, Any]) -> Dataset:
    """The dcmjs request as a pydicom identifier: the same keys, all zero length (dcmjs sends
    Pregnancy Status as US 0, which the broker takes as universal too)."""
    ds = Dataset()
    for keyword, value in obj.items():
        if keyword == "_vrMap":
            continue
        if isinstance(value, list):
            setattr(ds, keyword, Sequence([identifier_from_dcmjs(v) for v in value]))
        else:
            assert value in ("", None), f"{keyword}: the default request is all universal"
            setattr(ds, keyword, None)
    return ds


def by_patient(responses: list[Normal]) -> dict[str, Normal]:
    return {r["PatientID"]: r for r in responses}


# ---------------------------------------------------------------------------------------------


def test_dcmjs_default_worklist_query_finds_every_item(dcmjs_result: dict[str, Any]) -> None:
    request = dcmjs_result["request"]
    # The premise: dcmjs-dimse's default query carries keys outside the worklist model.
    assert "QueryRetrieveLevel" in request
    assert {"InstitutionName", "StudyID", "ProcedureCodeSequence"} <= set(request)
    assert dcmjs_result["statuses"] == [PENDING, PENDING, SUCCESS]
    found = by_patient([normal_dcmjs(m) for m in dcmjs_result["matches"]])
    assert set(found) == set(ITEMS)
    rich = found["CLIENTS-1"]
    assert rich["AccessionNumber"] == "ACC-C1"
    assert rich["StudyInstanceUID"] == "1.2.826.0.1.3680043.10.543.21"
    (step,) = rich["ScheduledProcedureStepSequence"]
    assert step["ScheduledProcedureStepID"] == "SPS-C1"
    assert step["ScheduledStationAETitle"] == "CT01"
    # Nothing the model does not define comes back.
    for absent in ("QueryRetrieveLevel", "InstitutionName", "StudyID", "ProcedureCodeSequence"):
        assert absent not in rich
    assert "AnatomicalOrientationType" not in step


def test_dcmjs_gets_return_keys_by_type(dcmjs_result: dict[str, Any]) -> None:
    found = by_patient([normal_dcmjs(m) for m in dcmjs_result["matches"]])
    rich, plain = found["CLIENTS-1"], found["CLIENTS-2"]
    # Type 1C with a value, and left out without one.
    assert rich["RequestedProcedureCodeSequence"] == [
        {
            "CodeValue": "CTHEAD",
            "CodingSchemeDesignator": "99LOCAL",
            "CodeMeaning": "CT head without contrast",
        }
    ]
    assert rich["RequestedProcedureDescription"] == "CT of the head"
    assert "RequestedProcedureCodeSequence" not in plain
    assert "RequestedProcedureDescription" not in plain
    assert "ScheduledProtocolCodeSequence" not in plain["ScheduledProcedureStepSequence"][0]
    assert (
        rich["ScheduledProcedureStepSequence"][0]["ScheduledProtocolCodeSequence"][0]["CodeValue"]
        == "P1"
    )
    # Type 3 with a value, and left out without one.
    assert rich["ReasonForTheRequestedProcedure"] == "Headache"
    assert "ReasonForTheRequestedProcedure" not in plain
    for type3 in ("StudyDate", "StudyTime", "PatientComments", "IssuerOfPatientID"):
        assert type3 not in plain
    # Type 2 without a value: zero length.
    assert plain["AdmissionID"] == "" and rich["AdmissionID"] == "ADM-1"
    for type2 in ("PatientWeight", "MedicalAlerts", "Allergies", "RequestedProcedurePriority"):
        assert plain[type2] == ""
    assert plain["ReferencedStudySequence"] == ""  # a zero-length sequence
    assert plain["ScheduledProcedureStepSequence"][0]["ScheduledStationName"] == ""
    assert rich["ScheduledProcedureStepSequence"][0]["ScheduledStationName"] == "CT ROOM 1"


def test_findscu_with_private_tags_still_matches(
    broker: BrokerProcess, posted: dict[str, Any], tmp_path: Path
) -> None:
    keys = ["PatientID=CLIENTS-2", "(0009,0010)=ACME", "(0009,1001)", "AccessionNumber"]
    keys += ["QueryRetrieveLevel=WORKLIST", "(0040,0100)[0].ScheduledProcedureStepID"]
    result = findscu(broker.dicom_port, BROKER_AE, tmp_path, keys=keys, debug=True)
    assert result.returncode == 0, result.output
    assert dimse_statuses(result.output) == [PENDING, SUCCESS]
    (response,) = result.responses
    assert normal_pydicom(response) == {
        "AccessionNumber": "ACC-C2",
        "PatientID": "CLIENTS-2",
        "ScheduledProcedureStepSequence": [{"ScheduledProcedureStepID": "SPS-C2"}],
    }


def test_dcmjs_findscu_and_pynetdicom_get_the_same_answers(
    broker: BrokerProcess, dcmjs_result: dict[str, Any], tmp_path: Path
) -> None:
    identifier = identifier_from_dcmjs(dcmjs_result["request"])
    assert "QueryRetrieveLevel" in identifier

    query_file = tmp_path / "dcmjs-default.dcm"
    dcmwrite(query_file, identifier, implicit_vr=False, little_endian=True)
    result = findscu(broker.dicom_port, BROKER_AE, tmp_path / "out", query_file=query_file)
    assert result.returncode == 0, result.output
    from_findscu = by_patient([normal_pydicom(r) for r in result.responses])

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", broker.dicom_port, ae_title=BROKER_AE)
    assert assoc.is_established
    try:
        answers = list(assoc.send_c_find(identifier, ModalityWorklistInformationFind))
    finally:
        assoc.release()
    assert [int(s.Status) for s, _ in answers] == [PENDING, PENDING, SUCCESS]
    from_pynetdicom = by_patient([normal_pydicom(ds) for _, ds in answers if ds is not None])

    from_dcmjs = by_patient([normal_dcmjs(m) for m in dcmjs_result["matches"]])
    assert set(from_dcmjs) == set(ITEMS)
    for patient_id in ITEMS:
        assert from_findscu[patient_id] == from_dcmjs[patient_id], patient_id
        assert from_pynetdicom[patient_id] == from_dcmjs[patient_id], patient_id
