"""ACK building (MSH/MSA/ERR per version, escaping) and the domain -> HL7 error table."""

from __future__ import annotations

from datetime import datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from app.config import Settings
from app.domain.errors import (
    ConflictError,
    DomainError,
    InvalidQueryError,
    InvalidTransitionError,
    MissingValueError,
    NotFoundError,
    UnknownCodeError,
    ValidationError,
)
from app.domain.mpps import MissingAttributeValueError
from hl7_ingest.ack import build_ack, error_for_domain, hl7_location
from hl7_ingest.errors import AckCode, MessageError, MessageRejected, ack_code
from hl7_ingest.parse import Envelope, envelope

NOW = datetime(2025, 1, 1, 12, 0, 0)
SETTINGS = Settings(hl7_sending_application="MWLBROKER", hl7_sending_facility="RAD")


def env(
    message_type: str = "OMI",
    trigger: str = "O23",
    version: str = "2.5.1",
    charset: str = "",
    control_id: str = "MSG00042",
) -> Envelope:
    return Envelope(
        sending_application="RIS",
        sending_facility="HOSP",
        receiving_application="MWLBROKER",
        receiving_facility="RAD",
        control_id=control_id,
        message_type=message_type,
        trigger_event=trigger,
        structure=f"{message_type}_{trigger}",
        version=version,
        charset=charset,
        processing_id="P",
    )


def ack(e: Envelope | None, code: AckCode, error: MessageError | None = None) -> str:
    return build_ack(e, code, settings=SETTINGS, error=error, now=NOW, control_id="A0001")


def test_aa_v251() -> None:
    assert ack(env(), AckCode.AA) == (
        "MSH|^~\\&|MWLBROKER|RAD|RIS|HOSP|20250101120000||ACK^O23^ACK|A0001|P|2.5.1\r"
        "MSA|AA|MSG00042\r"
    )


def test_ae_v251_with_err() -> None:
    error = MessageError(101, "Missing study instance uid", "IPC^1^3")
    assert ack(env(), AckCode.AE, error) == (
        "MSH|^~\\&|MWLBROKER|RAD|RIS|HOSP|20250101120000||ACK^O23^ACK|A0001|P|2.5.1\r"
        "MSA|AE|MSG00042\r"
        "ERR||IPC^1^3|101^Required field missing^HL70357|E||||Missing study instance uid\r"
    )


def test_aa_v231_plain_ack() -> None:
    assert ack(env("ORM", "O01", "2.3.1", control_id="MSG00043"), AckCode.AA) == (
        "MSH|^~\\&|MWLBROKER|RAD|RIS|HOSP|20250101120000||ACK|A0001|P|2.3.1\rMSA|AA|MSG00043\r"
    )


def test_ae_v231_err1_and_msa3() -> None:
    error = MessageError(102, "bad start '2025-01-02'", "ORC^1^7^1^4")
    assert ack(env("ORM", "O01", "2.3.1"), AckCode.AE, error) == (
        "MSH|^~\\&|MWLBROKER|RAD|RIS|HOSP|20250101120000||ACK|A0001|P|2.3.1\r"
        "MSA|AE|MSG00042|bad start '2025-01-02'\r"
        "ERR|ORC^1^7^102&Data type error&HL70357\r"
    )


def test_v24_uses_trigger_but_old_err() -> None:
    error = MessageError(204, "unknown patient", "")
    assert ack(env("ADT", "A40", "2.4"), AckCode.AE, error) == (
        "MSH|^~\\&|MWLBROKER|RAD|RIS|HOSP|20250101120000||ACK^A40^ACK|A0001|P|2.4\r"
        "MSA|AE|MSG00042|unknown patient\r"
        "ERR|^^^204&Unknown key identifier&HL70357\r"
    )


def test_ar_with_charset_echo() -> None:
    error = MessageRejected(201, "event 'A99' of ADT is not supported", "MSH^1^9")
    assert ack(env("ADT", "A99", charset="8859/1"), AckCode.AR, error) == (
        "MSH|^~\\&|MWLBROKER|RAD|RIS|HOSP|20250101120000||ACK^A99^ACK|A0001|P|2.5.1||||||8859/1\r"
        "MSA|AR|MSG00042\r"
        "ERR||MSH^1^9|201^Unsupported event code^HL70357|E||||event 'A99' of ADT is not supported\r"
    )


def test_ar_without_envelope() -> None:
    error = MessageRejected(100, "the message does not start with an MSH segment", "MSH^1")
    assert ack(None, AckCode.AR, error) == (
        "MSH|^~\\&|MWLBROKER|RAD|||20250101120000||ACK|A0001|P|2.5.1\r"
        "MSA|AR|\r"
        "ERR||MSH^1|100^Segment sequence error^HL70357|E||||"
        "the message does not start with an MSH segment\r"
    )


