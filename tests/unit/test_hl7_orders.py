"""ORM^O01 / OMI^O23 / OMG^O19 fixtures -> the exact OrderMessage (SPEC_DIGEST 3.4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.domain.intake import OrderGroup, OrderMessage
from app.domain.items import OrderData, PatientData, ProcedureData, StepData
from hl7_ingest.errors import MessageError
from hl7_ingest.parse import decode, envelope
from hl7_ingest.router import to_command

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"


def command(name: str) -> Any:
    text = decode((DATA / name).read_bytes())
    return to_command(text, envelope(text))


def from_text(text: str) -> Any:
    return to_command(text, envelope(text))


def sq(*items: dict[str, Any]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": list(items)}


def code(value: str, scheme: str, meaning: str) -> dict[str, Any]:
    return {
        "00080100": {"vr": "SH", "Value": [value]},
        "00080102": {"vr": "SH", "Value": [scheme]},
        "00080104": {"vr": "LO", "Value": [meaning]},
    }


def ns(value: str) -> dict[str, Any]:
    return {"00400031": {"vr": "UT", "Value": [value]}}


ORM_PATIENT = PatientData(
    patient_id="PAT001",
    name="DOE^JOHN^Q^DR^JR",  # XPN suffix^prefix reordered to PN prefix^suffix
    issuer_of_patient_id="HOSP",
    birth_date="19700115",
    sex="M",
    attributes={
        "00100024": sq(
            {
                "00400032": {"vr": "UT", "Value": ["1.2.3.4"]},
                "00400033": {"vr": "CS", "Value": ["ISO"]},
            }
        ),
        "00101002": sq(
            {
                "00100020": {"vr": "LO", "Value": ["99887766"]},
                "00100022": {"vr": "CS", "Value": ["TEXT"]},
                "00100021": {"vr": "LO", "Value": ["NATIONAL"]},
            }
        ),
        "00380500": {"vr": "LO", "Value": ["Biohazard"]},
        "00102000": {"vr": "LO", "Value": ["Contrast allergy"]},
    },
)
ORM_ORDER_1 = OrderData(
    accession_number="ACC0001",
    placer_order_number="PL1001",
    filler_order_number="FL2001",
    requesting_physician="HOUSE^GREGORY",
    referring_physician_name="SMITH^ANNA^B^DR^III",
    admission_id="V555",
    current_patient_location="RAD^101^2",
    attributes={"00400026": sq(ns("RIS")), "00400027": sq(ns("RAD")), "00380014": sq(ns("HOSP"))},
)
ORM_PROCEDURE_1 = ProcedureData(
    requested_procedure_id="RP0001",
    study_instance_uid="1.2.840.113619.2.55.3.1001",
    description="CT head without contrast",
    priority="STAT",
    attributes={
        "00321064": sq(code("CTHEADNC", "LN", "CT head without contrast")),
        "00401002": {"vr": "LO", "Value": ["Headache"]},
        "00401004": {"vr": "LO", "Value": ["WALK"]},
    },
)
ORM_STEP_1 = StepData(
    sps_id="SPS0001",
    station_ae_titles=(),
    start_datetime="20250102093000",
    modality="CT",
    performing_physician="KOWALSKI^ANNA",
    description="CT Head without contrast",
    attributes={"00400008": sq(code("CTH-P1", "RADLEX", "CT Head without contrast"))},
)
ORM_GROUP_1 = OrderGroup(order=ORM_ORDER_1, procedure=ORM_PROCEDURE_1, step=ORM_STEP_1)


def test_orm_nw_two_groups() -> None:
    assert command("orm_o01_nw.hl7") == OrderMessage(
        order_control="NW",
        order_status="SC",
        patient=ORM_PATIENT,
        groups=(
            ORM_GROUP_1,
            OrderGroup(
                order=OrderData(
                    accession_number="ACC0002",
                    placer_order_number="PL1002",
                    filler_order_number="FL2002",
                    referring_physician_name="SMITH^ANNA^B^DR^III",
                    admission_id="V555",
                    current_patient_location="RAD^101^2",
                    attributes={
                        "00400026": sq(ns("RIS")),
                        "00400027": sq(ns("RAD")),
                        "00380014": sq(ns("HOSP")),
                    },
                ),
                procedure=ProcedureData(
                    requested_procedure_id="RP0002",
                    study_instance_uid="1.2.840.113619.2.55.3.1002",
                    description="Chest X-ray",
                    priority="ROUTINE",
                    attributes={"00321064": sq(code("XRCHEST", "L", "Chest X-ray"))},
                ),
                step=StepData(
                    sps_id="",  # OBR-20 absent: the service derives it
                    station_ae_titles=(),
                    start_datetime="20250102100000",
                    modality="CR",
                    description="Chest X-ray",
                ),
            ),
        ),
    )


def test_orm_newlines_and_latin1_map_like_the_plain_fixture() -> None:
    newline = command("orm_newlines.hl7")
    assert newline.groups == (ORM_GROUP_1,)
    assert newline.patient == ORM_PATIENT
    latin = command("orm_latin1.hl7")
    assert latin.patient.name == "MÜLLER^JOSÉ"
    assert latin.groups == (ORM_GROUP_1,)


def test_orm_xo_takes_new_start_and_priority() -> None:
    msg = command("orm_o01_xo.hl7")
    assert (msg.order_control, msg.order_status) == ("XO", "SC")
    assert msg.groups[0].step.start_datetime == "20250103141500"
    assert msg.groups[0].procedure.priority == "ROUTINE"
    assert msg.groups[0].order == ORM_ORDER_1


def test_orm_xo_cm_and_sc_ip() -> None:
    completed = command("orm_o01_xo_cm.hl7")
    assert (completed.order_control, completed.order_status) == ("XO", "CM")
    assert completed.groups == (ORM_GROUP_1,)
    in_progress = command("orm_o01_sc_ip.hl7")
    assert (in_progress.order_control, in_progress.order_status) == ("SC", "IP")
    assert in_progress.groups == (ORM_GROUP_1,)


def test_orm_ca_identifies_the_order() -> None:
    msg = command("orm_o01_ca.hl7")
    assert (msg.order_control, msg.order_status) == ("CA", "CA")
    (group,) = msg.groups
    assert (group.order.accession_number, group.order.placer_order_number) == ("ACC0001", "PL1001")
    assert group.order.filler_order_number == "FL2001"
    assert group.procedure.requested_procedure_id == "RP0001"
    assert group.procedure.study_instance_uid == ""  # no ZDS in the cancel
    assert (group.step.sps_id, group.step.modality, group.step.start_datetime) == (
        "SPS0001",
        "CT",
        "",
    )


def test_orm_dc_without_start_or_modality() -> None:
    msg = command("orm_o01_dc.hl7")
    assert (msg.order_control, msg.order_status) == ("DC", "CA")
    (group,) = msg.groups
    assert group.order.accession_number == "ACC0001"
    assert group.procedure == ProcedureData(requested_procedure_id="", study_instance_uid="")
    assert group.step == StepData(sps_id="", station_ae_titles=(), start_datetime="", modality="")


OMI_ORDER_ATTRS = {"00400026": sq(ns("RIS")), "00400027": sq(ns("RAD"))}


def test_omi_nw_two_groups() -> None:
    msg = command("omi_o23_nw.hl7")
    assert (msg.order_control, msg.order_status) == ("NW", "SC")
    assert msg.patient == PatientData(
        patient_id="PAT002",
        name="SMITH^JANE^^MRS",
        issuer_of_patient_id="HOSP",
        birth_date="19851231",
        sex="F",
    )
    first, second = msg.groups
    assert first == OrderGroup(
        order=OrderData(
            accession_number="ACC3001",
            placer_order_number="PL3001",
            filler_order_number="FL4001",
            requesting_physician="JONES^MARK",
            referring_physician_name="JONES^MARK",
            admission_id="V777",
            current_patient_location="WARD3^12^A",
            attributes={
                **OMI_ORDER_ATTRS,
                "00080051": sq(
                    {
                        **ns("RAD"),
                        "00400032": {"vr": "UT", "Value": ["1.2.3.99"]},
                        "00400033": {"vr": "CS", "Value": ["ISO"]},
                    }
                ),
            },
        ),
        procedure=ProcedureData(
            requested_procedure_id="RP3001",
            study_instance_uid="1.2.826.0.1.3680043.8.498.1",
            description="MR knee left",
            priority="HIGH",
            attributes={"00321064": sq(code("MRKNEE-L", "LN", "MR knee left"))},
        ),
        step=StepData(
            sps_id="SPS3001",
            station_ae_titles=("MR1_AE",),
            start_datetime="20250315083000",
            modality="MR",
            description="Knee routine",
            station_name="MR1",
            location="MRROOM1",
            attributes={"00400008": sq(code("PROT-KNEE", "LOCAL", "Knee routine"))},
        ),
    )
    assert second == OrderGroup(
        order=OrderData(
            accession_number="ACC3002",
            placer_order_number="PL3002",
            filler_order_number="FL4002",
            referring_physician_name="JONES^MARK",
            admission_id="V777",
            current_patient_location="WARD3^12^A",
            attributes=OMI_ORDER_ATTRS,
        ),
        procedure=ProcedureData(
            requested_procedure_id="RP3002",
            study_instance_uid="1.2.826.0.1.3680043.8.498.2",
            description="US Abdomen",
            priority="ROUTINE",
            attributes={"00321064": sq(code("USABD", "L", "US Abdomen"))},
        ),
        step=StepData(
            sps_id="SPS3002",
            station_ae_titles=(),
            start_datetime="20250315091500",  # TQ1-7 without seconds
            modality="US",
            description="US Abdomen",
        ),
    )


def test_omi_greek_utf8() -> None:
    msg = command("omi_utf8_greek.hl7")
    assert msg.patient.name == "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΑΝΝΗΣ"
    assert [g.order.accession_number for g in msg.groups] == ["ACC3001", "ACC3002"]


def test_omg_nw() -> None:
    assert command("omg_o19_nw.hl7") == OrderMessage(
        order_control="NW",
        order_status="SC",
        patient=PatientData(
            patient_id="PAT003",
            name="BROWN^ALICE",
            issuer_of_patient_id="HOSP",
            birth_date="20010704",
            sex="",  # U -> empty
        ),
        groups=(
            OrderGroup(
                order=OrderData(
                    accession_number="ACC5001",
                    placer_order_number="PL5001",
                    filler_order_number="FL6001",
                    attributes={"00400026": sq(ns("EYE")), "00400027": sq(ns("EYE"))},
                ),
                procedure=ProcedureData(
                    requested_procedure_id="RP5001",
                    study_instance_uid="1.2.276.0.7230010.3.1.2.5001",
                    description="Optical coherence tomography",
                    priority="MEDIUM",
                    attributes={"00321064": sq(code("OCT", "L", "Optical coherence tomography"))},
                ),
                step=StepData(
                    sps_id="SPS5001",
                    station_ae_titles=(),
                    start_datetime="20250401140000",
                    modality="OPT",
                    description="Macula scan",
                    attributes={"00400008": sq(code("OCT-MAC", "LOCAL", "Macula scan"))},
                ),
            ),
        ),
    )


# --- inline variations --------------------------------------------------------------------


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields set (others empty), ``\r``-terminated."""
    values = [fields.get(i, "") for i in range(1, max(fields) + 1)]
    return "|".join([name, *values]) + "\r"


