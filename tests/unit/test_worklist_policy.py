"""The worklist policy rule: how a calling AE's query is changed (``apply_policy``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.config import SettingsError, load_settings
from app.domain.worklist import WorklistQuery, WorklistRecord, parse_worklist_query
from app.domain.worklist_policy import (
    NO_POLICY,
    PolicyKind,
    WorklistPolicy,
    apply_policy,
    literal_key,
)

CALLING_AE = WorklistPolicy(PolicyKind.CALLING_AE)
RESTRICT_OWN = WorklistPolicy(PolicyKind.RESTRICT)


def record(stations: tuple[str, ...] = ("CT01",), modality: str = "CT") -> WorklistRecord:
    return WorklistRecord(
        station_ae_titles=stations,
        start_datetime="20261201083000",
        modality=modality,
        performing_physician="",
        sps_id="S1",
        sps_status="SCHEDULED",
        patient_name="DOE^JANE",
        patient_id="P1",
        birth_date="",
        sex="",
        accession_number="A1",
        requested_procedure_id="RP1",
        study_instance_uid="1.2.3",
    )


def query(**keys: str) -> WorklistQuery:
    return parse_worklist_query(keys)


CT01, MR01, BOTH = record(("CT01",)), record(("MR01",), "MR"), record(("CT01", "MR01"))


class TestNone:
    def test_the_query_is_unchanged(self) -> None:
        q = query(PatientName="DOE*")
        assert apply_policy(q, NO_POLICY, "CT01") is q
        assert apply_policy(q, NO_POLICY, "CT01").matches(MR01)


class TestCallingAe:
    def test_no_station_key_becomes_the_calling_ae(self) -> None:
        applied = apply_policy(query(), CALLING_AE, "CT01")
        assert applied.station_ae_title == literal_key("CT01")
        assert applied.matches(CT01) and applied.matches(BOTH)
        assert not applied.matches(MR01)

    @pytest.mark.parametrize("universal", ["", "*", "  "])
    def test_empty_or_star_station_key_counts_as_none(self, universal: str) -> None:
        applied = apply_policy(query(ScheduledStationAETitle=universal), CALLING_AE, "MR01")
        assert applied.matches(MR01) and not applied.matches(CT01)

    def test_a_query_that_names_a_station_keeps_it(self) -> None:
        q = query(ScheduledStationAETitle="MR01")
        assert apply_policy(q, CALLING_AE, "CT01") is q
        wildcard = query(ScheduledStationAETitle="MR*")
        assert apply_policy(wildcard, CALLING_AE, "CT01").matches(MR01)

    def test_other_keys_are_kept(self) -> None:
        applied = apply_policy(query(Modality="MR"), CALLING_AE, "CT01")
        assert not applied.matches(CT01)  # modality CT
        assert applied.modality is not None and applied.modality.value == "MR"

    def test_the_calling_ae_is_literal_not_a_wildcard(self) -> None:
        applied = apply_policy(query(), CALLING_AE, " CT* ")
        assert applied.matches(record(("CT*",)))
        assert not applied.matches(CT01)

    def test_an_empty_calling_ae_changes_nothing(self) -> None:
        q = query()
        assert apply_policy(q, CALLING_AE, "  ") is q


class TestRestrict:
    def test_without_lists_the_ae_sees_its_own_station(self) -> None:
        applied = apply_policy(query(), RESTRICT_OWN, "CT01")
        assert applied.allowed_stations == ("CT01",)
        assert applied.matches(CT01) and applied.matches(BOTH) and not applied.matches(MR01)

    def test_a_query_for_another_station_gets_nothing(self) -> None:
        applied = apply_policy(query(ScheduledStationAETitle="MR01"), RESTRICT_OWN, "CT01")
        assert not applied.matches(MR01)
        # An item on both stations: the station the query asks for must itself be allowed.
        assert not applied.matches(BOTH)

    def test_wildcard_station_key_within_the_allowed(self) -> None:
        policy = WorklistPolicy(PolicyKind.RESTRICT, ("CT01", "CT02"))
        applied = apply_policy(query(ScheduledStationAETitle="CT*"), policy, "WS1")
        assert applied.matches(CT01) and applied.matches(record(("CT02",)))
        assert not applied.matches(record(("CT03",)))

    def test_configured_stations_replace_the_calling_ae(self) -> None:
        policy = WorklistPolicy(PolicyKind.RESTRICT, ("MR01",))
        applied = apply_policy(query(), policy, "CT01")
        assert applied.matches(MR01) and not applied.matches(CT01)

    def test_modalities_only(self) -> None:
        policy = WorklistPolicy(PolicyKind.RESTRICT, modalities=("MR", "MG"))
        applied = apply_policy(query(), policy, "CT01")
        assert applied.allowed_stations is None
        assert applied.matches(MR01) and not applied.matches(CT01)
        asked_ct = apply_policy(query(Modality="CT"), policy, "CT01")
        assert not asked_ct.matches(CT01)

    def test_stations_and_modalities_both_hold(self) -> None:
        policy = WorklistPolicy(PolicyKind.RESTRICT, ("CT01", "MR01"), ("MR",))
        applied = apply_policy(query(), policy, "X")
        assert applied.matches(MR01)
        assert not applied.matches(CT01)  # station allowed, modality not
        assert not applied.matches(record(("MR02",), "MR"))  # modality allowed, station not

    def test_an_existing_limit_is_narrowed_not_widened(self) -> None:
        already = replace(query(), allowed_stations=("CT01", "CT02"))
        policy = WorklistPolicy(PolicyKind.RESTRICT, ("CT02", "MR01"))
        assert apply_policy(already, policy, "X").allowed_stations == ("CT02",)

    def test_other_keys_still_apply(self) -> None:
        applied = apply_policy(query(PatientID="P9"), RESTRICT_OWN, "CT01")
        assert not applied.matches(CT01)

    def test_describe_names_the_limits(self) -> None:
        assert RESTRICT_OWN.describe("CT01") == "restrict (stations CT01; modalities any)"
        only_mr = WorklistPolicy(PolicyKind.RESTRICT, modalities=("MR",))
        assert only_mr.describe("CT01") == "restrict (stations any; modalities MR)"


def test_final_steps_stay_hidden_under_every_policy() -> None:
    done = replace(CT01, sps_status="COMPLETED")
    for policy in (NO_POLICY, CALLING_AE, RESTRICT_OWN):
        assert not apply_policy(query(), policy, "CT01").matches(done)


class TestDefaultSetting:
    @pytest.fixture(autouse=True)
    def no_broker_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("BROKER_MWL_DEFAULT_POLICY", raising=False)

    def test_default_is_none(self) -> None:
        assert load_settings(_env_file=None).worklist.default_policy is PolicyKind.NONE

    def test_environment_sets_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BROKER_MWL_DEFAULT_POLICY", "restrict")
        assert load_settings(_env_file=None).worklist.default_policy is PolicyKind.RESTRICT

    def test_an_unknown_policy_stops_start_up(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BROKER_MWL_DEFAULT_POLICY", "station")
        with pytest.raises(SettingsError) as info:
            load_settings(_env_file=None)
        assert "BROKER_MWL_DEFAULT_POLICY:" in str(info.value)
