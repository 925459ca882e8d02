"""C-FIND identifiers: keys out of a request, responses built from the request's keys."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset

from app.domain.errors import InvalidQueryError
from dicom_scp.mwl import build_response, choose_charset, parse_request, pending_status
from tests.support.items import mwl_item


def request_ds(**top: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in top.items():
        setattr(ds, keyword, value)
    return ds


def sps(**keys: Any) -> Dataset:
    item = Dataset()
    for keyword, value in keys.items():
        setattr(item, keyword, value)
    return item


def stored_item() -> dict[str, Any]:
    item = mwl_item(
        name={"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"},
        station=["CT01", "CT02"],
        extra={
            "00321064": {
                "vr": "SQ",
                "Value": [
                    {
                        "00080100": {"vr": "SH", "Value": ["X1"]},
                        "00080102": {"vr": "SH", "Value": ["L"]},
                        "00080104": {"vr": "LO", "Value": ["Head CT"]},
                    },
                ],
            }
        },
    )
    item["00080090"] = {"vr": "PN"}
    return item


class TestParseRequest:
    def test_top_level_and_step_keys(self) -> None:
        ds = request_ds(PatientName="DOE*", PatientID="", AccessionNumber="A1")
        ds.ScheduledProcedureStepSequence = [sps(ScheduledStationAETitle="CT01", Modality="CT")]
        request = parse_request(ds)
        assert request.keys == {
            "PatientName": "DOE*",
            "PatientID": "",
            "AccessionNumber": "A1",
            "ScheduledStationAETitle": "CT01",
            "Modality": "CT",
        }
        assert request.unsupported_keys == []

    def test_step_keys_outside_the_sequence_are_not_matched(self) -> None:
        request = parse_request(request_ds(Modality="CT"))
        assert "Modality" not in request.keys
        assert request.unsupported_keys == [0x00080060]

    def test_unsupported_optional_keys_are_reported(self) -> None:
        ds = request_ds(RequestedProcedurePriority="HIGH", PatientWeight="")
        ds.RequestedProcedureCodeSequence = [sps(CodeValue="X1")]
        request = parse_request(ds)
        assert set(request.unsupported_keys) == {0x00401003, 0x00321064}

    def test_query_retrieve_level_is_ignored(self) -> None:
        request = parse_request(request_ds(QueryRetrieveLevel="STUDY", PatientID="P1"))
        assert request.keys == {"PatientID": "P1"}
        assert request.unsupported_keys == []
        assert request.ignored == [0x00080052]

    def test_private_elements_are_ignored_at_both_levels(self) -> None:
        ds = request_ds(PatientName="DOE*")
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(0x00091001, "LO", "SOMETHING")
        ds.add_new(0x00091002, "UN", b"")
        step = sps(Modality="CT")
        step.add_new(0x00190010, "LO", "ACME")
        step.add_new(0x00191001, "SH", "X")
        ds.ScheduledProcedureStepSequence = [step]
        request = parse_request(ds)
        assert request.keys == {"PatientName": "DOE*", "Modality": "CT"}
        assert request.unsupported_keys == []
        assert set(request.ignored) == {0x00090010, 0x00091001, 0x00091002, 0x00190010, 0x00191001}

    def test_private_elements_in_a_sequence_item_give_it_no_value(self) -> None:
        code = sps(CodeValue="")
        code.add_new(0x00290010, "LO", "ACME")
        ds = request_ds(PatientID="")
        ds.RequestedProcedureCodeSequence = [code]
        assert parse_request(ds).unsupported_keys == []

    def test_group_length_is_ignored(self) -> None:
        ds = request_ds(PatientID="")
        ds.add_new(0x00100000, "UL", 12)
        request = parse_request(ds)
        assert request.unsupported_keys == []
        assert request.ignored == [0x00100000]

    def test_unknown_public_element_is_not_matched_on(self) -> None:
        ds = request_ds(PatientID="P1")
        ds.add_new(0x00089998, "LO", "X")  # even group, in no dictionary
        request = parse_request(ds)
        assert request.keys == {"PatientID": "P1"}
        assert request.unsupported_keys == [0x00089998]  # ignored for matching: 0xFF01

    def test_two_step_items_are_refused(self) -> None:
        ds = request_ds()
        ds.ScheduledProcedureStepSequence = [sps(Modality="CT"), sps(Modality="MR")]
        with pytest.raises(InvalidQueryError):
            parse_request(ds)

    def test_charset_is_kept(self) -> None:
        ds = request_ds(SpecificCharacterSet=["", "ISO 2022 IR 87"], PatientName="")
        assert parse_request(ds).charset == ["", "ISO 2022 IR 87"]


class TestPendingStatus:
    def test_a_key_with_a_value_not_matched_on_warns(self) -> None:
        ds = request_ds(PatientID="P1", InstitutionName="GENERAL*")
        assert pending_status(parse_request(ds)) == 0xFF01

    def test_pregnancy_status_zero_is_universal(self) -> None:
        # dcmjs-dimse sends its default key PregnancyStatus "" as US 0, which is no value
        # of the Enumerated Values 1-4; 4 (unknown) is a real key the broker does not match on.
        assert pending_status(parse_request(request_ds(PregnancyStatus=0))) == 0xFF00
        assert pending_status(parse_request(request_ds(PregnancyStatus=4))) == 0xFF01

    def test_unsupported_step_key_with_a_value_warns(self) -> None:
        ds = request_ds()
        ds.ScheduledProcedureStepSequence = [sps(ScheduledStationName="A2")]
        assert pending_status(parse_request(ds)) == 0xFF01

    def test_return_keys_and_ignored_elements_do_not_warn(self) -> None:
        ds = request_ds(QueryRetrieveLevel="WORKLIST", PatientID="P1", InstitutionName="")
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(0x00091001, "LO", "VALUE")
        ds.ProcedureCodeSequence = []
        ds.ScheduledProcedureStepSequence = [sps(AnatomicalOrientationType="", Modality="CT")]
        assert pending_status(parse_request(ds)) == 0xFF00


class TestBuildResponse:
    def test_exactly_the_requested_keys(self) -> None:
        ds = request_ds(PatientName="", PatientID="", ReferringPhysicianName="")
        ds.ScheduledProcedureStepSequence = [sps(Modality="", ScheduledStationAETitle="")]
        response = build_response(ds, stored_item(), None)
        top = {e.keyword for e in response} - {"SpecificCharacterSet"}
        assert top == {
            "PatientName",
            "PatientID",
            "ReferringPhysicianName",
            "ScheduledProcedureStepSequence",
        }
        assert response.ReferringPhysicianName == ""  # type 2, unknown: zero length
        assert len(response.ScheduledProcedureStepSequence) == 1
        step = response.ScheduledProcedureStepSequence[0]
        assert {e.keyword for e in step} == {"Modality", "ScheduledStationAETitle"}
        assert list(step.ScheduledStationAETitle) == ["CT01", "CT02"]  # all values (K.2.2.3)

    def test_empty_sequence_item_expands_to_the_whole_step(self) -> None:
        ds = request_ds()
        ds.ScheduledProcedureStepSequence = [Dataset()]
        response = build_response(ds, stored_item(), None)
        step = response.ScheduledProcedureStepSequence[0]
        keywords = {e.keyword for e in step}
        assert {
            "ScheduledStationAETitle",
            "ScheduledProcedureStepStartDate",
            "Modality",
            "ScheduledProcedureStepID",
            "ScheduledPerformingPhysicianName",
        } <= keywords

    def test_zero_length_sequence_is_universal_too(self) -> None:
        ds = request_ds()
        ds.RequestedProcedureCodeSequence = []
        response = build_response(ds, stored_item(), None)
        assert response.RequestedProcedureCodeSequence[0].CodeMeaning == "Head CT"

    def test_sequence_with_keys_is_reduced(self) -> None:
        ds = request_ds()
        ds.RequestedProcedureCodeSequence = [sps(CodeValue="")]
        response = build_response(ds, stored_item(), None)
        code = response.RequestedProcedureCodeSequence[0]
        assert [e.keyword for e in code] == ["CodeValue"]

    def test_keys_an_item_of_another_sequence_lacks_are_left_out(self) -> None:
        ds = request_ds()
        ds.RequestedProcedureCodeSequence = [sps(CodeValue="", CodingSchemeVersion="")]
        response = build_response(ds, stored_item(), None)
        (code,) = response.RequestedProcedureCodeSequence
        assert [e.keyword for e in code] == ["CodeValue"]  # not an empty 1C version

    def test_keys_outside_the_table_are_left_out_when_the_item_lacks_them(self) -> None:
        ds = request_ds(PatientID="", PatientMotherBirthName="")
        response = build_response(ds, stored_item(), None)
        assert [e.keyword for e in response] == ["PatientID"]

    def test_keys_outside_the_table_are_answered_when_the_item_carries_them(self) -> None:
        item = mwl_item(extra={"00080080": {"vr": "LO", "Value": ["GENERAL HOSPITAL"]}})
        response = build_response(request_ds(InstitutionName=""), item, None)
        assert response.InstitutionName == "GENERAL HOSPITAL"

    def test_step_key_outside_the_table_is_left_out_when_the_step_lacks_it(self) -> None:
        ds = request_ds()
        ds.ScheduledProcedureStepSequence = [sps(ScheduledProcedureStepModificationDateTime="")]
        response = build_response(ds, stored_item(), None)
        assert len(response.ScheduledProcedureStepSequence[0]) == 0

    def test_ignored_elements_are_left_out(self) -> None:
        ds = request_ds(QueryRetrieveLevel="", PatientID="")
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(0x00091001, "UN", b"")
        ds.add_new(0x00100000, "UL", 0)
        ds.ScheduledProcedureStepSequence = [sps(Modality="")]
        ds.ScheduledProcedureStepSequence[0].add_new(0x00191001, "SH", "")
        response = build_response(ds, stored_item(), None)
        assert [e.keyword for e in response] == ["PatientID", "ScheduledProcedureStepSequence"]
        assert [e.keyword for e in response.ScheduledProcedureStepSequence[0]] == ["Modality"]

    def test_unknown_public_element_is_left_out(self) -> None:
        ds = request_ds(PatientID="")
        ds.add_new(0x00089998, "LO", "")
        response = build_response(ds, stored_item(), None)
        assert [e.keyword for e in response] == ["PatientID"]

    def test_type_1c_without_a_value_is_left_out(self) -> None:
        item = mwl_item()
        item["00321060"] = {"vr": "LO"}  # stored empty, as the read model keeps 1C columns
        ds = request_ds(PatientID="", RequestedProcedureDescription="")
        ds.RequestedProcedureCodeSequence = []  # absent from the item
        step = sps(ScheduledProcedureStepID="", ScheduledProtocolCodeSequence=[])
        ds.ScheduledProcedureStepSequence = [step]
        response = build_response(ds, item, None)
        assert [e.keyword for e in response] == ["PatientID", "ScheduledProcedureStepSequence"]
        step_out = response.ScheduledProcedureStepSequence[0]
        assert [e.keyword for e in step_out] == ["ScheduledProcedureStepID"]

    def test_type_1c_with_a_value_is_returned(self) -> None:
        ds = request_ds(RequestedProcedureDescription="")
        ds.RequestedProcedureCodeSequence = [sps(CodeValue="", CodeMeaning="")]
        response = build_response(ds, stored_item(), None)
        assert response.RequestedProcedureDescription == "CT of the head"
        assert response.RequestedProcedureCodeSequence[0].CodeMeaning == "Head CT"

    def test_type_2_without_a_value_is_zero_length(self) -> None:
        ds = request_ds(AdmissionID="", PatientWeight="", ReferencedStudySequence=[])
        ds.ScheduledProcedureStepSequence = [sps(ScheduledStationName="")]
        response = build_response(ds, mwl_item(), None)
        assert response.AdmissionID == ""
        assert response["PatientWeight"].is_empty
        assert len(response.ReferencedStudySequence) == 0
        assert response.ScheduledProcedureStepSequence[0].ScheduledStationName == ""

    def test_type_3_without_a_value_is_left_out(self) -> None:
        item = mwl_item(extra={"00401002": {"vr": "LO"}})  # carried empty: still no value
        ds = request_ds(PatientID="", StudyDate="", ReasonForTheRequestedProcedure="")
        ds.PatientSize = None
        ds.IssuerOfAccessionNumberSequence = []
        ds.ScheduledProcedureStepSequence = [sps(CommentsOnTheScheduledProcedureStep="")]
        response = build_response(ds, item, None)
        assert [e.keyword for e in response] == ["PatientID", "ScheduledProcedureStepSequence"]
        assert len(response.ScheduledProcedureStepSequence[0]) == 0

    def test_type_3_with_a_value_is_returned(self) -> None:
        item = mwl_item(extra={"00080020": {"vr": "DA", "Value": ["20261130"]}})
        response = build_response(request_ds(StudyDate=""), item, None)
        assert response.StudyDate == "20261130"

    def test_type_2c_is_zero_length_only_when_the_item_carries_it(self) -> None:
        step = sps(PreMedication="", RequestedContrastAgent="")
        ds = request_ds()
        ds.ScheduledProcedureStepSequence = [step]
        carried = mwl_item(step_extra={"00400012": {"vr": "LO"}})
        response = build_response(ds, carried, None)
        out = response.ScheduledProcedureStepSequence[0]
        assert [e.keyword for e in out] == ["PreMedication"]
        assert out.PreMedication == ""
        with_agent = mwl_item(step_extra={"00321070": {"vr": "LO", "Value": ["IODINE"]}})
        out = build_response(ds, with_agent, None).ScheduledProcedureStepSequence[0]
        assert [e.keyword for e in out] == ["RequestedContrastAgent"]
        assert out.RequestedContrastAgent == "IODINE"

    def test_unicode_answer_is_utf8(self) -> None:
        response = build_response(request_ds(PatientName=""), stored_item(), None)
        assert response.SpecificCharacterSet == "ISO_IR 192"
        assert str(response.PatientName) == "Yamada^Tarou=山田^太郎"

    def test_ascii_answer_has_no_charset(self) -> None:
        response = build_response(request_ds(PatientID=""), stored_item(), None)
        assert "SpecificCharacterSet" not in response


class TestChooseCharset:
    def ds_with(self, name: str) -> Dataset:
        return request_ds(PatientName=name)

    def test_latin1_request_keeps_latin1_when_values_fit(self) -> None:
        assert choose_charset(self.ds_with("MÜLLER^JOSÉ"), ["ISO_IR 100"]) == ["ISO_IR 100"]

    def test_falls_back_to_utf8_when_values_do_not_fit(self) -> None:
        assert choose_charset(self.ds_with("Ψυχάρης^Γιάννης"), ["ISO_IR 100"]) == ["ISO_IR 192"]

    def test_greek_request(self) -> None:
        assert choose_charset(self.ds_with("Ψυχάρης"), ["ISO_IR 126"]) == ["ISO_IR 126"]

    def test_unknown_term_falls_back_to_utf8(self) -> None:
        assert choose_charset(self.ds_with("MÜLLER"), ["ISO_IR 999"]) == ["ISO_IR 192"]

    @pytest.mark.parametrize("charset", [["ISO_IR 6"], ["ISO 2022 IR 6"], [""]])
    def test_default_repertoire_holds_no_accents(self, charset: list[str]) -> None:
        assert choose_charset(self.ds_with("MÜLLER"), charset) == ["ISO_IR 192"]

    def test_latin1_text_does_not_fit_japanese_iso_2022(self) -> None:
        assert choose_charset(self.ds_with("MÜLLER"), ["", "ISO 2022 IR 87"]) == ["ISO_IR 192"]

    def test_japanese_iso_2022(self) -> None:
        charset = ["", "ISO 2022 IR 87"]
        assert choose_charset(self.ds_with("Yamada^Tarou=山田^太郎"), charset) == charset