CT_OBR = seg("OBR", {1: "1", 18: "A1", 24: "CT"})
HEAD = "MSH|^~\\&|RIS|HOSP|MWL|RAD|20250101120000||ORM^O01|X1|P|2.3.1\r"
PID = "PID|1||P1^^^H||DOE^JOHN\r"


@pytest.mark.parametrize(
    ("orc7", "priority"),
    [
        ("S", "STAT"),
        ("A", "HIGH"),
        ("P", "HIGH"),
        ("C", "HIGH"),
        ("R", "ROUTINE"),
        ("T", "MEDIUM"),
        ("Z", ""),
        ("", ""),
    ],
)
def test_priority_mapping(orc7: str, priority: str) -> None:
    text = HEAD + PID + f"ORC|NW||||||^^^20250101080000^^{orc7}\r" + CT_OBR
    assert from_text(text).groups[0].procedure.priority == priority


def test_start_falls_back_to_obr27_and_date_only() -> None:
    text = HEAD + PID + "ORC|NW\r" + seg("OBR", {1: "1", 24: "CT", 27: "^^^20250101"})
    assert from_text(text).groups[0].step.start_datetime == "20250101000000"


def test_start_with_seconds_fraction_and_offset() -> None:
    text = HEAD + PID + "ORC|NW||||||^^^20250101081530.1234+0100\r" + CT_OBR
    assert from_text(text).groups[0].step.start_datetime == "20250101081530"


