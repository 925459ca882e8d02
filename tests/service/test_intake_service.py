"""Order and patient intake (what HL7 messages become), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from app.config import DEFAULT_ORDER_CONTROL
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import ConflictError, NotFoundError, ValidationError
from app.domain.intake import (
    OrderGroup,
    OrderMessage,
    PatientIdentifierChange,
    PatientMerge,
    PatientUpdate,
)
from app.domain.items import OrderData, PatientData, ProcedureData, StepData
from app.domain.status import AuditSource
from app.domain.worklist import parse_worklist_query
from app.models import AuditEvent, Patient, ScheduledProcedureStep
from app.services import intake, stations, worklist

RIS = Actor(AuditSource.HL7, "RIS")
POLICY = intake.IntakePolicy(order_control=DEFAULT_ORDER_CONTROL)
JANE = PatientData(patient_id="P1", name="DOE^JANE", birth_date="19800101", sex="F")


def group(
    accession: str = "ACC1",
    *,
    study_uid: str = "",
    rp_id: str = "",
    modality: str = "CT",
    start: str = "20261201083000",
    location: str = "",
    stations_: tuple[str, ...] = (),
) -> OrderGroup:
    return OrderGroup(
        order=OrderData(accession_number=accession, placer_order_number=f"PL-{accession}"),
        procedure=ProcedureData(requested_procedure_id=rp_id, study_instance_uid=study_uid),
        step=StepData(
            sps_id="",
            station_ae_titles=stations_,
            start_datetime=start,
            modality=modality,
            location=location,
        ),
    )


def order(
    control: str,
    *groups: OrderGroup,
    status: str = "",
    patient: PatientData = JANE,
    policy: intake.IntakePolicy = POLICY,
    factory: Any = None,
) -> None:
    message = OrderMessage(control, status, patient, tuple(groups))
    with session_scope(factory) as session:
        intake.apply(session, message, policy=policy, actor=RIS)


def items(factory: SessionFactory, **keys: str) -> list[dict[str, Any]]:
    with session_scope(factory) as session:
        return list(worklist.find(session, query=parse_worklist_query(keys)))


def step_of(item: dict[str, Any], key: str) -> Any:
    return item["00400100"]["Value"][0][key]["Value"][0]


@pytest.fixture
def factory(session_factory: SessionFactory) -> SessionFactory:
    with session_scope(session_factory) as session:
        for modality, location, title in (
            ("CT", "", "CT01"),
            ("MR", "", "MR01"),
            ("CT", "ER", "CTER"),
        ):
            stations.create_station(
                session,
                data=stations.StationData(modality, title, location, f"{title}NAME"),
                actor=Actor(AuditSource.REST),
            )
    return session_factory


def test_new_order_with_two_procedures(factory: SessionFactory) -> None:
    order("NW", group("ACC1"), group("ACC2", modality="MR", location="ER"), factory=factory)
    found = {step_of(i, "00400009"): i for i in items(factory)}
    assert set(found) == {"ACC1", "ACC2"}  # SPS ID derived from the accession
    assert step_of(found["ACC1"], "00400001") == "CT01"
    assert step_of(found["ACC2"], "00400001") == "MR01"  # no MR at ER: the MR default
    assert step_of(found["ACC1"], "00400010") == "CT01NAME"
    assert found["ACC1"]["0020000D"]["Value"][0].startswith("2.25.")


def test_location_picks_its_station(factory: SessionFactory) -> None:
    order("NW", group(location="ER"), factory=factory)
    assert step_of(items(factory)[0], "00400001") == "CTER"


def test_station_from_the_message_wins(factory: SessionFactory) -> None:
    order("NW", group(stations_=("OMI01",)), factory=factory)
    assert step_of(items(factory)[0], "00400001") == "OMI01"


def test_no_station_for_the_modality(factory: SessionFactory) -> None:
    with pytest.raises(ValidationError) as info:
        order("NW", group(modality="US"), factory=factory)
    assert info.value.field == "ScheduledStationAETitle"
    assert "/api/stations" in info.value.message


def test_missing_study_uid_can_be_refused(factory: SessionFactory) -> None:
    strict = intake.IntakePolicy(DEFAULT_ORDER_CONTROL, generate_missing_study_uid=False)
    with pytest.raises(ValidationError) as info:
        order("NW", group(), policy=strict, factory=factory)
    assert info.value.field == "StudyInstanceUID"
    order("NW", group(study_uid="1.2.3"), policy=strict, factory=factory)
    assert items(factory)[0]["0020000D"]["Value"] == ["1.2.3"]


def test_update_without_uid_finds_the_same_item(factory: SessionFactory) -> None:
    order("NW", group(), factory=factory)
    uid = items(factory)[0]["0020000D"]["Value"][0]
    order("XO", group(start="20261202090000"), factory=factory)
    (item,) = items(factory)
    assert item["0020000D"]["Value"] == [uid]
    assert step_of(item, "00400002") == "20261202"


def test_cancel_keeps_the_step_visible(factory: SessionFactory) -> None:
    order("NW", group("ACC1"), group("ACC2"), factory=factory)
    order("CA", group("ACC1", modality="", start=""), status="CA", factory=factory)
    assert [step_of(i, "00400009") for i in items(factory)] == ["ACC2"]
    canceled = items(factory, ScheduledProcedureStepStatus="CANCELED")
    assert [step_of(i, "00400009") for i in canceled] == ["ACC1"]


@pytest.mark.parametrize(
    ("control", "status", "expected"),
    [
        ("DC", "", "DISCONTINUED"),
        ("XO", "CM", "COMPLETED"),
        ("SC", "IP", "STARTED"),
    ],
)
def test_status_controls(factory: SessionFactory, control: str, status: str, expected: str) -> None:
    order("NW", group(), factory=factory)
    order(control, group(modality="", start=""), status=status, factory=factory)
    with session_scope(factory) as session:
        (step,) = session.exec(select(ScheduledProcedureStep)).all()
    assert step.status == expected


def test_cancel_of_an_unknown_order(factory: SessionFactory) -> None:
    with pytest.raises(NotFoundError):
        order("CA", group("NOPE", modality="", start=""), factory=factory)


def test_unconfigured_order_control(factory: SessionFactory) -> None:
    with pytest.raises(ValidationError) as info:
        order("ZZ", group(), factory=factory)
    assert info.value.field == "OrderControl"


def test_a08_name_change_reaches_the_worklist(factory: SessionFactory) -> None:
    order("NW", group(), factory=factory)
    with session_scope(factory) as session:
        intake.apply(
            session, PatientUpdate(PatientData("P1", "DOE-SMITH^JANE")), policy=POLICY, actor=RIS
        )
    assert items(factory)[0]["00100010"]["Value"] == [{"Alphabetic": "DOE-SMITH^JANE"}]


def test_a40_moves_orders_and_history(factory: SessionFactory) -> None:
    order("NW", group("OLD"), patient=PatientData("TEMP1", "UNKNOWN^PATIENT"), factory=factory)
    order("NW", group("NEW"), factory=factory)
    with session_scope(factory) as session:
        intake.apply(
            session, PatientMerge(JANE, prior_patient_id="TEMP1"), policy=POLICY, actor=RIS
        )
    found = items(factory, PatientID="P1")
    assert sorted(step_of(i, "00400009") for i in found) == ["NEW", "OLD"]
    assert items(factory, PatientID="TEMP1") == []
    with session_scope(factory) as session:
        assert session.exec(select(func.count()).select_from(Patient)).one() == 1
        survivor = session.exec(select(Patient)).one()
        history = session.exec(
            select(AuditEvent).where(
                AuditEvent.entity == "patient", AuditEvent.entity_pk == survivor.id
            )
        ).all()
    assert {e.action for e in history} >= {"create", "merge"}
    assert sum(e.action == "create" for e in history) == 2  # the prior patient's history moved


def test_a40_with_an_unknown_prior_patient_merges_nothing(
    factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    order("NW", group(), factory=factory)
    caplog.set_level(logging.INFO, logger="app.services.intake")
    with session_scope(factory) as session:
        intake.apply(
            session,
            PatientMerge(JANE, prior_patient_id="GHOST"),
            policy=POLICY,
            actor=Actor(AuditSource.HL7, "RIS", context="MSG-A40"),
        )
    assert len(items(factory)) == 1  # the surviving patient's item is untouched
    (record,) = [r for r in caplog.records if "nothing to merge" in r.getMessage()]
    assert record.levelno == logging.INFO and "MSG-A40" in record.getMessage()
    assert "GHOST" not in record.getMessage() and "JANE" not in record.getMessage()


def test_a47_with_an_unknown_prior_identifier_changes_nothing(
    factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    order("NW", group(), patient=PatientData("OLDID", "DOE^JANE"), factory=factory)
    caplog.set_level(logging.INFO, logger="app.services.intake")
    with session_scope(factory) as session:
        intake.apply(
            session,
            PatientIdentifierChange(PatientData("NEWID", "DOE^JANE"), "GHOST"),
            policy=POLICY,
            actor=RIS,
        )
    assert [i["00100020"]["Value"] for i in items(factory)] == [["OLDID"]]
    assert any("nothing to change" in r.getMessage() for r in caplog.records)


def test_a47_changes_the_identifier(factory: SessionFactory) -> None:
    order("NW", group(), patient=PatientData("OLDID", "DOE^JANE"), factory=factory)
    with session_scope(factory) as session:
        intake.apply(
            session,
            PatientIdentifierChange(PatientData("NEWID", "DOE^JANE"), "OLDID"),
            policy=POLICY,
            actor=RIS,
        )
    assert [i["00100020"]["Value"] for i in items(factory)] == [["NEWID"]]
    order("NW", group("ACC9"), patient=PatientData("OTHER", "X^Y"), factory=factory)
    with pytest.raises(ConflictError), session_scope(factory) as session:
        intake.apply(
            session,
            PatientIdentifierChange(PatientData("NEWID", "X^Y"), "OTHER"),
            policy=POLICY,
            actor=RIS,
        )


def test_a_status_message_for_another_patients_study_is_refused(factory: SessionFactory) -> None:
    """A Study Instance UID names one procedure; a CA sent under another patient's PID must not
    cancel it (nor create that patient as a side effect)."""
    order("NW", group("ACC1", study_uid="1.2.3"), factory=factory)
    other = PatientData(patient_id="P2", name="ROE^RICHARD")
    with pytest.raises(ConflictError) as info:
        order("CA", group("ACC1", study_uid="1.2.3"), patient=other, factory=factory)
    assert info.value.field == "StudyInstanceUID"
    (item,) = items(factory, PatientID="P1")
    assert step_of(item, "00400020") == "SCHEDULED"
    with session_scope(factory) as session:
        assert session.exec(select(Patient).where(Patient.patient_id == "P2")).first() is None
