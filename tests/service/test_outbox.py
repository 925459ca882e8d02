"""The outbox service on real tables (SQLite and PostgreSQL): due order per key, blocking after a
failure, back-off, manual retry and marking sent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import SessionFactory, session_scope
from app.domain.errors import ConflictError, NotFoundError
from app.models import utcnow
from app.services import outbox

RETRY = {"minimum": 2.0, "maximum": 60.0}


def put(factory: SessionFactory, key: str, n: int = 1) -> int:
    with session_scope(factory) as session:
        return outbox.enqueue(
            session,
            channel=outbox.HL7,
            destination="ris:2575",
            ordering_key=key,
            kind="mpps-status",
            payload={"n": n},
        )


def due_ids(factory: SessionFactory, *, later: float = 0.0) -> list[int]:
    with session_scope(factory) as session:
        now = utcnow() + timedelta(seconds=later)
        return [m.id for m in outbox.due(session, now=now) if m.id is not None]


def fail(factory: SessionFactory, pk: int) -> None:
    with session_scope(factory) as session:
        outbox.mark_failed(session, pk=pk, error="RIS down", **RETRY)


def sent(factory: SessionFactory, pk: int) -> None:
    with session_scope(factory) as session:
        outbox.mark_sent(session, pk=pk)


def test_only_the_oldest_pending_message_of_a_key_is_due(session_factory: SessionFactory) -> None:
    a1 = put(session_factory, "A", 1)
    b1 = put(session_factory, "B", 1)
    a2 = put(session_factory, "A", 2)
    assert due_ids(session_factory) == [a1, b1]
    sent(session_factory, a1)
    assert due_ids(session_factory) == [b1, a2]


def test_a_failure_blocks_its_key_but_not_the_others(session_factory: SessionFactory) -> None:
    a1, a2 = put(session_factory, "A"), put(session_factory, "A")
    b1 = put(session_factory, "B")
    fail(session_factory, a1)
    assert due_ids(session_factory) == [b1]  # a1 waits for its retry; a2 stays behind it
    assert due_ids(session_factory, later=3.0) == [a1, b1]
    sent(session_factory, a1)
    assert due_ids(session_factory) == [a2, b1]


def test_mark_failed_records_the_try_and_schedules_the_next(
    session_factory: SessionFactory,
) -> None:
    pk = put(session_factory, "A")
    before = utcnow()
    fail(session_factory, pk)
    with session_scope(session_factory) as session:
        message = outbox.get_message(session, pk=pk)
        assert (message.state, message.attempts, message.last_error) == ("pending", 1, "RIS down")
        wait = message.next_attempt_at.replace(tzinfo=before.tzinfo) - before
        assert timedelta(seconds=1.5) < wait < timedelta(seconds=5)


def test_backoff_doubles_and_is_capped() -> None:
    delays = [outbox.backoff(n, minimum=2.0, maximum=60.0) for n in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert outbox.backoff(0, minimum=2.0, maximum=60.0) == 2.0


def test_retry_now_makes_a_failed_message_due(session_factory: SessionFactory) -> None:
    pk = put(session_factory, "A")
    fail(session_factory, pk)
    assert due_ids(session_factory) == []
    with session_scope(session_factory) as session:
        outbox.retry_now(session, pk=pk)
    assert due_ids(session_factory) == [pk]


def test_retry_now_refuses_a_sent_message_and_an_unknown_one(
    session_factory: SessionFactory,
) -> None:
    pk = put(session_factory, "A")
    sent(session_factory, pk)
    with session_scope(session_factory) as session, pytest.raises(ConflictError):
        outbox.retry_now(session, pk=pk)
    with session_scope(session_factory) as session, pytest.raises(NotFoundError):
        outbox.retry_now(session, pk=pk + 100)


def test_mark_sent(session_factory: SessionFactory) -> None:
    pk = put(session_factory, "A")
    fail(session_factory, pk)
    sent(session_factory, pk)
    with session_scope(session_factory) as session:
        message = outbox.get_message(session, pk=pk)
        assert (message.state, message.attempts, message.last_error) == ("sent", 2, "")
        assert message.sent_at is not None
    assert due_ids(session_factory, later=3600) == []


def test_list_messages_filters_newest_first(session_factory: SessionFactory) -> None:
    first, second, third = (put(session_factory, k) for k in ("A", "B", "C"))
    sent(session_factory, second)
    with session_scope(session_factory) as session:
        assert [m.id for m in outbox.list_messages(session)] == [third, second, first]
        assert [m.id for m in outbox.list_messages(session, state="pending")] == [third, first]
        assert [m.id for m in outbox.list_messages(session, channel="dicom")] == []
        assert [m.id for m in outbox.list_messages(session, limit=1, offset=1)] == [second]


def test_claim_is_won_by_one_worker_only(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        pk = outbox.enqueue(
            session,
            channel="hl7",
            destination="h:1",
            ordering_key="k",
            kind="mpps-status",
            payload={},
        )
    with session_scope(session_factory) as session:
        assert outbox.claim(session, pk=pk)
    with session_scope(session_factory) as session:
        assert not outbox.claim(session, pk=pk)  # leased: not due for anyone else
        assert outbox.due(session) == []
    with session_scope(session_factory) as session:
        assert outbox.claim(session, pk=pk, lease=0) is False  # still leased


def test_two_workers_send_each_message_once(session_factory: SessionFactory) -> None:
    """Two broker processes on one database: every message goes out exactly once."""
    import threading
    import time

    from app.delivery import OutboxMessageView, OutboxWorker

    with session_scope(session_factory) as session:
        ids = [
            outbox.enqueue(
                session,
                channel="hl7",
                destination="h:1",
                ordering_key=f"k{i}",
                kind="mpps-status",
                payload={},
            )
            for i in range(10)
        ]
    sent: list[int] = []
    lock = threading.Lock()

    def sender(view: OutboxMessageView) -> None:
        time.sleep(0.01)  # a send takes time: the other worker sees the message meanwhile
        with lock:
            sent.append(view.id)

    workers = [
        OutboxWorker(session_factory, {"hl7": sender}, retry_min=1, retry_max=1) for _ in range(2)
    ]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(sent) == ids
