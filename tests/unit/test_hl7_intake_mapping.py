"""Leniency where it is safe, strictness where it protects the patient (issue 10 part 3):
descriptive values cut to their VR with an ERR severity W in the ACK."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from app.config import Hl7Settings
from app.domain.intake import OrderMessage, PatientDeletion, PatientRegistration, PatientUpdate
from app.domain.items import PatientData
from hl7_ingest.ack import build_ack
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
