"""ADT fixtures -> patient commands; router decisions for unsupported messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.domain.intake import (
    PatientIdentifierChange,
    PatientMerge,
    PatientRegistration,
    PatientUpdate,
)
from app.domain.items import PatientData
from hl7_ingest.errors import Hl7Error, MessageError, MessageRejected
from hl7_ingest.parse import decode, envelope
from hl7_ingest.router import SUPPORTED, to_command

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"

MUSTERMANN = PatientData(
    patient_id="PAT010",
    name="MUSTERMANN^MAX^^PROF. DR.",
    issuer_of_patient_id="HOSP",
    birth_date="19600229",
    sex="M",
)


def command(name: str) -> Any:
    text = decode((DATA / name).read_bytes())
    return to_command(text, envelope(text))


def from_text(text: str) -> Any:
    return to_command(text, envelope(text))


@pytest.mark.parametrize("name", ["adt_a01.hl7", "adt_a04.hl7", "adt_a05.hl7"])
def test_registration(name: str) -> None:
    assert command(name) == PatientRegistration(patient=MUSTERMANN)


def test_a08_name_change() -> None:
    assert command("adt_a08.hl7") == PatientUpdate(
        patient=PatientData(
            patient_id="PAT010",
            name="MUSTERMANN-SCHMIDT^MAX^^PROF. DR.",
            issuer_of_patient_id="HOSP",
            birth_date="19600229",
            sex="M",
        )
    )


def test_a40_merge() -> None:
    assert command("adt_a40.hl7") == PatientMerge(
        surviving=PatientData(
            patient_id="PAT010",
            name="MUSTERMANN^MAX",
            issuer_of_patient_id="HOSP",
            birth_date="19600229",
            sex="M",
        ),
        prior_patient_id="PAT099",
        prior_issuer="HOSP",
    )


def test_a47_identifier_change() -> None:
    assert command("adt_a47.hl7") == PatientIdentifierChange(
        patient=PatientData(
            patient_id="PAT011", name="MUSTERMANN^MAX", issuer_of_patient_id="HOSP"
        ),
        prior_patient_id="PAT010",
        prior_issuer="HOSP",
    )


ADT = "MSH|^~\\&|ADT|HOSP|MWL|RAD|20250101120000||ADT^{event}|C1|P|2.5.1\r"


@pytest.mark.parametrize(
    ("sex", "expected"),
    [("M", "M"), ("F", "F"), ("O", "O"), ("U", ""), ("A", "O"), ("N", "O"), ("X", ""), ("f", "F")],
)
def test_sex_mapping(sex: str, expected: str) -> None:
    text = ADT.format(event="A08") + f"PID|1||P1||DOE^JANE|||{sex}\r"
    assert from_text(text).patient.sex == expected


def test_birth_date_from_timestamp() -> None:
    text = ADT.format(event="A04") + "PID|1||P1||DOE^JANE||197001151230\r"
    assert from_text(text).patient.birth_date == "19700115"


@pytest.mark.parametrize(
    ("event", "body", "code", "where"),
    [
        ("A40", "PID|1||P1||DOE\r", 101, "MRG^1^1"),
        ("A40", "PID|1||P1||DOE\rMRG|\r", 101, "MRG^1^1"),
        ("A47", "PID|1||P1||DOE\r", 101, "MRG^1^1"),
        ("A40", "PID|1||P1||DOE\rMRG|P0\rPID|2||P2||X\rMRG|P9\r", 207, "MRG^2"),
        ("A01", "PID|1||||DOE\r", 101, "PID^1^3"),
        ("A04", "PID|1||P1\r", 101, "PID^1^5"),
        ("A08", "PID|1||P1||DOE||19700231\r", 102, "PID^1^7"),
        ("A01", "EVN|A01\r", 100, "PID^1"),
    ],
)
def test_adt_errors(event: str, body: str, code: int, where: str) -> None:
    with pytest.raises(MessageError) as info:
        from_text(ADT.format(event=event) + body)
    assert (info.value.code, info.value.location) == (code, where)


def test_a40_without_name_is_accepted() -> None:
    msg = from_text(ADT.format(event="A40") + "PID|1||P1\rMRG|P0^^^OLD\r")
    assert msg == PatientMerge(
        surviving=PatientData(patient_id="P1", name=""), prior_patient_id="P0", prior_issuer="OLD"
    )


# --- router -------------------------------------------------------------------------------


def test_supported_pairs() -> None:
    assert set(SUPPORTED) == {
        ("ORM", "O01"),
        ("OMI", "O23"),
        ("OMG", "O19"),
        ("ADT", "A01"),
        ("ADT", "A04"),
        ("ADT", "A05"),
        ("ADT", "A08"),
        ("ADT", "A28"),
        ("ADT", "A29"),
        ("ADT", "A31"),
        ("ADT", "A40"),
        ("ADT", "A47"),
        ("SIU", "S12"),
        ("SIU", "S13"),
        ("SIU", "S14"),
        ("SIU", "S15"),
    }


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        (
            "broken_oru_r01.hl7",
            200,
            "message type 'ORU' is not supported; supported: ADT, OMG, OMI, ORM, SIU",
        ),
        (
            "broken_adt_a99.hl7",
            201,
            "event 'A99' of ADT is not supported; supported: "
            "A01, A04, A05, A08, A28, A29, A31, A40, A47",
        ),
    ],
)
def test_unsupported_fixtures(name: str, code: int, text: str) -> None:
    with pytest.raises(MessageRejected) as info:
        command(name)
    assert (info.value.code, info.value.location, info.value.text) == (code, "MSH^1^9", text)


@pytest.mark.parametrize(
    ("msh_tail", "code", "where"),
    [
        ("ADT^A08|C1|X|2.5.1", 202, "MSH^1^11"),
        ("ADT^A08|C1|P|3.0", 203, "MSH^1^12"),
        ("ORM|C1|P|2.3.1", 201, "MSH^1^9"),
    ],
)
def test_envelope_rejections(msh_tail: str, code: int, where: str) -> None:
    text = f"MSH|^~\\&|A|B|C|D|20250101||{msh_tail}\rPID|1||P1||DOE\r"
    with pytest.raises(MessageRejected) as info:
        from_text(text)
    assert (info.value.code, info.value.location) == (code, where)


def test_every_broken_fixture_raises_an_hl7_error() -> None:
    for path in sorted(DATA.glob("broken_*.hl7")):
        with pytest.raises(Hl7Error):
            text = decode(path.read_bytes())
            to_command(text, envelope(text))


def test_every_good_fixture_decodes() -> None:
    for path in sorted(DATA.glob("*.hl7")):
        if path.name.startswith("broken_"):
            continue
        text = decode(path.read_bytes())
        assert to_command(text, envelope(text)) is not None, path.name
