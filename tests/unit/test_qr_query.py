"""Q/R identifiers (PS3.4 C.4.1.2.2.1 hierarchical query, C.2.2.2 matching, C.6 key tables)."""

from __future__ import annotations

import pytest

from app.domain.errors import InvalidQueryError
from app.domain.qr import QrLevel, QrModel, QrQuery, parse_query

LEVEL = "00080052"
PATIENT_ID = "00100020"
PATIENT_NAME = "00100010"
STUDY_UID = "0020000D"
STUDY_DATE = "00080020"
STUDY_TIME = "00080030"
SERIES_UID = "0020000E"
SOP_UID = "00080018"
MODALITY = "00080060"
PATIENT_STUDIES = "00201200"


def q(model: QrModel, keys: dict[str, str], *, retrieve: bool = False, ci: bool = True) -> QrQuery:
    return parse_query(model, keys, name_case_insensitive=ci, retrieve=retrieve)


@pytest.mark.parametrize("level", ["", "WORKLIST", "FRAME"])
def test_level_must_be_one_of_the_four(level: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        q(QrModel.STUDY_ROOT, {LEVEL: level})
    assert caught.value.field == "QueryRetrieveLevel"


def test_study_root_has_no_patient_level() -> None:
    with pytest.raises(InvalidQueryError):
        q(QrModel.STUDY_ROOT, {LEVEL: "PATIENT"})
    assert q(QrModel.PATIENT_ROOT, {LEVEL: "patient "}).level is QrLevel.PATIENT


@pytest.mark.parametrize("value", ["", "1.2.3\\1.2.4", "1.2.*"])
def test_unique_keys_above_the_level_need_a_single_value(value: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        q(QrModel.STUDY_ROOT, {LEVEL: "SERIES", STUDY_UID: value})
    assert caught.value.field == "StudyInstanceUID"


def test_patient_root_needs_the_patient_id_below_the_patient_level() -> None:
    with pytest.raises(InvalidQueryError) as caught:
        q(QrModel.PATIENT_ROOT, {LEVEL: "STUDY", STUDY_UID: ""})
    assert caught.value.field == "PatientID"
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", STUDY_UID: ""})
    assert query.conditions == ()  # Study Root needs no patient key


def test_retrieve_needs_the_unique_key_of_its_level_and_accepts_a_uid_list() -> None:
    with pytest.raises(InvalidQueryError):
        q(QrModel.STUDY_ROOT, {LEVEL: "STUDY"}, retrieve=True)
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", STUDY_UID: "1.2\\1.3"}, retrieve=True)
    [condition] = query.conditions
    assert condition.uids == ("1.2", "1.3")
    assert condition.matches("1.3") and not condition.matches("1.4")


def test_keys_below_the_level_are_ignored_and_counts_only_in_their_model() -> None:
    query = q(
        QrModel.STUDY_ROOT,
        {LEVEL: "STUDY", STUDY_UID: "", MODALITY: "CT", PATIENT_STUDIES: "", SOP_UID: ""},
    )
    assert query.requested == (STUDY_UID,)
    assert query.conditions == ()
    patient = q(QrModel.PATIENT_ROOT, {LEVEL: "PATIENT", PATIENT_ID: "", PATIENT_STUDIES: ""})
    assert patient.requested == (PATIENT_ID, PATIENT_STUDIES)


def test_values_on_return_keys_and_unknown_attributes_are_unsupported() -> None:
    query = q(
        QrModel.STUDY_ROOT,
        {LEVEL: "STUDY", "00201208": "5", "00081080": "headache", "00081090": ""},
    )
    assert query.unsupported == ("00201208", "00081080")
    assert query.requested == ("00201208", "00081080", "00081090")


def test_universal_values_make_no_condition() -> None:
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", PATIENT_NAME: "*", STUDY_DATE: "", MODALITY: ""})
    assert query.conditions == ()


def test_wildcard_and_case_insensitive_names() -> None:
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", PATIENT_NAME: "doe^j*"})
    [condition] = query.conditions
    assert condition.matches("DOE^JANE")
    assert not condition.matches("ROE^JANE")
    assert not condition.matches("")
    strict = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", PATIENT_NAME: "doe^j*"}, ci=False)
    assert not strict.conditions[0].matches("DOE^JANE")


def test_text_wildcards_and_empty_stored_values() -> None:
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", "00080050": "AC?1*"})
    [condition] = query.conditions
    assert condition.matches("ACC1") and condition.matches("ACX12")
    assert not condition.matches("AC1") and not condition.matches("")


def test_date_and_time_ranges() -> None:
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", STUDY_DATE: "20260101-20260131",
                                   STUDY_TIME: "0800-1200"})  # fmt: skip
    date, time = query.conditions
    assert date.matches("20260115") and not date.matches("20260201")
    assert time.matches("1130") and time.matches("120059.5")
    assert not time.matches("1201") and not time.matches("garbage")


def test_bad_dates_are_refused_with_their_field() -> None:
    with pytest.raises(InvalidQueryError) as caught:
        q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", STUDY_DATE: "2026-01-01"})
    assert caught.value.field == "StudyDate"


def test_modalities_in_study_matches_any_stored_value() -> None:
    query = q(QrModel.STUDY_ROOT, {LEVEL: "STUDY", "00080061": "MR"})
    [condition] = query.conditions
    assert condition.matches(["CT", "MR"]) and not condition.matches(["CT"])
