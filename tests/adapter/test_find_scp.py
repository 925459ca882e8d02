"""The DICOM listener over real associations (pynetdicom as the SCU), on a free port."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian
from pynetdicom import AE, Association
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from app.db import session_scope
from app.services import worklist
from dicom_scp import mwl_encoded
from tests.support.scp import Scp, start_scp

MWL = ModalityWorklistInformationFind


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path)
    yield server
    server.stop()


def associate(
    port: int,
    called: str = "MWLBROKER",
    calling: str = "MODALITY",
    syntaxes: list[str] | None = None,
) -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(MWL, syntaxes or [ExplicitVRLittleEndian, "1.2.840.10008.1.2"])
    return ae.associate("127.0.0.1", port, ae_title=called)


@pytest.fixture
def assoc(scp: Scp) -> Iterator[Association]:
    association = associate(scp.port)
    assert association.is_established
    yield association
    association.release()


def query(**top: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in top.items():
        setattr(ds, keyword, value)
    return ds


def step_query(**keys: Any) -> Dataset:
    ds = query(PatientName="", PatientID="", AccessionNumber="")
    ds.ScheduledProcedureStepSequence = [query(**keys)]
    return ds


def run(assoc: Association, identifier: Dataset) -> list[tuple[int, Dataset | None]]:
    return [(int(status.Status), ds) for status, ds in assoc.send_c_find(identifier, MWL)]


def test_echo(assoc: Association) -> None:
    assert assoc.send_c_echo().Status == 0x0000


class TestAssociationPolicy:
    def test_wrong_called_ae_is_rejected(self, scp: Scp) -> None:
        association = associate(scp.port, called="SOMEONE")
        assert association.is_rejected
        assert association.acceptor.primitive.diagnostic == 0x07

    def test_calling_ae_must_be_listed_when_a_list_is_set(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        server = start_scp(sqlite_url, tmp_path, allowed_calling_aes=["CT01"])
        try:
            rejected = associate(server.port, calling="INTRUDER")
            assert rejected.is_rejected
            assert rejected.acceptor.primitive.diagnostic == 0x03
            accepted = associate(server.port, calling="CT01")
            assert accepted.is_established
            accepted.release()
        finally:
            server.stop()


class TestFind:
    def test_returns_exactly_the_requested_keys(self, scp: Scp, assoc: Association) -> None:
        scp.add(station=["CT01", "CT02"])
        identifier = step_query(
            ScheduledStationAETitle="CT02",
            ScheduledProcedureStepStartDate="",
            Modality="",
            ScheduledPerformingPhysicianName="",
        )
        identifier.ReferringPhysicianName = ""
        responses = run(assoc, identifier)
        assert [s for s, _ in responses] == [0xFF00, 0x0000]
        ds = responses[0][1]
        assert ds is not None
        assert {e.keyword for e in ds} == {
            "PatientName",
            "PatientID",
            "AccessionNumber",
            "ReferringPhysicianName",
            "ScheduledProcedureStepSequence",
        }
        assert ds.PatientName == "DOE^JANE" and ds.AccessionNumber == "A1"
        assert ds.ReferringPhysicianName == ""
        (step,) = ds.ScheduledProcedureStepSequence
        assert list(step.ScheduledStationAETitle) == ["CT01", "CT02"]
        assert step.ScheduledProcedureStepStartDate == "20261201"
        assert step.ScheduledPerformingPhysicianName == "HOUSE^GREGORY"

    def test_no_match_is_one_success(self, scp: Scp, assoc: Association) -> None:
        scp.add()
        assert [s for s, _ in run(assoc, step_query(Modality="MR"))] == [0x0000]

    def test_one_response_per_step(self, scp: Scp, assoc: Association) -> None:
        scp.add(sps_id="S1")
        scp.add(sps_id="S2")
        responses = run(assoc, step_query(ScheduledProcedureStepID=""))
        steps = [
            ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID
            for s, ds in responses
            if ds is not None
        ]
        assert sorted(steps) == ["S1", "S2"]

    def test_key_not_matched_on_gives_pending_warning(self, scp: Scp, assoc: Association) -> None:
        scp.add()
        identifier = query(PatientID="", PatientMotherBirthName="SMITH")
        responses = run(assoc, identifier)
        assert [s for s, _ in responses] == [0xFF01, 0x0000]  # not narrowed by the key
        assert responses[0][1] is not None and "PatientMotherBirthName" not in responses[0][1]

    def test_unknown_return_key_is_left_out_without_warning(
        self, scp: Scp, assoc: Association
    ) -> None:
        scp.add()
        responses = run(assoc, query(PatientID="", PatientMotherBirthName=""))
        assert [s for s, _ in responses] == [0xFF00, 0x0000]
        assert responses[0][1] is not None
        assert [e.keyword for e in responses[0][1]] == ["PatientID"]

    def test_completed_steps_are_not_offered(self, scp: Scp, assoc: Association) -> None:
        scp.add(sps_id="DONE", status="COMPLETED")
        assert [s for s, _ in run(assoc, step_query())] == [0x0000]
        named = run(assoc, step_query(ScheduledProcedureStepStatus="COMPLETED"))
        assert [s for s, _ in named] == [0xFF00, 0x0000]

    @pytest.mark.parametrize(
        "syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2"]
    )
    def test_transfer_syntaxes(self, scp: Scp, syntax: str) -> None:
        scp.add()
        association = associate(scp.port, syntaxes=[syntax])
        try:
            responses = run(association, step_query())
            assert [s for s, _ in responses] == [0xFF00, 0x0000]
        finally:
            association.release()


class TestBadRequests:
    def test_invalid_date_is_refused_and_the_association_lives_on(
        self, scp: Scp, assoc: Association
    ) -> None:
        scp.add()
        statuses = list(
            assoc.send_c_find(step_query(ScheduledProcedureStepStartDate="20261399"), MWL)
        )
        status, identifier = statuses[-1]
        assert status.Status == 0xA900
        assert identifier is None
        assert status.OffendingElement == 0x00400002
        assert "not a calendar date" in status.ErrorComment
        assert [s for s, _ in run(assoc, step_query())] == [0xFF00, 0x0000]

    def test_query_retrieve_level_and_private_tags_are_ignored(
        self, scp: Scp, assoc: Association
    ) -> None:
        scp.add(patient_id="P1", sps_id="S1", study_uid="1.2.3.4.1", accession="A1")
        scp.add(patient_id="P2", sps_id="S2", study_uid="1.2.3.4.2", accession="A2")
        identifier = step_query(ScheduledProcedureStepID="", Modality="CT")
        identifier.PatientID = "P2"
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.add_new(0x00090010, "LO", "ACME")
        identifier.add_new(0x00091001, "LO", "")
        identifier.ScheduledProcedureStepSequence[0].add_new(0x00191001, "LO", "")
        responses = run(assoc, identifier)
        assert [s for s, _ in responses] == [0xFF00, 0x0000]  # no Optional Key unsupported
        ds = responses[0][1]
        assert ds is not None
        assert [e.keyword for e in ds] == [
            "AccessionNumber",
            "PatientName",
            "PatientID",
            "ScheduledProcedureStepSequence",
        ]
        assert ds.PatientID == "P2"
        assert [e.keyword for e in ds.ScheduledProcedureStepSequence[0]] == [
            "Modality",
            "ScheduledProcedureStepID",
        ]
        assert ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "S2"

    def test_return_keys_by_type(self, scp: Scp, assoc: Association) -> None:
        scp.add()  # no code sequences, no study date, no admission
        identifier = step_query(ScheduledProcedureStepDescription="", PreMedication="")
        identifier.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence = []
        identifier.RequestedProcedureCodeSequence = []
        identifier.StudyDate = ""
        identifier.AdmissionID = ""
        responses = run(assoc, identifier)
        assert [s for s, _ in responses] == [0xFF00, 0x0000]
        ds = responses[0][1]
        assert ds is not None
        assert "RequestedProcedureCodeSequence" not in ds  # 1C, not in the item
        assert "StudyDate" not in ds  # 3, not in the item
        assert ds.AdmissionID == ""  # 2: zero length
        (step,) = ds.ScheduledProcedureStepSequence
        assert [e.keyword for e in step] == ["ScheduledProcedureStepDescription"]  # 1C with value

    def test_database_failure_is_a_failure_status(self, scp: Scp, assoc: Association) -> None:
        scp.engine.dispose()
        Path(scp.settings.database_url.removeprefix("sqlite:///")).unlink()
        (Path(scp.settings.database_url.removeprefix("sqlite:///"))).mkdir()  # unopenable
        responses = run(assoc, step_query())
        assert responses[-1][0] == 0xC000
        assert assoc.send_c_echo().Status == 0x0000


def test_result_cap_ends_with_out_of_resources(sqlite_url: str, tmp_path: Path) -> None:
    server = start_scp(sqlite_url, tmp_path, mwl_max_results=3)
    try:
        for index in range(5):
            server.add(sps_id=f"S{index}", study_uid=f"1.2.5.{index}")
        association = associate(server.port)
        statuses = [s for s, _ in run(association, step_query())]
        association.release()
        assert statuses == [0xFF00, 0xFF00, 0xFF00, 0xA700]
    finally:
        server.stop()


def test_cancel_stops_the_stream(
    scp: Scp, assoc: Association, monkeypatch: pytest.MonkeyPatch
) -> None:
    scp.add()
    item = next(iter(_items(scp)))

    def many(session: Any, *, query: Any, offset: int = 0, cache: Any = None) -> Iterator[Any]:
        yield from [worklist.Match((1,), item)] * 500

    encode = mwl_encoded.encode_response

    def slow_encode(*args: Any) -> Any:
        time.sleep(0.02)  # responses slower than the network, so the cancel lands mid-way
        return encode(*args)

    monkeypatch.setattr(worklist, "find_matches", many)
    monkeypatch.setattr(mwl_encoded, "encode_response", slow_encode)
    responses = assoc.send_c_find(step_query(), MWL)
    statuses = []
    for status, _ds in responses:
        statuses.append(int(status.Status))
        if len(statuses) == 1:
            cx = next(c for c in assoc.accepted_contexts if c.abstract_syntax == MWL)
            assoc.send_c_cancel(1, cx.context_id)
    assert statuses[-1] == 0xFE00
    assert 1 <= len(statuses) - 1 < 500


def _items(scp: Scp) -> list[dict[str, Any]]:
    from app.domain.worklist import parse_worklist_query

    with session_scope(scp.factory) as s:
        return list(worklist.find(s, query=parse_worklist_query({})))


class TestCharacterSets:
    def test_latin1_request_gets_latin1(self, scp: Scp, assoc: Association) -> None:
        scp.add(name="MÜLLER^JOSÉ")
        identifier = step_query()
        identifier.SpecificCharacterSet = "ISO_IR 100"
        identifier.PatientName = "müller*"
        ((status, ds), _) = run(assoc, identifier)
        assert status == 0xFF00 and ds is not None
        assert ds.SpecificCharacterSet == "ISO_IR 100"
        assert str(ds.PatientName) == "MÜLLER^JOSÉ"

    def test_japanese_name_round_trips_in_utf8(self, scp: Scp, assoc: Association) -> None:
        name = {
            "Alphabetic": "Yamada^Tarou",
            "Ideographic": "山田^太郎",
            "Phonetic": "やまだ^たろう",
        }
        scp.add(name=name)
        identifier = step_query()
        identifier.SpecificCharacterSet = "ISO_IR 192"
        identifier.PatientName = "山田*"
        ((status, ds), _) = run(assoc, identifier)
        assert status == 0xFF00
        assert ds is not None and ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"

    def test_greek_request_in_iso_ir_126(self, scp: Scp, assoc: Association) -> None:
        scp.add(name="Ψυχάρης^Γιάννης")
        identifier = step_query()
        identifier.SpecificCharacterSet = "ISO_IR 126"
        ((status, ds), _) = run(assoc, identifier)
        assert status == 0xFF00
        assert ds is not None and ds.SpecificCharacterSet == "ISO_IR 126"
        assert str(ds.PatientName) == "Ψυχάρης^Γιάννης"


def test_no_patient_data_in_info_logs(
    scp: Scp, assoc: Association, caplog: pytest.LogCaptureFixture
) -> None:
    scp.add(name="SECRET^PATIENT", patient_id="PID-SECRET")
    with caplog.at_level(logging.INFO):
        identifier = step_query()
        identifier.PatientName = "SECRET*"
        responses = run(assoc, identifier)
    assert responses[0][0] == 0xFF00
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "C-FIND" in logged  # the handler did log the event...
    assert "SECRET" not in logged and "PID-SECRET" not in logged  # ...but no patient data
