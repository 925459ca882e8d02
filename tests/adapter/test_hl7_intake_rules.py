"""Issue 10 part 3 on real tables (SQLite and PostgreSQL): what the broker accepts from real
RIS messages, what it still refuses, and the ACK it sends (and keeps in the message log)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from app.config import Settings
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.domain.worklist import parse_worklist_query
from app.models import AuditEvent, Hl7Message, Patient, ScheduledProcedureStep
from app.services import stations, worklist
from hl7_ingest.handler import Hl7Handler

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"


def message(name: str) -> bytes:
    return (DATA / name).read_bytes()


def lines(ack: bytes) -> list[list[str]]:
    return [line.split("|") for line in ack.decode().split("\r") if line]


def error_of(segs: list[list[str]]) -> tuple[str, str, str]:
    """(location, table 0357 code, severity) of the one ERR of an ACK (v2.3.1: ERR-1 only)."""
    (err,) = [s for s in segs if s[0] == "ERR"]
    if segs[0][11] == "2.3.1":
        *where, code = err[1].split("^")
        return "^".join(where), code.split("&")[0], ""
    return err[2], err[3].split("^")[0], err[4]


def items(factory: SessionFactory, **keys: str) -> list[dict[str, Any]]:
    with session_scope(factory) as session:
        return list(worklist.find(session, query=parse_worklist_query(keys)))


def logged(factory: SessionFactory, control_id: str) -> Hl7Message:
    with session_scope(factory) as session:
        row = session.exec(select(Hl7Message).where(Hl7Message.control_id == control_id)).one()
        session.expunge(row)
        return row


@pytest.fixture
def handler(settings: Settings, session_factory: SessionFactory) -> Hl7Handler:
    with session_scope(session_factory) as session:
        for modality in ("CT", "CR", "MR", "US"):
            stations.create_station(
                session,
                data=stations.StationData(modality, f"{modality}01"),
                actor=Actor(AuditSource.REST),
            )
    return Hl7Handler(settings.hl7, session_factory)


# --- 1. descriptive values cut, identifiers refused ------------------------------------------


def test_long_descriptive_values_are_cut_and_warned(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    ack = handler.handle(message("omi_o23_long_values.hl7"))
    segs = lines(ack)
    assert segs[1][:3] == ["MSA", "AA", "MSG05001"]
    errs = [s for s in segs if s[0] == "ERR"]
    assert [(e[2], e[3].split("^")[0], e[4]) for e in errs] == [
        ("PV1^1^3", "104", "W"),
        ("OBR^1^31^1^2", "104", "W"),
        ("IPC^1^7", "104", "W"),
        ("IPC^1^8", "104", "W"),
        ("IPC^1^6^1^2", "104", "W"),
    ]
    (item,) = items(session_factory, AccessionNumber="ACC5001")
    step = item["00400100"]["Value"][0]
    assert step["00400010"]["Value"] == ["SIEMENS_AVANTO_F"]
    assert step["00400011"]["Value"] == ["MR ROOM 1 BASEME"]
    assert step["00400001"]["Value"] == ["MR1_AE"]
    assert len(step["00400007"]["Value"][0]) == 64
    row = logged(session_factory, "MSG05001")
    assert row.outcome == "AA"
    assert row.ack == ack.decode()  # the log keeps the ACK sent, warnings included
    assert "W 104 IPC^1^7" in row.error


def test_too_long_accession_is_still_refused(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    segs = lines(handler.handle(message("omi_o23_long_accession.hl7")))
    assert segs[1][:3] == ["MSA", "AE", "MSG05002"]
    (err,) = [s for s in segs if s[0] == "ERR"]
    assert err[2] == "IPC^1^1" and err[3].startswith("102^") and err[4] == "E"
    assert items(session_factory) == []


# --- 2. missing Accession Number --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "control_id", "where"),
    [
        ("orm_o01_no_accession.hl7", "MSG05101", "OBR^1^18"),
        ("omi_o23_no_accession.hl7", "MSG05102", "IPC^1^1"),
    ],
)
def test_order_without_accession_is_refused_by_default(
    handler: Hl7Handler, session_factory: SessionFactory, name: str, control_id: str, where: str
) -> None:
    segs = lines(handler.handle(message(name)))
    assert segs[1][:3] == ["MSA", "AE", control_id]
    assert error_of(segs) == (where, "101", "" if segs[0][11] == "2.3.1" else "E")
    assert items(session_factory) == []
    assert logged(session_factory, control_id).outcome == "AE"


def test_order_without_accession_is_taken_when_configured(
    settings: Settings, session_factory: SessionFactory, handler: Hl7Handler
) -> None:
    lenient = Hl7Handler(
        settings.hl7.model_copy(update={"missing_accession": "accept"}), session_factory
    )
    segs = lines(lenient.handle(message("omi_o23_no_accession.hl7")))
    assert segs[1][:3] == ["MSA", "AA", "MSG05102"]
    (item,) = items(session_factory)
    assert item["00080050"] == {"vr": "SH"}
    assert item["00401001"]["Value"] == ["RP5102"]


def test_update_without_accession_keeps_the_known_one(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("omi_o23_nw.hl7")))[1][1] == "AA"
    update = (
        message("omi_o23_nw.hl7")
        .replace(b"MSG01001", b"MSG05103")
        .replace(b"ORC|NW|", b"ORC|XO|")
        .replace(b"IPC|ACC3001^RAD^1.2.3.99^ISO|", b"IPC||")
    )
    assert lines(handler.handle(update))[1][:3] == ["MSA", "AA", "MSG05103"]
    (item,) = items(session_factory, StudyInstanceUID="1.2.826.0.1.3680043.8.498.1")
    assert item["00080050"]["Value"] == ["ACC3001"]


# --- 3. missing SPS start ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "accession"),
    [("orm_o01_no_start.hl7", "ACC5201"), ("omi_o23_no_start.hl7", "ACC5202")],
)
def test_order_without_start_is_scheduled_now_by_default(
    handler: Hl7Handler, session_factory: SessionFactory, name: str, accession: str
) -> None:
    before = datetime.now().replace(microsecond=0)
    assert lines(handler.handle(message(name)))[1][1] == "AA"
    after = datetime.now()
    (item,) = items(session_factory, AccessionNumber=accession)
    step = item["00400100"]["Value"][0]
    start = datetime.strptime(
        step["00400002"]["Value"][0] + step["00400003"]["Value"][0][:6], "%Y%m%d%H%M%S"
    )
    assert before <= start <= after


@pytest.mark.parametrize(
    ("name", "control_id", "where"),
    [
        ("orm_o01_no_start.hl7", "MSG05201", "ORC^1^7"),
        ("omi_o23_no_start.hl7", "MSG05202", "TQ1^1^7"),
    ],
)
def test_order_without_start_is_refused_when_configured(
    settings: Settings,
    session_factory: SessionFactory,
    handler: Hl7Handler,
    name: str,
    control_id: str,
    where: str,
) -> None:
    strict = Hl7Handler(
        settings.hl7.model_copy(update={"missing_start": "reject"}), session_factory
    )
    segs = lines(strict.handle(message(name)))
    assert segs[1][:3] == ["MSA", "AE", control_id]
    assert error_of(segs)[:2] == (where, "101")
    assert items(session_factory) == []


# --- 4. ADT person events (A28 add, A31 update, A29 delete) -----------------------------------


def patients(factory: SessionFactory) -> dict[str, str]:
    with session_scope(factory) as session:
        return {p.patient_id: p.name for p in session.exec(select(Patient)).all()}


def test_a31_updates_the_patient_and_its_items(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("omi_o23_nw.hl7")))[1][1] == "AA"
    assert lines(handler.handle(message("adt_a31.hl7")))[1][:3] == ["MSA", "AA", "MSG05301"]
    found = items(session_factory, PatientID="PAT002")
    assert len(found) == 2
    assert {i["00100010"]["Value"][0]["Alphabetic"] for i in found} == {"SMITH-BROWN^JANE^^MRS"}


def test_a28_adds_and_a29_deletes_a_person_without_orders(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("adt_a28.hl7")))[1][:3] == ["MSA", "AA", "MSG05302"]
    assert patients(session_factory) == {"PAT530": "DABROWSKI^ADAM"}
    assert lines(handler.handle(message("adt_a29.hl7")))[1][:3] == ["MSA", "AA", "MSG05303"]
    assert patients(session_factory) == {}
    with session_scope(session_factory) as session:
        deleted = session.exec(select(AuditEvent).where(AuditEvent.action == "delete")).all()
    assert [(e.entity, e.context) for e in deleted] == [("patient", "MSG05303")]


def test_a29_of_a_patient_with_orders_is_refused(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("omi_o23_nw.hl7")))[1][1] == "AA"
    a29 = message("adt_a29.hl7").replace(b"PAT530", b"PAT002")
    segs = lines(handler.handle(a29))
    assert segs[1][:3] == ["MSA", "AE", "MSG05303"]
    assert error_of(segs) == ("PID^1^3", "207", "E")
    assert "PAT002" in patients(session_factory)
    assert len(items(session_factory, PatientID="PAT002")) == 2


def test_a29_of_an_unknown_patient_changes_nothing(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("adt_a29.hl7")))[1][:3] == ["MSA", "AA", "MSG05303"]
    assert patients(session_factory) == {}


# --- 5. A40 / A47 naming a prior patient the broker does not know -----------------------------


def test_a47_with_unknown_prior_is_accepted_and_noted(
    handler: Hl7Handler, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    segs = lines(handler.handle(message("adt_a47.hl7")))
    assert segs[1][:3] == ["MSA", "AA", "MSG03006"] and len(segs) == 2
    assert patients(session_factory) == {"PAT011": "MUSTERMANN^MAX"}
    (note,) = [r for r in caplog.records if "nothing to change" in r.getMessage()]
    assert note.levelno == logging.INFO and "MSG03006" in note.getMessage()
    assert "MUSTERMANN" not in caplog.text and "PAT010" not in caplog.text


# --- 6. UTF-8 text labelled as a single-byte set ----------------------------------------------


def test_utf8_labelled_8859_1_is_stored_without_mojibake(
    handler: Hl7Handler, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hl7_ingest.handler")
    ack = handler.handle(message("orm_o01_utf8_labelled_8859_1.hl7"))
    assert lines(ack)[1][:3] == ["MSA", "AA", "MSG05401"]
    (item,) = items(session_factory, AccessionNumber="ACC5401")
    assert item["00100010"]["Value"][0]["Alphabetic"] == "WĄSIK^ŁUKASZ"
    assert item["00321060"]["Value"] == ["CT Głowy"]
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "MSG05401" in warning.getMessage() and "8859/1" in warning.getMessage()
    assert "WĄSIK" not in caplog.text


def test_utf8_without_msh18_is_stored_as_utf8(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("adt_a31_utf8_no_msh18.hl7")))[1][1] == "AA"
    assert patients(session_factory) == {"PAT542": "ŻÓŁTOWSKA^GRAŻYNA"}


def test_text_valid_in_neither_set_is_ae_and_not_stored(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    raw = message("broken_ascii_non_ascii.hl7")
    control_id = raw.split(b"\r")[0].split(b"|")[9].decode()
    segs = lines(handler.handle(raw))
    assert segs[1][:3] == ["MSA", "AE", control_id]
    assert error_of(segs)[:2] == ("MSH^1^18", "207")
    assert patients(session_factory) == {}
    assert logged(session_factory, control_id).outcome == "AE"


# --- 7. SIU^S12-S15 ---------------------------------------------------------------------------


def test_siu_books_reschedules_and_cancels(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    segs = lines(handler.handle(message("siu_s12.hl7")))
    assert segs[0][8] == "ACK^S12^ACK" and segs[1][:3] == ["MSA", "AA", "MSG06001"]
    (item,) = items(session_factory, AccessionNumber="ACC6001")
    step = item["00400100"]["Value"][0]
    assert step["00400001"]["Value"] == ["CT01"]  # station table by modality (AIG-4)
    assert (step["00400002"]["Value"], step["00400003"]["Value"]) == (["20250320"], ["093000"])
    assert step["00400020"]["Value"] == ["SCHEDULED"]
    assert step["00400011"]["Value"] == ["CTROOM1"]
    study_uid = item["0020000D"]["Value"][0]

    assert lines(handler.handle(message("siu_s13.hl7")))[1][:3] == ["MSA", "AA", "MSG06003"]
    (item,) = items(session_factory, AccessionNumber="ACC6001")
    step = item["00400100"]["Value"][0]
    assert (step["00400002"]["Value"], step["00400003"]["Value"]) == (["20250321"], ["110000"])
    assert item["0020000D"]["Value"] == [study_uid]  # the same item, moved

    assert lines(handler.handle(message("siu_s15.hl7")))[1][:3] == ["MSA", "AA", "MSG06004"]
    assert items(session_factory, AccessionNumber="ACC6001") == []  # left the worklist
    with session_scope(session_factory) as session:
        step_row = session.exec(select(ScheduledProcedureStep)).one()
    assert step_row.status == "CANCELED"


def test_siu_v231_with_zds_and_sch11_start(
    handler: Hl7Handler, session_factory: SessionFactory
) -> None:
    assert lines(handler.handle(message("siu_s12_v231_zds.hl7")))[1][:3] == [
        "MSA",
        "AA",
        "MSG06002",
    ]
    (item,) = items(session_factory, AccessionNumber="ACC6002")
    assert item["0020000D"]["Value"] == ["1.2.840.113619.2.55.3.6002"]
    assert item["00400100"]["Value"][0]["00400002"]["Value"] == ["20250320"]


def test_siu_cancel_of_an_unknown_appointment_is_ae_204(handler: Hl7Handler) -> None:
    segs = lines(handler.handle(message("siu_s15.hl7")))
    assert segs[1][:3] == ["MSA", "AE", "MSG06004"]
    assert error_of(segs)[1] == "204"