def test_escaping_in_err_text_and_control_id() -> None:
    error = MessageError(102, "value 'a|b^c~d\\e&f' is bad", "PID^1^5")
    out = ack(env(control_id="X|1"), AckCode.AE, error)
    assert "MSA|AE|X\\F\\1\r" in out
    assert out.endswith("|E||||value 'a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f' is bad\r")


def test_default_control_id_and_time() -> None:
    out = build_ack(env(), AckCode.AA, settings=SETTINGS)
    msh = out.split("\r")[0].split("|")
    assert len(msh[9]) == 20
    assert len(msh[6]) == 14


@pytest.mark.parametrize("version", ["2.3.1", "2.5.1"])
def test_acks_parse_with_hl7apy(version: str) -> None:
    error = MessageError(101, "missing | field", "PID^1^3")
    out = ack(env("ORM", "O01", version), AckCode.AE, error)
    message = parse_message(out, validation_level=VALIDATION_LEVEL.TOLERANT)
    assert message.msa.msa_1.to_er7() == "AE"
    assert message.msa.msa_2.to_er7() == "MSG00042"
    assert envelope(out).message_type == "ACK"


# --- domain errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (MissingValueError("PatientID (Type 1) is missing or empty", field="PatientID"), 101),
        (MissingAttributeValueError("StudyInstanceUID (Type 1) is empty"), 101),
        (UnknownCodeError("order control ZZ is not configured", field="OrderControl"), 103),
        # the type decides, not the wording: a plain ValidationError is a bad value
        (ValidationError("the missing link", field="PatientName"), 102),
        (ValidationError("not configured", field="OrderControl"), 102),
        (
            ValidationError("StudyInstanceUID: 'x' is not a valid UID", field="StudyInstanceUID"),
            102,
        ),
        (InvalidQueryError("bad date", field="PatientBirthDate"), 102),
        (NotFoundError("no such patient", field="PatientID"), 204),
        (ConflictError("accession exists", field="AccessionNumber"), 205),
        (InvalidTransitionError("COMPLETED cannot become SCHEDULED"), 207),
        (DomainError("boom"), 207),
    ],
)
def test_domain_codes(exc: DomainError, code: int) -> None:
    error = error_for_domain(exc, env())
    assert isinstance(error, MessageError)
    assert (error.code, error.text) == (code, exc.message)
    assert ack_code(error) is AckCode.AE


def test_hl7_errors_answer_ae_or_ar() -> None:
    assert ack_code(MessageError(101, "x")) is AckCode.AE
    assert ack_code(MessageRejected(200, "x")) is AckCode.AR


@pytest.mark.parametrize(
    ("field", "orm", "omi"),
    [
        ("AccessionNumber", "OBR^1^18", "IPC^1^1"),
        ("RequestedProcedureID", "OBR^1^19", "IPC^1^2"),
        ("StudyInstanceUID", "ZDS^1^1", "IPC^1^3"),
        ("ScheduledProcedureStepID", "OBR^1^20", "IPC^1^4"),
        ("Modality", "OBR^1^24", "IPC^1^5"),
        ("ScheduledStationAETitle", "OBR^1^24", "IPC^1^9"),
        ("ScheduledProcedureStepStartDate", "ORC^1^7", "TQ1^1^7"),
        ("ScheduledProcedureStepStartTime", "ORC^1^7", "TQ1^1^7"),
        ("PatientID", "PID^1^3", "PID^1^3"),
        ("PatientName", "PID^1^5", "PID^1^5"),
        ("PatientBirthDate", "PID^1^7", "PID^1^7"),
        ("PatientSex", "PID^1^8", "PID^1^8"),
        ("PriorPatientID", "MRG^1^1", "MRG^1^1"),
        ("ORC-1", "ORC^1^1", "ORC^1^1"),
        ("OBR^2^18", "OBR^2^18", "OBR^2^18"),
        ("SomethingElse", "", ""),
        (None, "", ""),
    ],
)
def test_domain_locations(field: str | None, orm: str, omi: str) -> None:
    assert hl7_location(field, env("ORM", "O01", "2.3.1")) == orm
    assert hl7_location(field, env("OMI", "O23")) == omi


def test_omg_start_location_is_tq1() -> None:
    assert hl7_location("ScheduledProcedureStepStartDate", env("OMG", "O19")) == "TQ1^1^7"
    assert hl7_location("AccessionNumber", env("OMG", "O19")) == "OBR^1^18"


def test_error_for_domain_full() -> None:
    exc = MissingValueError("StudyInstanceUID (Type 1) is missing", field="StudyInstanceUID")
    error = error_for_domain(exc, env())
    assert ack(env(), AckCode.AE, error).endswith(
        "ERR||IPC^1^3|101^Required field missing^HL70357|E||||"
        "StudyInstanceUID (Type 1) is missing\r"
    )
