"""Matching rules of PS3.4 C.2.2.2 / K.2.2, one edge at a time."""

from __future__ import annotations

from typing import ClassVar

import pytest

from app.domain.errors import InvalidQueryError
from app.domain.matching import (
    NameKey,
    Range,
    TextKey,
    combine_date_time,
    normalize_person_name,
    normalize_time,
    parse_date_range,
    parse_time_range,
    parse_uid_list,
    wildcard_regex,
)
from app.domain.worklist import WorklistRecord, parse_worklist_query


def record(**overrides: object) -> WorklistRecord:
    values: dict[str, object] = {
        "station_ae_titles": ("CT01",),
        "start_datetime": "20261201083000",
        "modality": "CT",
        "performing_physician": "HOUSE^GREGORY",
        "sps_id": "SPS1",
        "sps_status": "SCHEDULED",
        "patient_name": "DOE^JANE",
        "patient_id": "P1",
        "birth_date": "19800101",
        "sex": "F",
        "accession_number": "A1",
        "requested_procedure_id": "RP1",
        "study_instance_uid": "1.2.3",
    }
    values.update(overrides)
    return WorklistRecord(**values)  # type: ignore[arg-type]


def matches(keys: dict[str, str], **overrides: object) -> bool:
    return parse_worklist_query(keys).matches(record(**overrides))


class TestWildcards:
    @pytest.mark.parametrize(
        ("pattern", "value", "expected"),
        [
            ("CT*", "CT01", True),
            ("CT*", "CT", True),  # * matches the empty run
            ("C?01", "CT01", True),
            ("C?01", "C01", False),  # ? is exactly one character
            ("C?01", "CTT01", False),
            ("*01", "MR01", True),
            ("a.b", "axb", False),  # regex metacharacters are literal
            ("a+", "aa", False),
        ],
    )
    def test_wildcard_regex(self, pattern: str, value: str, expected: bool) -> None:
        assert bool(wildcard_regex(pattern).fullmatch(value)) is expected

    def test_star_alone_is_universal(self) -> None:
        assert TextKey.parse("*") is None
        assert matches({"Modality": "*"}, modality="")  # even an empty stored value

    def test_text_match_is_case_sensitive(self) -> None:
        assert not matches({"Modality": "ct"})
        assert not matches({"Modality": "c*"})

    def test_padding_spaces_are_not_significant(self) -> None:
        assert matches({"PatientID": " P1 "})


class TestEmptyStoredValues:
    """A non-empty key never matches an entity whose value is empty (K.2.2.1.1.1)."""

    @pytest.mark.parametrize(
        ("keys", "field"),
        [
            ({"AccessionNumber": "A*"}, {"accession_number": ""}),
            ({"AccessionNumber": "?"}, {"accession_number": ""}),
            ({"PatientSex": "F"}, {"sex": ""}),
            ({"PatientBirthDate": "-20000101"}, {"birth_date": ""}),
            ({"ScheduledPerformingPhysicianName": "*HOUSE*"}, {"performing_physician": ""}),
        ],
    )
    def test_non_empty_key_never_matches_empty(
        self, keys: dict[str, str], field: dict[str, str]
    ) -> None:
        assert not matches(keys, **field)

    def test_universal_key_matches_empty(self) -> None:
        assert matches({"AccessionNumber": ""}, accession_number="")


class TestPersonName:
    def test_case_insensitive_by_default(self) -> None:
        assert matches({"PatientName": "doe^jane"})
        assert matches({"PatientName": "d?e*"})

    def test_case_sensitive_when_configured(self) -> None:
        key = NameKey.parse("doe^jane", case_insensitive=False)
        assert key is not None
        assert not key.matches("DOE^JANE")
        assert key.matches("doe^jane")

    def test_trailing_separators_are_insignificant(self) -> None:
        assert normalize_person_name("DOE^JANE^^^") == "DOE^JANE"
        assert matches({"PatientName": "DOE^JANE^"}, patient_name="DOE^JANE^^^=")

    def test_family_name_alone_is_not_a_single_value_match(self) -> None:
        assert not matches({"PatientName": "DOE"})
        assert matches({"PatientName": "DOE*"})

    def test_key_without_group_separator_matches_any_group(self) -> None:
        stored = "Yamada^Tarou=山田^太郎=やまだ^たろう"
        assert matches({"PatientName": "山田*"}, patient_name=stored)
        assert matches({"PatientName": "やまだ^たろう"}, patient_name=stored)
        assert matches({"PatientName": "YAMADA^TAROU"}, patient_name=stored)

    def test_key_with_groups_compares_group_by_group(self) -> None:
        stored = "Yamada^Tarou=山田^太郎"
        assert matches({"PatientName": "=山田^太郎"}, patient_name=stored)
        assert matches({"PatientName": "Yamada*=山田*"}, patient_name=stored)
        assert not matches({"PatientName": "=Yamada^Tarou"}, patient_name=stored)
        assert not matches({"PatientName": "=山田*"}, patient_name="Yamada^Tarou")

    def test_accented_names(self) -> None:
        assert matches({"PatientName": "müller*"}, patient_name="MÜLLER^JOSÉ")
        assert matches({"PatientName": "M?LLER^JOS?"}, patient_name="MÜLLER^JOSÉ")


