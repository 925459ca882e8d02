"""Change events: what services tell open pages after a commit.

Services note events on the session (``note(session, ...)``); the composition root installs one
after-commit hook (``install_after_commit``) that publishes them to the ``EventBus`` and runs the
other after-commit callbacks (waking the outbox). Nothing is published for a rolled-back change.
Subscribers (the server-sent events stream) each get a bounded queue; a slow subscriber loses
its oldest events and is told to reload rather than holding memory.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

LOG = logging.getLogger(__name__)
_PENDING_KEY = "mwl_events"
SUBSCRIBER_QUEUE = 1000
PG_CHANNEL = "mwl_events"
_PG_PAYLOAD_MAX = 7000  # NOTIFY payloads must stay under 8000 bytes


@dataclass(frozen=True)
class ChangeEvent:
    """One committed change: ``entity`` is ``step``, ``order``, ``patient``, ``mpps``...

    ``status`` is the new status where the change moved one.
    """

    entity: str
    pk: int
    action: str
    status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def note(session: Session, event_: ChangeEvent) -> None:
    """Remember ``event_`` until the session commits (dropped on rollback)."""
    session.info.setdefault(_PENDING_KEY, []).append(event_)


class Subscription:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.queue: queue.Queue[ChangeEvent | None] = queue.Queue(SUBSCRIBER_QUEUE)
        self.overflowed = False

    def get(self, timeout: float) -> ChangeEvent | None:
        """The next event, or ``None`` after ``timeout`` seconds (or when the bus closes)."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


class EventBus:
    """In-process fan-out of committed changes to every subscriber (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            for event_ in events:
                try:
                    sub.queue.put_nowait(event_)
                except queue.Full:
                    sub.overflowed = True

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        sub = Subscription(self)
        with self._lock:
            self._subscribers.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subscribers.discard(sub)

    def ask_reload(self) -> None:
        """Tell every subscriber it may have missed events (it then fetches everything)."""
        with self._lock:
            for sub in self._subscribers:
                sub.overflowed = True

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)


AfterCommit = Callable[[Sequence[ChangeEvent]], None]


def install_after_commit(factory: Any, *callbacks: AfterCommit) -> None:
    """Run ``callbacks`` with the session's noted events after each successful commit of a
    session made by ``factory`` (a ``sessionmaker``).

    Each callback runs on every commit, with the events that commit noted (maybe none).
    """

    @event.listens_for(factory, "after_commit")
    def _after_commit(session: Session) -> None:
        events = tuple(session.info.pop(_PENDING_KEY, ()))
        for callback in callbacks:
            callback(events)

    @event.listens_for(factory, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_PENDING_KEY, None)


# ---------------------------------------------------------------------------------------------
# Several brokers on one PostgreSQL: the change events of every process reach every page.


def install_pg_notify(factory: Any) -> None:
    """Send the noted events with ``pg_notify`` inside the committing transaction, so every
    broker process LISTENing (``PgEventRelay``, this one included) gets them once it commits."""

    @event.listens_for(factory, "before_commit")
    def _before_commit(session: Session) -> None:
        events = session.info.get(_PENDING_KEY)
        if not events:
            return
        for chunk in _chunks([e.as_dict() for e in events]):
            session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": PG_CHANNEL, "payload": chunk},
            )


def _chunks(items: list[dict[str, Any]]) -> Iterator[str]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(json.dumps(batch)) > _PG_PAYLOAD_MAX:
            batch.pop()
            yield json.dumps(batch)
            batch = [item]
    if batch:
        yield json.dumps(batch)


class PgEventRelay:
    """LISTENs on PostgreSQL and publishes what arrives to the local bus; reconnects by itself.
    Events sent while it was disconnected are lost, so on each reconnect every open page is
    told to reload."""

    def __init__(self, database_url: str, bus: EventBus):
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._bus = bus
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()
        self.connections = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pg-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg  # only a PostgreSQL deployment needs the driver here

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {PG_CHANNEL}")
                    if self.connections:  # events may have been missed while it was down
                        self._bus.ask_reload()
                    self.connections += 1
                    self.listening.set()
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            events = [ChangeEvent(**e) for e in json.loads(notify.payload)]
                            self._bus.publish(events)
            except Exception as exc:  # the database went away: try again shortly
                self.listening.clear()
                LOG.warning("change events: PostgreSQL LISTEN lost (%s); reconnecting", exc)
                self._stopping.wait(1.0)
