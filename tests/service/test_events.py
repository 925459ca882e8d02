"""Change events: published after a commit, never after a rollback; bounded per subscriber."""

from __future__ import annotations

import pytest

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource, SpsStatus
from app.events import SUBSCRIBER_QUEUE, ChangeEvent, EventBus, install_after_commit
from app.services import worklist
from tests.support.items import mwl_item

REST = Actor(AuditSource.REST, "token:test")


def test_bus_fans_out_to_every_subscriber_and_forgets_the_gone() -> None:
    bus = EventBus()
    event = ChangeEvent("step", 1, "status", "STARTED")
    with bus.subscribe() as first, bus.subscribe() as second:
        bus.publish([event])
        assert first.get(timeout=1) == event
        assert second.get(timeout=1) == event
        assert first.get(timeout=0.01) is None
    assert bus.subscriber_count == 0
    bus.publish([event])  # nobody listens: nothing is kept


def test_a_slow_subscriber_overflows_instead_of_growing() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        bus.publish([ChangeEvent("step", n, "update") for n in range(SUBSCRIBER_QUEUE + 5)])
        assert sub.overflowed
        assert sub.queue.qsize() == SUBSCRIBER_QUEUE


def test_events_follow_the_commit(session_factory: SessionFactory) -> None:
    seen: list[ChangeEvent] = []
    install_after_commit(session_factory, seen.extend)
    with session_scope(session_factory) as session:
        stored = worklist.upsert_item(session, data=item_from_json(mwl_item()), actor=REST)
        assert seen == []  # nothing before the commit
    assert ChangeEvent("step", stored.step_pk, "create", "SCHEDULED") in seen
    assert {e.entity for e in seen} >= {"patient", "order", "procedure", "step"}

    seen.clear()
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        worklist.set_status(
            session, study_uid="1.2.3.4.1", sps_id="SPS1", status=SpsStatus.ARRIVED, actor=REST
        )
        raise RuntimeError("the transaction fails after the change")
    with session_scope(session_factory) as session:
        pass
    assert seen == []  # the rolled-back change told nobody

    with session_scope(session_factory) as session:
        worklist.set_status(
            session, study_uid="1.2.3.4.1", sps_id="SPS1", status=SpsStatus.ARRIVED, actor=REST
        )
    assert seen == [ChangeEvent("step", stored.step_pk, "status", "ARRIVED")]
