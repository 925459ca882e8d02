"""The one ER7 segment writer shared by ACKs and status messages: escaping, fields, MSH."""

from __future__ import annotations

from datetime import datetime

from hl7_ingest.segments import components, escape, message, msh, segment, sparse_segment

NOW = datetime(2025, 1, 1, 12, 0, 0)


def test_escape_every_delimiter() -> None:
    assert escape("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"


def test_escape_keeps_literal_escape_lookalikes() -> None:
    assert escape("C:\\F\\x") == "C:\\E\\F\\E\\x"
    assert escape("two\nlines") == "two lines"
    assert escape("two\r\nlines") == "two lines"
    assert escape("plain") == "plain"
    assert escape("") == ""


def test_segment_drops_trailing_empty_fields_unless_told() -> None:
    assert segment("PID", "1", "", "P1", "", "") == "PID|1||P1"
    assert segment("MSA", "AR", "", trim=False) == "MSA|AR|"
    assert segment("TQ1", "1") == "TQ1|1"
    assert segment("IPC") == "IPC"


def test_sparse_segment_places_fields_by_number() -> None:
    assert sparse_segment("ORC", {1: "SC", 5: "IP", 16: ""}) == "ORC|SC||||IP"
    assert sparse_segment("OBR", {3: "F1", 1: "1"}) == "OBR|1||F1"


def test_components_escape_and_drop_trailing_empties() -> None:
    assert components("P|1", "", "", "A^B") == "P\\F\\1^^^A\\S\\B"
    assert components("DOE", "JANE", "", "") == "DOE^JANE"
    assert components("", "") == ""


def header(**changes: str) -> str:
    values = {
        "sending_application": "MWLBROKER",
        "sending_facility": "RAD",
        "control_id": "A0001",
        "processing_id": "P",
        "version": "2.5.1",
        **changes,
    }
    return msh(now=NOW, message_type=("ACK", "O23", "ACK"), **values)


def test_msh_fields_one_to_twelve() -> None:
    assert header() == "MSH|^~\\&|MWLBROKER|RAD|||20250101120000||ACK^O23^ACK|A0001|P|2.5.1"


def test_msh_escapes_its_values_and_puts_the_charset_in_msh_18() -> None:
    out = header(receiving_application="R|S", control_id="X^1", charset="8859/1")
    fields = out.split("|")
    assert fields[4] == "R\\F\\S" and fields[9] == "X\\S\\1"
    assert len(fields) == 18 and fields[17] == "8859/1"  # fields[n - 1] is MSH-n


def test_message_terminates_every_segment_with_cr() -> None:
    assert message(["MSH|x", "MSA|AA|1"]) == "MSH|x\rMSA|AA|1\r"
    assert message([]) == ""
