"""Status messages to the RIS: the exact segments of ORM^O01, ORU^R01 and OMI^O23."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from app.config import Settings
from app.domain.reports import StatusReport
from hl7_ingest.outbound.client import DeliveryError, check_ack
from hl7_ingest.outbound.messages import status_message, xpn

NOW = datetime(2026, 3, 1, 9, 30, 0)
AT = "20260301092500"
SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def payload(status: str = "IN PROGRESS", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "mpps_uid": "1.2.826.0.1.9",
        "status": status,
        "at": AT,
        "patient": {
            "patient_id": "P1",
            "issuer_of_patient_id": "HOSP",
            "name": "DOE^JANE^Q^DR^JR",
            "birth_date": "19800101",
            "sex": "F",
        },
        "order": {
            "accession_number": "ACC1",
            "placer_order_number": "PL1",
            "filler_order_number": "FI1",
        },
        "procedures": [
            {
                "requested_procedure_id": "RP1",
                "study_instance_uid": "1.2.3.4",
                "sps_id": "SPS1",
                "modality": "CT",
            }
        ],
        "discontinuation_reason": None,
    }
    data.update(changes)
    return data


def segments(data: dict[str, Any], message_type: str = "ORM") -> list[str]:
    report = StatusReport.from_payload(data)
    text = status_message(
        report, message_type=message_type, settings=SETTINGS, control_id="MWL7", now=NOW
    )
    assert text.endswith("\r")
    return text.split("\r")[:-1]


ORDER_CODE = {"I": "IP", "F": "CM", "X": "DC"}
PID = "PID|1||P1^^^HOSP||DOE^JANE^Q^JR^DR||19800101|F"
OBR_ORDER = "OBR|1|PL1|FI1|||||||||||||||ACC1|RP1|SPS1"


@pytest.mark.parametrize(
    ("status", "code"), [("IN PROGRESS", "IP"), ("COMPLETED", "CM"), ("DISCONTINUED", "DC")]
)
def test_orm_status(status: str, code: str) -> None:
    assert segments(payload(status)) == [
        "MSH|^~\\&|MWLBROKER|RADIOLOGY|||20260301093000||ORM^O01|MWL7|P|2.3.1",
        PID,
        f"ORC|SC|PL1|FI1||{code}||||{AT}",
        f"{OBR_ORDER}||||CT",
        "ZDS|1.2.3.4^MWLBROKER^Application^DICOM",
    ]


@pytest.mark.parametrize(
    ("status", "code"), [("IN PROGRESS", "I"), ("COMPLETED", "F"), ("DISCONTINUED", "X")]
)
def test_oru_status(status: str, code: str) -> None:
    assert segments(payload(status), "ORU") == [
        "MSH|^~\\&|MWLBROKER|RADIOLOGY|||20260301093000||ORU^R01^ORU_R01|MWL7|P|2.5.1",
        PID,
        f"ORC|SC|PL1|FI1||{ORDER_CODE[code]}||||{AT}",
        f"{OBR_ORDER}||{AT}||CT|{code}",
        f"OBX|1|ST|PPS-STATUS^Performed Procedure Step Status^L||{status}||||||{code}|||{AT}",
    ]


@pytest.mark.parametrize(
    ("status", "code"), [("IN PROGRESS", "IP"), ("COMPLETED", "CM"), ("DISCONTINUED", "DC")]
)
def test_omi_status(status: str, code: str) -> None:
    assert segments(payload(status), "OMI") == [
        "MSH|^~\\&|MWLBROKER|RADIOLOGY|||20260301093000||OMI^O23^OMI_O23|MWL7|P|2.5.1",
        PID,
        f"ORC|SC|PL1|FI1||{code}||||{AT}",
        "TQ1|1",
        f"{OBR_ORDER}||||CT",
        "IPC|ACC1|RP1|1.2.3.4|SPS1|CT",
    ]


def test_discontinuation_reason_goes_to_orc_16() -> None:
    reason = {"code_value": "110514", "coding_scheme": "DCM", "code_meaning": "Wrong worklist"}
    orc = segments(payload("DISCONTINUED", discontinuation_reason=reason))[2]
    assert orc == f"ORC|SC|PL1|FI1||DC||||{AT}|||||||110514^Wrong worklist^DCM"


def test_one_order_group_per_procedure() -> None:
    second = {
        "requested_procedure_id": "RP2",
        "study_instance_uid": "1.2.3.5",
        "sps_id": "SPS2",
        "modality": "MR",
    }
    data = payload("COMPLETED")
    data["procedures"].append(second)
    names = [s[:3] for s in segments(data)]
    assert names == ["MSH", "PID", "ORC", "OBR", "ZDS", "ORC", "OBR", "ZDS"]
    assert segments(data)[6] == "OBR|2|PL1|FI1|||||||||||||||ACC1|RP2|SPS2||||MR"


def test_field_text_is_escaped() -> None:
    data = payload(
        patient={"patient_id": "P|1", "issuer_of_patient_id": "A^B", "name": "O&BRIEN^JO~E"},
        order={"accession_number": "A\\1", "placer_order_number": "", "filler_order_number": ""},
    )
    seg = segments(data)
    assert seg[1] == "PID|1||P\\F\\1^^^A\\S\\B||O\\T\\BRIEN^JO\\R\\E"
    assert seg[3] == "OBR|1" + "|" * 17 + "A\\E\\1|RP1|SPS1||||CT"


@pytest.mark.parametrize(
    ("pn", "expected"),
    [
        ("DOE^JANE", "DOE^JANE"),
        ("DOE^JANE^^^JR", "DOE^JANE^^JR"),  # PN suffix (5th) -> XPN suffix (4th)
        ("DOE^^^DR", "DOE^^^^DR"),  # PN prefix (4th) -> XPN prefix (5th)
        ("DOE", "DOE"),
        ("", ""),
        (
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "Yamada^Tarou~山田^太郎^^^^^^I~やまだ^たろう^^^^^^P",
        ),
        ("=山田^太郎", "山田^太郎^^^^^^I"),
    ],
)
def test_person_name_to_xpn(pn: str, expected: str) -> None:
    assert xpn(pn) == expected


def test_non_ascii_text_declares_utf8_in_msh_18() -> None:
    data = payload(patient={"patient_id": "P1", "name": "MÜLLER^JÖRG"})
    msh = segments(data)[0]
    assert msh.split("|")[17] == "UNICODE UTF-8"
    assert segments(payload())[0].count("|") == 11  # ASCII: no MSH-18


def test_an_unscheduled_order_still_reports_its_order() -> None:
    seg = segments(payload(procedures=[]))
    assert seg[2:] == [f"ORC|SC|PL1|FI1||IP||||{AT}", "OBR|1|PL1|FI1|||||||||||||||ACC1"]


@pytest.mark.parametrize(("field", "value"), [("status", "SCHEDULED"), ("message_type", "ADT")])
def test_unknown_status_or_type_is_refused(field: str, value: str) -> None:
    kind = value if field == "message_type" else "ORM"
    data = payload(value) if field == "status" else payload()
    with pytest.raises(ValueError):
        report = StatusReport.from_payload(data)
        status_message(report, message_type=kind, settings=SETTINGS, control_id="1")


ACK = "MSH|^~\\&|RIS|H|MWLBROKER|RADIOLOGY|20260301||ACK^O01^ACK|9|P|2.5.1\r"


@pytest.mark.parametrize("code", ["AA", "CA"])
def test_positive_ack(code: str) -> None:
    check_ack(f"{ACK}MSA|{code}|MWL7\r", "MWL7")


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        (
            f"{ACK}MSA|AE|MWL7\rERR||ORC^1^2|204^Unknown key^HL70357|E||||no such order\r",
            "AE: no such order",
        ),
        (f"{ACK}MSA|AR|MWL7|order unknown\r", "AR: order unknown"),
        (f"{ACK}MSA|AA|MWL6\r", "not 'MWL7'"),
        (ACK, "no MSA"),
    ],
)
def test_negative_or_foreign_ack(reply: str, text: str) -> None:
    with pytest.raises(DeliveryError, match=text):
        check_ack(reply, "MWL7")
