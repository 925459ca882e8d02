"""Item validation and the MWL attribute table."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag

from app.domain.dicom_json import pn_from_json, pn_to_json, validate_json_dataset
from app.domain.errors import ValidationError
from app.domain.items import PatientData, item_from_json, validate_patient
from app.domain.mwl_attributes import MWL_ATTRIBUTES, TABLE_K6_1, Level, level_of
from app.domain.worklist import SUPPORTED_MATCHING_KEYS
from tests.support.items import mwl_item


@pytest.mark.parametrize("attribute", MWL_ATTRIBUTES, ids=lambda a: a.keyword)
def test_attribute_table_agrees_with_the_dicom_dictionary(attribute: Any) -> None:
    assert keyword_for_tag(attribute.tag) == attribute.keyword
    assert attribute.vr in dictionary_VR(attribute.tag)


def test_every_matching_key_is_a_model_attribute() -> None:
    keywords = {a.keyword for a in MWL_ATTRIBUTES}
    assert set(SUPPORTED_MATCHING_KEYS) <= keywords


def test_levels() -> None:
    assert level_of(0x00100010) is Level.PATIENT
    assert level_of(0x00080050) is Level.ORDER
    assert level_of(0x00099999) is Level.PROCEDURE  # unknown attributes stay with the procedure


def test_split_into_levels() -> None:
    item = mwl_item(
        extra={"00102000": {"vr": "LO", "Value": ["ALLERGIC"]}},
        step_extra={"00400012": {"vr": "LO", "Value": ["NONE"]}},
    )
    data = item_from_json(validate_json_dataset(item))
    assert data.patient.patient_id == "P1"
    assert data.patient.attributes == {"00102000": {"vr": "LO", "Value": ["ALLERGIC"]}}
    assert data.order.accession_number == "A1"
    assert data.procedure.study_instance_uid == "1.2.3.4.1"
    assert data.step.start_datetime == "20261201083000"
    assert data.step.station_ae_titles == ("CT01",)
    assert data.step.attributes == {"00400012": {"vr": "LO", "Value": ["NONE"]}}
    assert data.step.status is None  # not given: the service keeps or defaults it


def test_missing_identifiers_are_generated() -> None:
    item = mwl_item(study_uid=None)
    del item["00401001"]
    del item["00400100"]["Value"][0]["00400009"]
    data = item_from_json(item)
    assert data.procedure.study_instance_uid.startswith("2.25.")
    assert len(data.procedure.requested_procedure_id) <= 16
    assert data.step.sps_id.startswith("SPS") and len(data.step.sps_id) == 16


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda i: i.pop("00100020"), "PatientID"),
        (lambda i: i.pop("00100010"), "PatientName"),
        (lambda i: i["00400100"]["Value"][0].pop("00400001"), "ScheduledStationAETitle"),
        (lambda i: i["00400100"]["Value"][0].pop("00400002"), "ScheduledProcedureStepStartDate"),
        (lambda i: i["00400100"]["Value"][0].pop("00400003"), "ScheduledProcedureStepStartTime"),
        (lambda i: i["00400100"]["Value"][0].pop("00080060"), "Modality"),
        (
            lambda i: i.update({"00400100": {"vr": "SQ", "Value": []}}),
            "ScheduledProcedureStepSequence",
        ),
        (lambda i: i.update({"00100040": {"vr": "CS", "Value": ["X"]}}), "PatientSex"),
        (lambda i: i.update({"0020000D": {"vr": "UI", "Value": ["1.02.x"]}}), "StudyInstanceUID"),
        (lambda i: i.update({"00080050": {"vr": "SH", "Value": ["A" * 17]}}), "AccessionNumber"),
        (
            lambda i: i.update({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "D" * 65}]}}),
            "PatientName",
        ),
        (
            lambda i: i["00400100"]["Value"][0].update(
                {"00400006": {"vr": "PN", "Value": [{"Alphabetic": "X^" + "Y" * 63}]}}
            ),
            "ScheduledPerformingPhysicianName",
        ),
        (
            lambda i: i["00400100"]["Value"][0].update(
                {"00400001": {"vr": "AE", "Value": ["CTÄ"]}}
            ),
            "ScheduledStationAETitle",
        ),
        (
            lambda i: i["00400100"]["Value"][0].update(
                {"00400003": {"vr": "TM", "Value": ["2599"]}}
            ),
            "ScheduledProcedureStepStartTime",
        ),
        (
            lambda i: i["00400100"]["Value"][0].update(
                {"00400020": {"vr": "CS", "Value": ["DONE"]}}
            ),
            "ScheduledProcedureStepStatus",
        ),
    ],
)
def test_invalid_items_name_the_attribute(mutate: Any, field: str) -> None:
    item = mwl_item()
    mutate(item)
    with pytest.raises(ValidationError) as info:
        item_from_json(item)
    assert info.value.field == field


@pytest.mark.parametrize(
    "body",
    [[], {"0010": {"vr": "PN"}}, {"00100010": "x"}, {"00400100": {"vr": "SQ", "Value": [1]}}],
)
def test_malformed_json_is_refused(body: Any) -> None:
    with pytest.raises(ValidationError):
        validate_json_dataset(body)


def test_keys_are_upper_cased_at_every_depth() -> None:
    data = validate_json_dataset({"0040a100": {"vr": "SQ", "Value": [{"0008000d": {"vr": "UI"}}]}})
    assert data == {"0040A100": {"vr": "SQ", "Value": [{"0008000D": {"vr": "UI"}}]}}


def test_person_name_json_round_trip() -> None:
    value = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert pn_from_json(pn_to_json(value)) == value
    assert pn_to_json("DOE^JANE") == {"Alphabetic": "DOE^JANE"}


def test_table_k6_1_holds_every_kept_attribute_with_its_return_type() -> None:
    rows = {row.tag: row for row in TABLE_K6_1 if row.tag is not None}
    assert len(rows) == len([r for r in TABLE_K6_1 if r.tag is not None])  # no tag twice
    for attribute in MWL_ATTRIBUTES:
        row = rows[attribute.tag]
        assert row.return_type == attribute.return_type, attribute.keyword
        assert (row.depth == 1) == (attribute.level is Level.STEP), attribute.keyword
    assert rows[0x00400100].matching == "R"
    required = {row.name for row in TABLE_K6_1 if row.matching == "R"}
    assert len(required) == 8  # PS3.4 Table K.6-1: seven keys and the SPS Sequence


def test_a_person_name_may_have_64_characters_in_each_component_group() -> None:
    """PS3.5 Table 6.2-1: PN is 64 characters per component group, not in all."""
    longest = "=".join(["A" * 64] * 3)
    validate_patient(PatientData(patient_id="P1", name=longest))
    with pytest.raises(ValidationError) as info:
        validate_patient(PatientData(patient_id="P1", name=longest + "A"))
    assert info.value.field == "PatientName"
    assert "A" * 64 not in info.value.message  # a name is patient data: not in the message