def test_obr_placer_filler_used_when_orc_has_none() -> None:
    text = (
        HEAD
        + PID
        + "ORC|NW||||||^^^202501010800\r"
        + seg("OBR", {1: "1", 2: "PO9", 3: "FO9", 24: "CT"})
    )
    order = from_text(text).groups[0].order
    assert (order.placer_order_number, order.filler_order_number) == ("PO9", "FO9")


def test_escaped_values_and_ideographic_names() -> None:
    text = (
        "MSH|^~\\&|RIS|HOSP|MWL|RAD|20250101120000||OMI^O23|X2|P|2.5.1||||||UNICODE UTF-8\r"
        "PID|1||P\\S\\1^^^H||YAMADA^TARO^^^^^^A~山田^太郎^^^^^^I~やまだ^たろう^^^^^^P\r"
        "ORC|NW\rTQ1|1||||||20250101080000\rOBR|1|||X^Knee\\T\\Hip\r"
        "IPC|ACC1|RP1|1.2.3|SPS1|mr\r"
    )
    msg = from_text(text)
    assert msg.patient.patient_id == "P^1"
    assert msg.patient.name == "YAMADA^TARO=山田^太郎=やまだ^たろう"
    assert msg.groups[0].procedure.description == "Knee&Hip"
    assert msg.groups[0].step.modality == "MR"


