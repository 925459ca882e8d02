"""Leniency where it is safe, strictness where it protects the patient (issue 10 part 3):
descriptive values cut to their VR with an ERR severity W in the ACK."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from app.config import Hl7Settings
from app.domain.errors import MissingValueError
from app.domain.intake import OrderMessage, PatientDeletion, PatientRegistration, PatientUpdate
from app.domain.items import PatientData
from hl7_ingest.ack import build_ack, error_for_domain
from hl7_ingest.errors import VALUE_TOO_LONG, AckCode, FieldWarning, MessageError, ack_code
from hl7_ingest.parse import decode, decode_text, envelope
from hl7_ingest.router import Decoded, decode_message

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
NOW = datetime(2025, 1, 1, 12, 0, 0)
SETTINGS = Hl7Settings(sending_application="MWLBROKER", sending_facility="RAD")


def decoded(name: str) -> Decoded:
    text = decode((DATA / name).read_bytes())
    return decode_message(text, envelope(text))


def test_long_descriptive_values_are_cut_with_a_warning_each() -> None:
    result = decoded("omi_o23_long_values.hl7")
    assert isinstance(result.command, OrderMessage)
    (group,) = result.command.groups
    assert group.step.station_name == "SIEMENS_AVANTO_F"  # IPC-7, SH 16
    assert group.step.location == "MR ROOM 1 BASEME"  # IPC-8, SH 16
    assert len(group.step.description) == 64
    assert group.step.description.startswith("Knee routine protocol with sagittal")
    assert len(group.order.current_patient_location) == 64
    reason = group.procedure.attributes["00401002"]["Value"][0]
    assert reason == "Follow-up of a suspected medial meniscus tear after a sports inj"
    # identifiers are kept whole
    assert group.order.accession_number == "ACC5001"
    assert group.step.station_ae_titles == ("MR1_AE",)
    assert [(w.code, w.location) for w in result.warnings] == [
        (VALUE_TOO_LONG, "PV1^1^3"),
        (VALUE_TOO_LONG, "OBR^1^31^1^2"),
        (VALUE_TOO_LONG, "IPC^1^7"),
        (VALUE_TOO_LONG, "IPC^1^8"),
        (VALUE_TOO_LONG, "IPC^1^6^1^2"),
    ]
    assert "ScheduledStationName has 20 characters, more than 16" in result.warnings[2].text


def test_orm_description_cut_at_obr_4_5() -> None:
    result = decoded("orm_o01_long_description.hl7")
    assert [(w.code, w.location) for w in result.warnings] == [(104, "OBR^1^4^1^5")]
    assert isinstance(result.command, OrderMessage)
    assert result.command.groups[0].step.description == (
        "CT abdomen and pelvis with oral and intravenous contrast, portal"
    )


def test_values_within_their_vr_give_no_warning() -> None:
    assert decoded("omi_o23_nw.hl7").warnings == ()
    assert decoded("orm_o01_nw.hl7").warnings == ()


def test_identifiers_are_not_cut_by_the_mapping() -> None:
    result = decoded("omi_o23_long_accession.hl7")
    assert result.warnings == ()
    assert isinstance(result.command, OrderMessage)
    assert result.command.groups[0].order.accession_number == "RAD-2025-0000123456"


WARNINGS = (
    FieldWarning(104, "ScheduledStationName has 20 characters, more than 16", "IPC^1^7"),
    FieldWarning(104, "ScheduledProcedureStepLocation has 18 characters", "IPC^1^8"),
)


def test_aa_v251_carries_one_err_w_per_warning() -> None:
    text = decode((DATA / "omi_o23_long_values.hl7").read_bytes())
    out = build_ack(
        envelope(text),
        AckCode.AA,
        settings=SETTINGS,
        warnings=WARNINGS,
        now=NOW,
        control_id="A0001",
    )
    lines = out.split("\r")
    assert lines[1] == "MSA|AA|MSG05001"
    assert lines[2] == (
        "ERR||IPC^1^7|104^Value too long^HL70357|W||||"
        "ScheduledStationName has 20 characters, more than 16"
    )
    assert lines[3].startswith("ERR||IPC^1^8|104^Value too long^HL70357|W|")
    parsed = parse_message(out, validation_level=VALIDATION_LEVEL.TOLERANT)
    assert [e.err_4.to_er7() for e in parsed.err] == ["W", "W"]
    assert parsed.msa.msa_1.to_er7() == "AA"


def test_aa_v231_carries_the_warnings_in_err_1_repetitions() -> None:
    text = decode((DATA / "orm_o01_long_description.hl7").read_bytes())
    out = build_ack(
        envelope(text),
        AckCode.AA,
        settings=SETTINGS,
        warnings=WARNINGS,
        now=NOW,
        control_id="A0001",
    )
    lines = out.split("\r")
    assert lines[1] == "MSA|AA|MSG05003"
    assert lines[2] == ("ERR|IPC^1^7^104&Value too long&HL70357~IPC^1^8^104&Value too long&HL70357")
    parsed = parse_message(out, validation_level=VALIDATION_LEVEL.TOLERANT)
    assert parsed.msa.msa_1.to_er7() == "AA"


@pytest.mark.parametrize("version", ["2.3.1", "2.5.1"])
def test_an_error_ack_leaves_the_warnings_out(version: str) -> None:
    text = decode((DATA / "omi_o23_nw.hl7").read_bytes())
    env = envelope(text.replace("|2.5.1", f"|{version}", 1))
    error = MessageError(102, "too long", "IPC^1^1")
    out = build_ack(env, AckCode.AE, settings=SETTINGS, error=error, warnings=WARNINGS)
    assert out.count("ERR|") == 1 and "IPC^1^7" not in out


# --- 4. person events from master patient indexes ---------------------------------------------


def test_a31_is_an_update_like_a08() -> None:
    result = decoded("adt_a31.hl7")
    assert result.command == PatientUpdate(
        patient=PatientData(
            patient_id="PAT002",
            name="SMITH-BROWN^JANE^^MRS",
            issuer_of_patient_id="HOSP",
            birth_date="19851231",
            sex="F",
        )
    )
    text = decode((DATA / "adt_a31.hl7").read_bytes())
    assert envelope(text.replace("^ADT_A05|", "|")).structure == "ADT_A05"


def test_a28_registers_and_a29_deletes() -> None:
    a28 = decoded("adt_a28.hl7").command
    assert isinstance(a28, PatientRegistration)
    assert (a28.patient.patient_id, a28.patient.name) == ("PAT530", "DABROWSKI^ADAM")
    a29 = decoded("adt_a29.hl7").command
    assert isinstance(a29, PatientDeletion) and a29.patient.patient_id == "PAT530"


# --- 6. UTF-8 labelled as a single-byte set ---------------------------------------------------


def test_utf8_labelled_8859_1_is_read_as_utf8() -> None:
    raw = (DATA / "orm_o01_utf8_labelled_8859_1.hl7").read_bytes()
    result = decode_text(raw)
    assert result.utf8_instead_of == "8859/1"
    assert "PID|1||PAT541^^^HOSP^MR||WĄSIK^ŁUKASZ~MÜLLER^JOSÉ||" in result.text
    assert "Ã" not in result.text  # no mojibake


def test_utf8_without_msh18_is_read_as_utf8() -> None:
    result = decode_text((DATA / "adt_a31_utf8_no_msh18.hl7").read_bytes())
    assert result.utf8_instead_of == ""
    assert "ŻÓŁTOWSKA^GRAŻYNA" in result.text


def test_real_latin1_stays_latin1() -> None:
    result = decode_text((DATA / "orm_latin1.hl7").read_bytes())
    assert result.utf8_instead_of is None
    assert "MÜLLER^JOSÉ" in result.text


def test_ascii_labelled_text_valid_in_neither_is_refused_with_ae() -> None:
    with pytest.raises(MessageError) as info:
        decode_text((DATA / "broken_ascii_non_ascii.hl7").read_bytes())
    assert (info.value.code, info.value.location) == (207, "MSH^1^18")
    assert "nor as UTF-8" in info.value.text
    assert ack_code(info.value) is AckCode.AE


# --- 7. SIU^S12-S15 ---------------------------------------------------------------------------


def test_siu_s12_maps_to_a_new_order() -> None:
    msg = decoded("siu_s12.hl7").command
    assert isinstance(msg, OrderMessage)
    assert (msg.order_control, msg.order_status) == ("NW", "")
    assert msg.patient.patient_id == "PAT601" and msg.patient.name == "BAKER^ALICE^M"
    (group,) = msg.groups
    assert group.order.accession_number == "ACC6001"  # SCH-2.1 filler appointment ID
    assert (group.order.placer_order_number, group.order.filler_order_number) == (
        "PL6001",
        "FL6001",
    )  # SCH-26 / SCH-27
    assert group.order.referring_physician_name == "JONES^MARK"
    step = group.step
    assert (step.modality, step.start_datetime) == ("CT", "20250320093000")  # AIG-4, AIS-4
    assert (step.station_name, step.location) == ("CT Scanner 1", "CTROOM1")  # AIG-3.2, AIL-3
    assert step.station_ae_titles == () and step.sps_id == ""  # station table, derived ID
    assert step.performing_physician == "KOWALSKI^ANNA"  # AIP-3
    assert step.description == "CT Head without contrast"  # AIS-3.2
    assert group.procedure.priority == "ROUTINE"  # TQ1-9
    assert group.procedure.attributes["00401002"]["Value"] == ["Suspected stroke follow-up"]


def test_siu_v231_takes_start_from_sch11_and_uid_from_zds() -> None:
    msg = decoded("siu_s12_v231_zds.hl7").command
    assert isinstance(msg, OrderMessage)
    (group,) = msg.groups
    assert group.step.start_datetime == "20250320103000"  # SCH-11.4
    assert group.procedure.study_instance_uid == "1.2.840.113619.2.55.3.6002"
    assert group.procedure.priority == "STAT"  # SCH-11.6
    assert group.step.modality == "CR"


@pytest.mark.parametrize(("name", "control"), [("siu_s13.hl7", "XO"), ("siu_s15.hl7", "CA")])
def test_siu_reschedule_and_cancel(name: str, control: str) -> None:
    msg = decoded(name).command
    assert isinstance(msg, OrderMessage) and msg.order_control == control
    assert msg.groups[0].order.accession_number == "ACC6001"


def test_siu_with_two_services_gives_two_steps_of_one_procedure() -> None:
    text = decode((DATA / "siu_s12.hl7").read_bytes())
    text += "RGS|2|A\rAIS|2|A|CTNECK^CT Neck^L|20250320100000\rAIG|2|A|CT01|CT\r"
    msg = decode_message(text, envelope(text)).command
    assert isinstance(msg, OrderMessage)
    assert [(g.step.sps_id, g.step.start_datetime) for g in msg.groups] == [
        ("1", "20250320093000"),
        ("2", "20250320100000"),
    ]
    assert msg.groups[0].procedure == msg.groups[1].procedure


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        ("SCH|A1|F1\rPID|1||P1||DOE^J\rAIS|1||X^Y\r", 101, "AIG^1^4"),
        ("PID|1||P1||DOE^J\rAIG|1||CT01|CT\r", 100, "SCH^1"),
        ("SCH|A1|F1\rPID|1||P1\rAIG|1||CT01|CT\r", 101, "PID^1^5"),
        ("SCH|A1|F1\rPID|1||P1||DOE^J\rAIS|1||X|2025-03-20\rAIG|1||A|CT\r", 102, "AIS^1^4"),
    ],
)
def test_siu_errors(text: str, code: int, where: str) -> None:
    head = "MSH|^~\\&|RIS|H|MWL|R|2025||SIU^S12|C1|P|2.5.1\r"
    with pytest.raises(MessageError) as info:
        decode_message(head + text, envelope(head + text))
    assert (info.value.code, info.value.location) == (code, where)


def test_siu_ack_names_siu_locations() -> None:
    env = envelope(decode((DATA / "siu_s12.hl7").read_bytes()))
    error = error_for_domain(MissingValueError("x", field="AccessionNumber"), env)
    assert (error.code, error.location) == (101, "SCH^1^2")
    ack = build_ack(env, AckCode.AA, settings=SETTINGS, now=NOW, control_id="A1")
    assert ack.split("\r")[0].split("|")[8] == "ACK^S12^ACK"


def test_a_shared_field_cut_in_every_group_is_warned_once() -> None:
    text = decode((DATA / "omi_o23_nw.hl7").read_bytes())
    long_ward = "CARDIOLOGY INTENSIVE CARE UNIT NORTH WING BUILDING A FLOOR 3 EAST CORRIDOR"
    text = text.replace("PV1|1|I|WARD3^12^A|", f"PV1|1|I|{long_ward}^12^A|")
    result = decode_message(text, envelope(text))
    assert isinstance(result.command, OrderMessage) and len(result.command.groups) == 2
    assert [w.location for w in result.warnings] == ["PV1^1^3"]