class TestDateRanges:
    @pytest.mark.parametrize(
        ("key", "stored", "expected"),
        [
            ("20261201", "20261201", True),
            ("20261201", "20261202", False),
            ("20261130-20261202", "20261201", True),
            ("20261130-20261202", "20261202", True),  # inclusive
            ("20261130-20261202", "20261203", False),
            ("-20261201", "19991231", True),  # open start
            ("-20261201", "20261202", False),
            ("20261201-", "20991231", True),  # open end
            ("20261201-", "20261130", False),
        ],
    )
    def test_birth_date(self, key: str, stored: str, expected: bool) -> None:
        assert matches({"PatientBirthDate": key}, birth_date=stored) is expected

    @pytest.mark.parametrize(
        "bad", ["2026-12-01", "20261301", "20260230", "2026120", "a-b", "20261202-20261201", "-"]
    )
    def test_invalid_dates_are_refused(self, bad: str) -> None:
        with pytest.raises(InvalidQueryError) as info:
            parse_date_range(bad, "PatientBirthDate")
        assert info.value.field == "PatientBirthDate"


class TestTimes:
    @pytest.mark.parametrize(
        ("raw", "upper", "expected"),
        [
            ("10", False, "100000"),
            ("10", True, "105959"),
            ("1030", True, "103059"),
            ("103015.123", False, "103015"),
            ("10:30:15", False, "103015"),
        ],
    )
    def test_normalize(self, raw: str, upper: bool, expected: str) -> None:
        assert normalize_time(raw, keyword="T", upper=upper) == expected

    def test_single_value_matches_by_meaning(self) -> None:
        assert parse_time_range("1000", "T") == Range("100000", "100000")

    def test_range_crossing_midnight_is_refused(self) -> None:
        with pytest.raises(InvalidQueryError):
            parse_time_range("2200-0200", "T")

    @pytest.mark.parametrize("bad", ["25", "1060", "ab", "10-11-12"])
    def test_invalid_times(self, bad: str) -> None:
        with pytest.raises(InvalidQueryError):
            parse_time_range(bad, "T")

    def test_time_without_date_applies_to_every_day(self) -> None:
        keys = {"ScheduledProcedureStepStartTime": "0800-0900"}
        assert matches(keys, start_datetime="20200101083000")
        assert matches(keys, start_datetime="20301231080000")
        assert not matches(keys, start_datetime="20261201090100")


class TestCombinedDateTime:
    """PS3.4 C.2.2.2.5.4: date 0705-0707 + time 1000-1800 is one interval."""

    KEYS: ClassVar[dict[str, str]] = {
        "ScheduledProcedureStepStartDate": "20260705-20260707",
        "ScheduledProcedureStepStartTime": "1000-1800",
    }

    @pytest.mark.parametrize(
        ("stored", "expected"),
        [
            ("20260705095959", False),
            ("20260705100000", True),
            ("20260706020000", True),  # outside 10-18 but inside the combined interval
            ("20260707180000", True),
            ("20260707180100", False),
        ],
    )
    def test_one_interval(self, stored: str, expected: bool) -> None:
        assert matches(self.KEYS, start_datetime=stored) is expected

    def test_single_date_with_time_range(self) -> None:
        keys = {
            "ScheduledProcedureStepStartDate": "20261201",
            "ScheduledProcedureStepStartTime": "0800-",
        }
        assert matches(keys, start_datetime="20261201235959")
        assert not matches(keys, start_datetime="20261201075959")
        assert not matches(keys, start_datetime="20261202090000")

    def test_open_date_range_keeps_time_bound(self) -> None:
        rng, time_of_day = combine_date_time(Range(None, "20261201"), Range("080000", "120000"))
        assert rng == Range(None, "20261201120000")
        assert time_of_day is None


class TestOtherKeys:
    def test_list_of_uids(self) -> None:
        assert parse_uid_list("1.2\\1.3") == ("1.2", "1.3")
        assert matches({"StudyInstanceUID": "9.9\\1.2.3"})
        assert not matches({"StudyInstanceUID": "9.9\\9.8"})

    def test_any_value_of_multi_valued_station_matches(self) -> None:
        assert matches({"ScheduledStationAETitle": "AA33"}, station_ae_titles=("AA32", "AA33"))
        assert not matches({"ScheduledStationAETitle": "AA3"}, station_ae_titles=("AA32", "AA33"))

    def test_final_steps_hidden_unless_status_named(self) -> None:
        assert not matches({}, sps_status="COMPLETED")
        assert not matches({"ScheduledProcedureStepStatus": "*"}, sps_status="CANCELED")
        assert matches({"ScheduledProcedureStepStatus": "COMPLETED"}, sps_status="COMPLETED")
        assert matches({"ScheduledProcedureStepStatus": "*ED"}, sps_status="DISCONTINUED")

    def test_unknown_status_is_refused(self) -> None:
        with pytest.raises(InvalidQueryError):
            parse_worklist_query({"ScheduledProcedureStepStatus": "DONE"})

    def test_all_keys_must_match(self) -> None:
        keys = {"Modality": "CT", "ScheduledStationAETitle": "CT01", "PatientID": "P2"}
        assert not matches(keys)
        assert matches({**keys, "PatientID": "P1"})

    def test_universal_query(self) -> None:
        assert parse_worklist_query({"Modality": "", "PatientName": "*"}).is_universal
