"""MPPS service: validation, linking, steps following the exam, outbox rows; both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import NotFoundError
from app.domain.items import item_from_json
from app.domain.mpps import (
    DuplicateInstanceError,
    InvalidAttributeValueError,
    MissingAttributeError,
    MissingAttributeValueError,
    MppsClosedError,
    NoSuchInstanceError,
    StartPerformedStep,
    UpdatePerformedStep,
)
from app.domain.status import AuditSource
from app.models import OutboxMessage, ScheduledProcedureStep
from app.services import mpps, worklist
from tests.support.items import mwl_item
from tests.support.mpps import as_json, n_create, n_set, ssas_item

RIS = mpps.Delivery(ris_endpoint="127.0.0.1:2576", forward=("PACS@127.0.0.1:11113",))
NONE = mpps.Delivery()


@pytest.fixture
def factory(session_factory: SessionFactory) -> SessionFactory:
    with session_scope(session_factory) as session:
        for index, sps in enumerate(("SPS1", "SPS2")):
            item = mwl_item(sps_id=sps, study_uid=f"1.2.3.4.{index + 1}", accession="A1")
            worklist.upsert_item(session, data=item_from_json(item), actor=Actor(AuditSource.REST))
    return session_factory


MODALITY = Actor(AuditSource.DICOM, "CT01")


def create(
    factory: SessionFactory, uid: str = "1.2.9.1", delivery: mpps.Delivery = NONE, **kwargs: Any
) -> mpps.MppsView:
    with session_scope(factory) as session:
        command = StartPerformedStep.from_json(uid, as_json(n_create(**kwargs)))
        return mpps.create(session, command=command, delivery=delivery, actor=MODALITY)


def update(
    factory: SessionFactory, uid: str = "1.2.9.1", delivery: mpps.Delivery = NONE, **kwargs: Any
) -> mpps.MppsView:
    with session_scope(factory) as session:
        command = UpdatePerformedStep(uid, as_json(n_set(**kwargs)))
        return mpps.update(session, command=command, delivery=delivery, actor=MODALITY)


def statuses(factory: SessionFactory) -> dict[str, str]:
    with session_scope(factory) as session:
        return {s.sps_id: s.status for s in session.exec(select(ScheduledProcedureStep))}


def test_full_cycle_moves_the_step(factory: SessionFactory) -> None:
    created = create(factory)
    assert created.status == "IN PROGRESS"
    assert [s.sps_id for s in created.linked_steps] == ["SPS1"]
    assert statuses(factory) == {"SPS1": "STARTED", "SPS2": "SCHEDULED"}
    done = update(factory)
    assert done.status == "COMPLETED" and done.end_datetime == "20261201090000"
    assert statuses(factory)["SPS1"] == "COMPLETED"
    with session_scope(factory) as session:
        stored = mpps.get(session, uid="1.2.9.1").attributes
    assert stored["00400340"]["Value"][0]["0020000E"]["Value"] == ["1.2.3.4.1.1"]


def test_discontinued_with_reason(factory: SessionFactory) -> None:
    create(factory, delivery=RIS)
    update(factory, status="DISCONTINUED", reason=True, delivery=RIS)
    assert statuses(factory)["SPS1"] == "DISCONTINUED"
    with session_scope(factory) as session:
        messages = session.exec(
            select(OutboxMessage).where(OutboxMessage.channel == "hl7").order_by(OutboxMessage.id)
        ).all()  # type: ignore[arg-type]
        payloads = [m.payload for m in messages]
        keys = {m.ordering_key for m in messages}
    assert [p["status"] for p in payloads] == ["IN PROGRESS", "DISCONTINUED"]
    assert payloads[1]["discontinuation_reason"]["code_value"] == "110514"
    assert payloads[1]["order"]["accession_number"] == "A1"
    assert len(keys) == 1  # one order, delivered in order


def test_grouped_case_links_several_steps(factory: SessionFactory) -> None:
    view = create(
        factory,
        ScheduledStepAttributesSequence=[
            ssas_item("1.2.3.4.1", "A1", "RP1", "SPS1"),
            ssas_item("1.2.3.4.2", "A1", "RP1", "SPS2"),
        ],
    )
    assert sorted(s.sps_id for s in view.linked_steps) == ["SPS1", "SPS2"]
    assert set(statuses(factory).values()) == {"STARTED"}


def test_unscheduled_is_kept_and_can_be_linked(factory: SessionFactory) -> None:
    view = create(factory, ScheduledStepAttributesSequence=[ssas_item("2.25.999")])
    assert view.linked_steps == ()
    with session_scope(factory) as session:
        assert [v.sop_instance_uid for v in mpps.list_mpps(session, unlinked=True)] == ["1.2.9.1"]
        linked = mpps.link(
            session, uid="1.2.9.1", steps=[("1.2.3.4.2", "SPS2")], delivery=NONE, actor=MODALITY
        )
    assert [s.sps_id for s in linked.linked_steps] == ["SPS2"]
    assert statuses(factory)["SPS2"] == "STARTED"
    with pytest.raises(NotFoundError), session_scope(factory) as session:
        mpps.link(session, uid="1.2.9.1", steps=[("9.9", "X")], delivery=NONE, actor=MODALITY)


def test_outbox_rows_are_written_with_the_change(factory: SessionFactory) -> None:
    create(factory, delivery=RIS)
    update(factory, delivery=RIS)
    with session_scope(factory) as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
        summary = [(r.channel, r.kind, r.destination) for r in rows]
    assert summary == [
        ("hl7", "mpps-status", "127.0.0.1:2576"),
        ("dicom", "mpps-create", "PACS@127.0.0.1:11113"),
        ("hl7", "mpps-status", "127.0.0.1:2576"),
        ("dicom", "mpps-set", "PACS@127.0.0.1:11113"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        (
            {"PerformedProcedureStepStatus": "COMPLETED"},
            InvalidAttributeValueError,
            "PerformedProcedureStepStatus",
        ),
        (
            {"PerformedProcedureStepStatus": "DONE"},
            InvalidAttributeValueError,
            "PerformedProcedureStepStatus",
        ),
        ({"PerformedProcedureStepID": None}, MissingAttributeError, "PerformedProcedureStepID"),
        ({"Modality": ""}, MissingAttributeValueError, "Modality"),
        (
            {"ScheduledStepAttributesSequence": None},
            MissingAttributeError,
            "ScheduledStepAttributesSequence",
        ),
        (
            {"ScheduledStepAttributesSequence": [ssas_item("")]},
            MissingAttributeValueError,
            "StudyInstanceUID",
        ),
    ],
)
def test_create_is_validated(
    factory: SessionFactory, kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as info:
        create(factory, **kwargs)
    assert info.value.field == field  # type: ignore[attr-defined]
    assert statuses(factory)["SPS1"] == "SCHEDULED"  # nothing happened


def test_duplicate_create(factory: SessionFactory) -> None:
    create(factory)
    with pytest.raises(DuplicateInstanceError):
        create(factory)


def test_set_rules(factory: SessionFactory) -> None:
    with pytest.raises(NoSuchInstanceError):
        update(factory, uid="9.9.9")
    create(factory)
    with pytest.raises(MissingAttributeValueError):
        update(factory, end=False)  # a final state needs its end date and time
    with pytest.raises(InvalidAttributeValueError) as info, session_scope(factory) as session:
        mpps.update(
            session,
            command=UpdatePerformedStep("1.2.9.1", {"00100020": {"vr": "LO", "Value": ["OTHER"]}}),
            delivery=NONE,
            actor=MODALITY,
        )
    assert info.value.field == "PatientID"
    update(factory)
    with pytest.raises(MppsClosedError):
        update(factory, status="DISCONTINUED")


def test_an_accession_shared_by_two_patients_moves_only_the_named_patients_step(
    factory: SessionFactory,
) -> None:
    """Accession Numbers are not unique across patients: the Study Instance UID decides, else
    the MPPS's Patient ID; an ambiguous reference links nothing rather than the wrong exam."""
    with session_scope(factory) as session:
        other = mwl_item(
            patient_id="P2",
            name="ROE^RICHARD",
            sps_id="SPS9",
            study_uid="1.2.3.4.9",
            accession="A1",
        )
        worklist.upsert_item(session, data=item_from_json(other), actor=Actor(AuditSource.REST))

    by_study = create(factory, ScheduledStepAttributesSequence=[ssas_item("1.2.3.4.1", "A1")])
    assert [s.sps_id for s in by_study.linked_steps] == ["SPS1"]

    ambiguous = create(
        factory,
        uid="1.2.9.2",
        PatientID="",
        ScheduledStepAttributesSequence=[ssas_item("2.25.777", "A1")],
    )
    assert ambiguous.linked_steps == ()  # A1 is P1's and P2's: left for reconciliation

    by_patient = create(
        factory,
        uid="1.2.9.3",
        PatientID="P2",
        ScheduledStepAttributesSequence=[ssas_item("2.25.778", "A1")],
    )
    assert [s.sps_id for s in by_patient.linked_steps] == ["SPS9"]
    assert statuses(factory) == {"SPS1": "STARTED", "SPS2": "SCHEDULED", "SPS9": "STARTED"}

