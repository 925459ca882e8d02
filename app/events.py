"""Change events: what services tell open pages after a commit.

Services note events on the session (``note(session, ...)``); the composition root installs one
after-commit hook (``install_after_commit``) that publishes them to the ``EventBus`` and runs the
other after-commit callbacks (waking the outbox). Nothing is published for a rolled-back change.
Subscribers (the server-sent events stream) each get a bounded queue; a slow subscriber loses
its oldest events and is told to reload rather than holding memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_PENDING_KEY = "mwl_events"
SUBSCRIBER_QUEUE = 1000


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
