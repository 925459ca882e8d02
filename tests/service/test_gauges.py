"""The database gauges of GET /metrics: outbox backlog and MPPS by status; both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from app import metrics
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.mpps import StartPerformedStep, UpdatePerformedStep
from app.domain.status import AuditSource
from app.models import OutboxMessage
from app.services import gauges, mpps, outbox, worklist
from tests.support.items import mwl_item
from tests.support.mpps import as_json, n_create, n_set, ssas_item

RIS = mpps.Delivery(ris_endpoint="127.0.0.1:2576")
MODALITY = Actor(AuditSource.DICOM, "CT01")


def start(factory: SessionFactory, uid: str, study_uid: str, sps_id: str) -> None:
    """An MPPS for a new scheduled step, so that its status goes to the RIS (the outbox)."""
    item = mwl_item(sps_id=sps_id, study_uid=study_uid, accession=f"A{sps_id}")
    with session_scope(factory) as session:
        worklist.upsert_item(session, data=item_from_json(item), actor=Actor(AuditSource.REST))
    performed = ssas_item(study_uid, f"A{sps_id}", "RP1", sps_id)
    with session_scope(factory) as session:
        command = StartPerformedStep.from_json(uid, as_json(n_create(performed)))
        mpps.create(session, command=command, delivery=RIS, actor=MODALITY)


def complete(factory: SessionFactory, uid: str) -> None:
    with session_scope(factory) as session:
        command = UpdatePerformedStep(uid, as_json(n_set()))
        mpps.update(session, command=command, delivery=RIS, actor=MODALITY)


def read(factory: SessionFactory) -> gauges.OperationalGauges:
    with session_scope(factory) as session:
        return gauges.read(session)


def test_an_empty_database_has_nothing_pending(session_factory: SessionFactory) -> None:
    reading = read(session_factory)
    assert (reading.outbox_pending, reading.outbox_oldest_created_at) == (0, None)
    assert reading.mpps_by_status == {}


def test_pending_messages_and_mpps_statuses_are_counted(session_factory: SessionFactory) -> None:
    start(session_factory, "1.2.9.1", "1.2.3.4.1", "SPS1")
    start(session_factory, "1.2.9.2", "1.2.3.4.2", "SPS2")
    complete(session_factory, "1.2.9.2")
    with session_scope(session_factory) as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
        first, created = rows[0].id, rows[0].created_at
        assert first is not None
        outbox.mark_sent(session, pk=first)
    reading = read(session_factory)
    assert reading.mpps_by_status == {"IN PROGRESS": 1, "COMPLETED": 1}
    assert reading.outbox_pending == len(rows) - 1 == 2
    assert reading.outbox_oldest_created_at is not None
    assert reading.outbox_oldest_created_at.replace(tzinfo=None) > created.replace(tzinfo=None)


def test_gauges_show_every_mpps_status_and_the_age_of_the_oldest() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    reading = gauges.OperationalGauges(
        outbox_pending=3,
        outbox_oldest_created_at=(now - timedelta(seconds=90)).replace(tzinfo=None),
        mpps_by_status={"COMPLETED": 4},
    )
    metrics.set_database_gauges(reading, now=now)
    text = metrics.exposition().decode()
    assert "mwl_outbox_pending 3.0" in text
    assert "mwl_outbox_oldest_pending_age_seconds 90.0" in text
    assert 'mwl_mpps_instances{status="COMPLETED"} 4.0' in text
    assert 'mwl_mpps_instances{status="IN PROGRESS"} 0.0' in text
    assert 'mwl_mpps_instances{status="DISCONTINUED"} 0.0' in text
