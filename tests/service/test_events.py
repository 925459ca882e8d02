"""Change events: published after a commit, never after a rollback; bounded per subscriber."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource, SpsStatus
from app.events import (
    SUBSCRIBER_QUEUE,
    ChangeEvent,
    EventBus,
    PgEventRelay,
    install_after_commit,
    install_pg_notify,
)
from app.migrations import upgrade
from app.services import worklist
from tests.support.db import create_pg_database
from tests.support.items import mwl_item
from tests.support.net import wait_until

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


@pytest.mark.postgres
def test_two_brokers_on_postgresql_hear_each_other() -> None:
    """A change committed through one process's sessions reaches another process's bus."""
    url, drop = create_pg_database()
    try:
        upgrade(url)
        writer_engine, reader_bus = create_db_engine(url), EventBus()
        writer = create_session_factory(writer_engine)
        install_pg_notify(writer)
        relay = PgEventRelay(url, reader_bus)
        relay.start()
        try:
            wait_until(relay.listening.is_set, what="LISTEN")
            with reader_bus.subscribe() as sub:
                with pytest.raises(RuntimeError), session_scope(writer) as session:
                    worklist.upsert_item(session, data=item_from_json(mwl_item()), actor=REST)
                    raise RuntimeError("rolled back")
                with session_scope(writer) as session:
                    stored = worklist.upsert_item(
                        session, data=item_from_json(mwl_item()), actor=REST
                    )
                received = []
                while (event := sub.get(timeout=5)) is not None:
                    received.append(event)
                    if event.entity == "step":
                        break
                assert ChangeEvent("step", stored.step_pk, "create", "SCHEDULED") in received
                assert sub.get(timeout=0.3) is None  # the rolled-back change sent nothing
                assert not sub.overflowed

                # The database drops the LISTEN connection: once back, pages must reload.
                with writer_engine.connect() as conn:
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                        )
                    )
                wait_until(lambda: relay.connections == 2, timeout=20, what="LISTEN again")
                assert sub.overflowed
        finally:
            relay.stop()
            writer_engine.dispose()
    finally:
        drop()
