"""End to end: a real MLLP sender (``mllp_send``) to ``mwl-broker serve``, DCMTK findscu and REST
to see the result. Orders, a cancel, a name change and a merge, as a RIS sends them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hl7_ingest.mllp import END_BLOCK, START_BLOCK, frame
from tests.support.broker import BROKER_AE, BrokerProcess, running_broker
from tests.support.tools import findscu, mllp_send_executable

pytestmark = pytest.mark.interop

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"


def fixture_text(name: str) -> str:
    return (DATA / name).read_bytes().decode("latin-1")


def with_control_id(text: str, control_id: str, *replacements: tuple[str, str]) -> str:
    msh = text.split("\r", 1)[0].split("|")
    text = text.replace("|".join(msh), "|".join([*msh[:9], control_id, *msh[10:]]), 1)
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def send(port: int, messages: list[str], tmp_path: Path) -> list[str]:
    """Send over one connection; return MSA-1 of each ACK, in order."""
    batch = tmp_path / f"batch{len(list(tmp_path.iterdir()))}.mllp"
    batch.write_bytes(b"".join(frame(m.encode("latin-1")) for m in messages))
    done = subprocess.run(
        [str(mllp_send_executable()), "--file", str(batch), "--port", str(port), "127.0.0.1"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    acks = [line.strip(START_BLOCK + END_BLOCK + b"\n") for line in done.stdout.split(b"\n")]
    codes = []
    for ack in filter(None, acks):
        msa = next(s for s in ack.split(b"\r") if s.startswith(b"MSA"))
        codes.append(msa.split(b"|")[1].decode())
    return codes


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = next(gen := running_broker(tmp_path_factory.mktemp("hl7-broker")))
    for modality in ("CT", "CR"):
        response = httpx.post(
            f"{broker.base_url}/api/stations",
            json={"modality": modality, "ae_title": f"{modality}01"},
            headers=broker.headers,
        )
        assert response.status_code == 201, response.text
    yield broker
    next(gen, None)


def worklist(broker: BrokerProcess, tmp_path: Path, station: str, *keys: str) -> list:  # type: ignore[type-arg]
    out = tmp_path / f"find-{station}-{len(keys)}-{len(list(tmp_path.iterdir()))}"
    result = findscu(
        broker.dicom_port,
        BROKER_AE,
        out,
        keys=[
            "PatientName",
            "PatientID",
            "AccessionNumber",
            "RequestedProcedureID",
            "StudyInstanceUID",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=" + station,
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
            "ScheduledProcedureStepSequence[0].Modality",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
            "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName",
            *keys,
        ],
    )
    assert result.returncode == 0, result.output
    return result.responses


def rest_status(broker: BrokerProcess, accession: str) -> str:
    items = httpx.get(
        f"{broker.base_url}/api/mwlitems",
        params={"AccessionNumber": accession},
        headers=broker.headers,
    ).json()
    assert len(items) == 1, items
    return str(items[0]["00400100"]["Value"][0]["00400020"]["Value"][0])


def test_order_flow(broker: BrokerProcess, tmp_path: Path) -> None:
    new_order = fixture_text("orm_o01_nw.hl7")
    rename = with_control_id(fixture_text("adt_a08.hl7"), "E2E-A08", ("PAT010", "PAT001"))
    cancel_cr = with_control_id(
        fixture_text("orm_o01_ca.hl7"),
        "E2E-CA",
        ("PL1001", "PL1002"),
        ("FL2001", "FL2002"),
        ("ACC0001", "ACC0002"),
        ("RP0001", "RP0002"),
        ("SPS0001", ""),
        ("|CT", "|CR"),
    )
    assert send(broker.hl7_port, [new_order], tmp_path) == ["AA"]

    # NW: the CT step is on CT01's worklist with the mapped fields
    (ct,) = worklist(broker, tmp_path, "CT01")
    assert ct.AccessionNumber == "ACC0001" and ct.RequestedProcedureID == "RP0001"
    assert ct.PatientID == "PAT001" and str(ct.PatientName) == "DOE^JOHN^Q^DR^JR"
    assert ct.StudyInstanceUID == "1.2.840.113619.2.55.3.1001"
    step = ct.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT" and step.ScheduledProcedureStepID == "SPS0001"
    assert step.ScheduledProcedureStepStartDate == "20250102"
    assert step.ScheduledProcedureStepStartTime == "093000"
    assert str(step.ScheduledPerformingPhysicianName) == "KOWALSKI^ANNA"
    assert len(worklist(broker, tmp_path, "CR01")) == 1

    # CA and A08 in one batch over one connection (the A08 last: every order message carries
    # PID too, and the newest demographics win)
    assert send(broker.hl7_port, [cancel_cr, rename], tmp_path) == ["AA", "AA"]
    (ct,) = worklist(broker, tmp_path, "CT01")
    assert str(ct.PatientName) == "MUSTERMANN-SCHMIDT^MAX^^PROF. DR."
    assert worklist(broker, tmp_path, "CR01") == []  # gone from the worklist...
    assert rest_status(broker, "ACC0002") == "CANCELED"  # ...and CANCELED in REST

    # Redelivery: AA again, nothing changes
    assert send(broker.hl7_port, [new_order], tmp_path) == ["AA"]
    assert rest_status(broker, "ACC0002") == "CANCELED"
    log = httpx.get(
        f"{broker.base_url}/api/hl7/messages",
        params={"control_id": "MSG00001"},
        headers=broker.headers,
    )
    assert [m["outcome"] for m in log.json()] == ["AA"]


def test_merge_moves_steps_to_the_survivor(broker: BrokerProcess, tmp_path: Path) -> None:
    prior_order = with_control_id(
        fixture_text("orm_o01_nw.hl7"),
        "E2E-PRIOR",
        ("PAT001^", "PAT099^"),
        ("ACC0001", "ACC0099"),
        ("ACC0002", "ACC0098"),
        ("RP0001", "RP0099"),
        ("RP0002", "RP0098"),
        ("SPS0001", "SPS0099"),
        ("1.2.840.113619.2.55.3.1001", "1.2.840.113619.2.55.3.1099"),
        ("1.2.840.113619.2.55.3.1002", "1.2.840.113619.2.55.3.1098"),
    )
    merge = with_control_id(fixture_text("adt_a40.hl7"), "E2E-A40", ("PAT010", "PAT001"))
    assert send(broker.hl7_port, [prior_order, merge], tmp_path) == ["AA", "AA"]
    found = worklist(broker, tmp_path, "CT01", "PatientID=PAT001")
    assert {r.AccessionNumber for r in found} >= {"ACC0099"}
    assert worklist(broker, tmp_path, "CT01", "PatientID=PAT099") == []


def test_unsupported_message_is_rejected(broker: BrokerProcess, tmp_path: Path) -> None:
    assert send(broker.hl7_port, [fixture_text("broken_oru_r01.hl7")], tmp_path) == ["AR"]


def test_siu_s12_books_a_worklist_item(broker: BrokerProcess, tmp_path: Path) -> None:
    """A RIS that schedules with SIU: S12 books the step a modality then finds, S15 cancels it."""
    assert send(broker.hl7_port, [fixture_text("siu_s12.hl7")], tmp_path) == ["AA"]
    (item,) = worklist(broker, tmp_path, "CT01", "AccessionNumber=ACC6001")
    assert item.PatientID == "PAT601" and str(item.PatientName) == "BAKER^ALICE^M"
    assert item.StudyInstanceUID  # generated: the appointment carries none
    step = item.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT"  # AIG-4
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20250320",
        "093000",
    )  # AIS-4
    assert str(step.ScheduledPerformingPhysicianName) == "KOWALSKI^ANNA"  # AIP-3
    assert send(broker.hl7_port, [fixture_text("siu_s15.hl7")], tmp_path) == ["AA"]
    assert worklist(broker, tmp_path, "CT01", "AccessionNumber=ACC6001") == []
    assert rest_status(broker, "ACC6001") == "CANCELED"
