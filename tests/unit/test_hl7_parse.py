"""Character sets, segment separators, envelope (MSH) and field access of hl7_ingest.parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from hl7_ingest import parse
from hl7_ingest.errors import MessageError, MessageRejected
from hl7_ingest.parse import (
    Envelope,
    Hl7Message,
    decode,
    default_structure,
    dicom_charset,
    envelope,
    normalize_segments,
    unescape,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"


def fixture_text(name: str) -> str:
    return decode((DATA / name).read_bytes())


def msh(charset: str = "", *, msg_type: str = "ADT^A08", version: str = "2.5.1") -> str:
    head = f"MSH|^~\\&|RIS|HOSP|MWL|RAD|20250101120000||{msg_type}|C1|P|{version}"
    return head + ("||||||" + charset if charset else "")


# --- decode -------------------------------------------------------------------------------


def test_decode_latin1_fixture() -> None:
    text = fixture_text("orm_latin1.hl7")
    assert "PID|1||PAT020^^^HOSP^MR||MÜLLER^JOSÉ^^^|" in text


def test_decode_utf8_greek_fixture() -> None:
    text = fixture_text("omi_utf8_greek.hl7")
    assert "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΑΝΝΗΣ" in text


@pytest.mark.parametrize(
    ("charset", "codec", "name"),
    [
        ("8859/1", "latin-1", "Ångström"),
        ("8859/2", "iso8859-2", "Łódź"),
        ("8859/5", "iso8859-5", "Иванов"),
        ("8859/7", "iso8859-7", "Παπαδόπουλος"),
        ("8859/9", "iso8859-9", "Şahin"),
        ("8859/15", "iso8859-15", "Œuvre€"),
        ("UNICODE UTF-8", "utf-8", "山田^太郎"),
        ("ISO IR87", "iso2022_jp", "山田^太郎"),
    ],
)
def test_decode_each_charset(charset: str, codec: str, name: str) -> None:
    raw = (msh(charset) + "\rPID|1||P1||" + name + "\r").encode(codec)
    text = decode(raw)
    assert text.endswith(f"PID|1||P1||{name}\r")


def test_decode_plain_ascii_without_msh18() -> None:
    assert decode((msh() + "\rPID|1||P1||DOE\r").encode()) == msh() + "\rPID|1||P1||DOE\r"


def test_decode_declared_ascii_with_latin1_bytes_is_refused() -> None:
    # valid neither as ASCII nor as UTF-8: AE (not stored garbled), issue 10 part 3
    with pytest.raises(MessageError) as info:
        decode((DATA / "broken_ascii_non_ascii.hl7").read_bytes())
    assert info.value.code == 207
    assert info.value.location == "MSH^1^18"
    assert "0xDC" in info.value.text


def test_decode_bytes_invalid_in_declared_utf8_are_refused() -> None:
    with pytest.raises(MessageError) as info:
        decode((msh("UNICODE UTF-8") + "\rPID|1||P1||M\xfcller\r").encode("latin-1"))
    assert (info.value.code, info.value.location) == (207, "MSH^1^18")


def test_decode_unknown_charset_is_rejected() -> None:
    with pytest.raises(MessageRejected) as info:
        decode((msh("EBCDIC") + "\r").encode())
    assert info.value.code == 207
    assert info.value.location == "MSH^1^18"
    assert info.value.text.startswith("unsupported character set 'EBCDIC' in MSH-18")


def test_decode_msh18_is_the_18th_field() -> None:
    # MSH-17 (country) = 8859/1 must not be taken for MSH-18.
    raw = b"MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5|||||8859/1|\rPID|1\r"
    assert decode(raw).startswith("MSH|")


def test_decode_without_msh_keeps_text_for_envelope_to_reject() -> None:
    text = decode((DATA / "broken_no_msh.hl7").read_bytes())
    with pytest.raises(MessageRejected) as info:
        envelope(text)
    assert (info.value.code, info.value.location) == (100, "MSH^1")


def test_newline_separated_fixture_is_normalised() -> None:
    raw = (DATA / "orm_newlines.hl7").read_bytes()
    assert b"\r" not in raw
    text = decode(raw)
    assert "\n" not in text
    assert text.count("\r") == 6
    assert text.endswith("ZDS|1.2.840.113619.2.55.3.1001^MWLBROKER^Application^DICOM\r")


def test_normalize_segments_accepts_crlf_and_framing() -> None:
    assert normalize_segments("\x0bMSH|^~\\&|A\r\nPID|1\n\nPV1|1\r\x1c\r") == (
        "MSH|^~\\&|A\rPID|1\rPV1|1\r"
    )


def test_dicom_charset() -> None:
    assert dicom_charset("8859/1") == "ISO_IR 100"
    assert dicom_charset("UNICODE UTF-8") == "ISO_IR 192"
    assert dicom_charset("ISO IR87") == "ISO 2022 IR 87"
    assert dicom_charset("") == ""


# --- envelope -----------------------------------------------------------------------------


def test_envelope_of_orm() -> None:
    assert envelope(fixture_text("orm_o01_nw.hl7")) == Envelope(
        sending_application="RIS",
        sending_facility="HOSP",
        receiving_application="MWLBROKER",
        receiving_facility="RADIOLOGY",
        control_id="MSG00001",
        message_type="ORM",
        trigger_event="O01",
        structure="ORM_O01",
        version="2.3.1",
        charset="",
        processing_id="P",
    )


def test_envelope_of_omi_with_structure_and_charset() -> None:
    env = envelope(fixture_text("omi_utf8_greek.hl7"))
    assert (env.message_type, env.trigger_event, env.structure) == ("OMI", "O23", "OMI_O23")
    assert (env.version, env.charset, env.control_id) == ("2.5.1", "UNICODE UTF-8", "MSG04002")
    assert env.version_tuple == (2, 5, 1)


@pytest.mark.parametrize(
    ("msh9", "version", "structure"),
    [
        ("ADT^A04", "2.5.1", "ADT_A01"),
        ("ADT^A05", "2.3.1", "ADT_A01"),
        ("ADT^A08", "2.5.1", "ADT_A01"),
        ("ADT^A40", "2.5.1", "ADT_A39"),
        ("ADT^A47", "2.5.1", "ADT_A43"),
        ("ADT^A47", "2.3.1", "ADT_A30"),
        ("ORM^O01", "2.3.1", "ORM_O01"),
        ("OMI^O23^OMI_O23", "2.5.1", "OMI_O23"),
        ("ADT^A01^ADT_A01", "2.5", "ADT_A01"),
    ],
)
def test_envelope_structure_default(msh9: str, version: str, structure: str) -> None:
    assert envelope(msh(msg_type=msh9, version=version)).structure == structure


def test_default_structure_of_unknown_pair() -> None:
    assert default_structure("ORU", "R01", "2.5.1") == "ORU_R01"
    assert default_structure("ACK", "", "2.3.1") == "ACK"


def test_envelope_components_and_escapes() -> None:
    text = "MSH|^~\\&|RIS^1.2.3^ISO|HOSP\\T\\1|||20250101||orm^o01|ID\\F\\7|P^T|2.3.1\r"
    env = envelope(text)
    assert env.sending_application == "RIS"
    assert env.sending_facility == "HOSP&1"
    assert env.control_id == "ID|7"
    assert (env.message_type, env.trigger_event) == ("ORM", "O01")
    assert env.processing_id == "P"


def test_envelope_missing_msh9() -> None:
    with pytest.raises(MessageRejected) as info:
        envelope("MSH|^~\\&|RIS|HOSP|||20250101|||C1|P|2.5.1\r")
    assert (info.value.code, info.value.location) == (101, "MSH^1^9")


def test_envelope_missing_msh10() -> None:
    with pytest.raises(MessageRejected) as info:
        envelope("MSH|^~\\&|RIS|HOSP|||20250101||ADT^A08||P|2.5.1\r")
    assert (info.value.code, info.value.location) == (101, "MSH^1^10")


def test_envelope_with_custom_separators() -> None:
    env = envelope("MSH#:~\\&#RIS#HOSP###20250101##ADT:A08#C9#P#2.5.1\r")
    assert (env.message_type, env.trigger_event, env.control_id) == ("ADT", "A08", "C9")


# --- segments, fields, escapes ------------------------------------------------------------


def test_msh_field_numbering() -> None:
    msg = Hl7Message(msh("8859/1"))
    head = msg.segments[0]
    assert head.raw(1) == "|"
    assert head.raw(2) == "^~\\&"
    assert head.get(3) == "RIS"
    assert head.get(9, 2) == "A08"
    assert head.get(18) == "8859/1"


def test_field_component_subcomponent_repetition() -> None:
    msg = Hl7Message(msh() + '\rPID|1||A1^^^H1&1.2&ISO~B2^^^H2||""|x\r')
    pid = msg.first("PID")
    assert pid is not None
    assert pid.get(3) == "A1"
    assert pid.get(3, 4, 2) == "1.2"
    assert pid.get(3, 4, 1, repetition=2) == "H2"
    assert pid.get(3, repetition=3) == ""
    assert pid.get(5) == ""  # HL7 null
    assert pid.get(40) == ""


def test_unescape() -> None:
    assert unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f") == "a|b^c&d~e\\f"
    assert unescape("\\H\\bold\\N\\ line\\.br\\next") == "bold line\nnext"
    assert unescape("\\X4D\\\\XC3A9\\") == "Mé"
    assert unescape("plain") == "plain"


def test_message_without_msh_is_rejected() -> None:
    with pytest.raises(MessageRejected) as info:
        Hl7Message("PID|1\r")
    assert info.value.code == 100


@pytest.mark.parametrize(
    "raw",
    [
        b"MSH\rPID|1||P1\r",
        b"MSH\r\nPID|1||P1\r\nPV1|1|O\r",
        b"MSH|\rPID|1||P1\r",
        b"MSH|^~\r",
        b"MSH\r",
        b"MSH",
    ],
)
def test_short_msh_is_rejected_not_an_index_error(raw: bytes) -> None:
    text = parse.decode_text(raw).text  # no IndexError on a bare "MSH"
    with pytest.raises(MessageRejected) as caught:
        parse.envelope(text)
    assert caught.value.code == 100
    assert caught.value.location == "MSH^1"


ORIGINAL = "MSH|^~\\&|RIS|HOSP|B|R|20250101120000||ORM^O01|M1|P|2.3.1\rPID|1||P1\r"


@pytest.mark.parametrize(
    "copy",
    [
        ORIGINAL,
        ORIGINAL.replace("\r", "\r\n"),
        ORIGINAL.replace("\r", "\n"),
        ORIGINAL.replace("\r", " \r") + "\r\n",
        ORIGINAL.replace("20250101120000", "20250101120500"),  # MSH-7 stamped anew
    ],
)
def test_canonical_ignores_terminators_trailing_blanks_and_msh7(copy: str) -> None:
    assert parse.canonical(copy) == parse.canonical(ORIGINAL)


@pytest.mark.parametrize(
    "other",
    [
        ORIGINAL.replace("PID|1||P1", "PID|1||P2"),
        ORIGINAL.replace("ORM^O01", "ORM^O02"),
        ORIGINAL.replace("|P|2.3.1", "|P|2.5.1"),
        ORIGINAL + "PV1|1|O\r",
        ORIGINAL.replace("PID|1||P1", "PID|1|| P1"),
    ],
)
def test_canonical_sees_every_other_difference(other: str) -> None:
    assert parse.canonical(other) != parse.canonical(ORIGINAL)
