"""Exactly-once acceptance of HL7 messages as a service, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlmodel import select

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import ValidationError
from app.domain.intake import OrderGroup, OrderMessage, PatientRegistration
from app.domain.items import OrderData, PatientData, ProcedureData, StepData
from app.domain.status import AuditSource
from app.group_commit import GroupCommit
from app.models import AuditEvent, Hl7Message, Patient
from app.services import hl7_accept, hl7_log, intake

POLICY = intake.IntakePolicy(order_control={})
RIS = Actor(AuditSource.HL7, "RIS", context="C1")
PATIENT = PatientData(patient_id="P1", name="DOE^JANE")


def record(control_id: str, ack: str, outcome: str = "AA") -> hl7_log.MessageRecord:
    return hl7_log.MessageRecord("RIS", "HOSP", control_id, "ADT^A01", outcome, "MSH|...", ack)


def accept(factory: SessionFactory, control_id: str, ack: str) -> object:
    return hl7_accept.accept(
        GroupCommit(factory),
        command=PatientRegistration(patient=PATIENT),
        policy=POLICY,
        actor=RIS,
        message=record(control_id, ack),
    )


def logged(factory: SessionFactory) -> list[tuple[str, str, str]]:
    with session_scope(factory) as session:
        rows = session.exec(select(Hl7Message).order_by(Hl7Message.id)).all()  # type: ignore[arg-type]
        return [(m.control_id, m.outcome, m.ack) for m in rows]


def test_accept_commits_change_and_log(session_factory: SessionFactory) -> None:
    assert accept(session_factory, "C1", "ACK-1") == hl7_accept.Accepted("ACK-1")
    assert logged(session_factory) == [("C1", "AA", "ACK-1")]
    with session_scope(session_factory) as session:
        assert [p.patient_id for p in session.exec(select(Patient))] == ["P1"]
        events = session.exec(select(AuditEvent)).all()
        assert {(a.source, a.actor, a.context) for a in events} == {("HL7", "RIS", "C1")}
    found = hl7_accept.earlier_ack(
        session_factory, sending_application="RIS", sending_facility="HOSP", control_id="C1"
    )
    assert found == "ACK-1"


def test_a_copy_gets_the_first_ack_and_changes_nothing(session_factory: SessionFactory) -> None:
    accept(session_factory, "C1", "ACK-1")
    again = accept(session_factory, "C1", "ACK-2")  # the unique index refuses the second log row
    assert again == hl7_accept.AlreadyAccepted("ACK-1")
    assert logged(session_factory) == [("C1", "AA", "ACK-1")]


def test_a_domain_error_commits_nothing(session_factory: SessionFactory) -> None:
    # the patient is written first, then the step finds no station: all of it rolls back
    # (an A40 naming an unknown prior patient used to be the error here; it is accepted now)
    order = OrderMessage(
        order_control="NW",
        order_status="",
        patient=PATIENT,
        groups=(
            OrderGroup(
                order=OrderData(accession_number="ACC1"),
                procedure=ProcedureData(requested_procedure_id="", study_instance_uid=""),
                step=StepData("", (), "20261201083000", "CT"),
            ),
        ),
    )
    with pytest.raises(ValidationError, match="no station is configured"):
        hl7_accept.accept(
            GroupCommit(session_factory),
            command=order,
            policy=intake.IntakePolicy(order_control={"NW": "SCHEDULED"}),
            actor=RIS,
            message=record("C1", "ACK-1"),
        )
    assert logged(session_factory) == []
    with session_scope(session_factory) as session:
        assert session.exec(select(Patient)).all() == []
        assert session.exec(select(AuditEvent)).all() == []


def test_refused_messages_are_logged_and_not_deduplicated(session_factory: SessionFactory) -> None:
    hl7_accept.record_refused(session_factory, message=record("C1", "AE-1", "AE"))
    hl7_accept.record_refused(session_factory, message=record("C1", "AE-2", "AE"))
    assert logged(session_factory) == [("C1", "AE", "AE-1"), ("C1", "AE", "AE-2")]
    assert accept(session_factory, "C1", "ACK-1") == hl7_accept.Accepted("ACK-1")