def test_obr_with_two_ipc_gives_two_steps() -> None:
    text = (
        "MSH|^~\\&|RIS|HOSP|MWL|RAD|20250101120000||OMI^O23|X3|P|2.5.1\r"
        + PID
        + "ORC|NW|PL1\rTQ1|1||||||20250101080000\rOBR|1|||X^Knee\r"
        "IPC|ACC1|RP1|1.2.3|SPS1|MR\rIPC|ACC1|RP1|1.2.3|SPS2|MR\r"
    )
    steps = [g.step.sps_id for g in from_text(text).groups]
    assert steps == ["SPS1", "SPS2"]


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "where"),
    [
        ("broken_orm_missing_pid3.hl7", 101, "PID^1^3"),
        ("broken_orm_bad_orc7.hl7", 102, "ORC^1^7^1^4"),
    ],
)
def test_fixture_errors(name: str, code: int, where: str) -> None:
    with pytest.raises(MessageError) as info:
        command(name)
    assert (info.value.code, info.value.location) == (code, where)


def test_bad_orc7_text() -> None:
    with pytest.raises(MessageError) as info:
        command("broken_orm_bad_orc7.hl7")
    assert info.value.text == (
        "SPS start date/time '2025-01-02 09:30' is not a date/time YYYYMMDDHHMM[SS]"
    )


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        (HEAD + "PID|1||P1\rORC|NW||||||^^^2025\r" + CT_OBR, 101, "PID^1^5"),
        (HEAD + PID + "ORC|NW||||||^^^202501010800\rOBR|1\r", 101, "OBR^1^24"),
        (HEAD + PID + "ORC|NW||||||^^^202513010800\r" + CT_OBR, 102, "ORC^1^7^1^4"),
        (HEAD + "PID|1||P1||DOE||1970-01-01\rORC|NW\r", 102, "PID^1^7"),
        (HEAD + PID + "OBR|1\r", 100, "ORC^1"),
        (HEAD + PID + "ORC|\rOBR|1\r", 101, "ORC^1^1"),
        (HEAD + PID + "ORC|NW||||||^^^202501010800\r", 100, "ORC^1"),
        (HEAD + PID + "ORC|CA|P1\rOBR|1\rORC|NW|P2\rOBR|2\r", 207, "ORC^2^1"),
        (HEAD + "ORC|NW\r", 100, "PID^1"),
        (
            "MSH|^~\\&|R|H|M|R|2025||OMI^O23|X|P|2.5.1\r"
            + PID
            + "ORC|NW\rTQ1|1||||||20250101\rOBR|1\rIPC|A|R|U|S\r",
            101,
            "IPC^1^5",
        ),
        (
            "MSH|^~\\&|R|H|M|R|2025||OMI^O23|X|P|2.5.1\r"
            + PID
            + "ORC|NW\rTQ1|1||||||2025011\rOBR|1\rIPC|A|R|U|S|MR\r",
            102,
            "TQ1^1^7",
        ),
    ],
)
def test_inline_errors(text: str, code: int, where: str) -> None:
    with pytest.raises(MessageError) as info:
        from_text(text)
    assert (info.value.code, info.value.location) == (code, where)


@pytest.mark.parametrize(
    "text",
    [
        HEAD + PID + "ORC|NW\r" + CT_OBR,
        "MSH|^~\\&|R|H|M|R|2025||OMI^O23|X|P|2.5.1\r" + PID + "ORC|NW\rOBR|1\rIPC|A|R|U|S|MR\r",
    ],
)
def test_missing_start_is_left_to_the_service(text: str) -> None:
    # BROKER_HL7_MISSING_START (now / reject) is applied by app.services.intake
    assert from_text(text).groups[0].step.start_datetime == ""


def test_cancel_does_not_require_patient_name_or_start() -> None:
    msg = from_text(HEAD + "PID|1||P1\rORC|CA|PL1\rOBR|1|PL1\r")
    assert msg.order_control == "CA"
    assert msg.patient.name == ""
    assert msg.groups[0].order.placer_order_number == "PL1"
