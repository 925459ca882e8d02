"""Group commit: units of work from several threads share one transaction and one commit.

A commit is the price of durability: one ``fsync`` of SQLite's WAL (``synchronous=FULL``) or a
flush of PostgreSQL's WAL and a round trip. Several HL7 senders each waiting for their ACK would
each pay it; here the units of work that arrive while a transaction is running wait for it to
end, then run together, one after the other, in the next transaction, and commit once.

Each unit sees the committed state plus the units before it in its batch, exactly as if they had
run one after the other, and learns its result only after the commit that made it durable: an
HL7 message is still ACKed only once it is committed.

Only where the database takes one writer at a time (SQLite, see ``_one_writer``); elsewhere
``run`` is a transaction of its own, in the caller's thread.

Leader and followers, no thread of its own: the caller that finds no transaction running runs
one (its own unit first, then those queued before it started); the first unit queued meanwhile
leads the next, and so on. A lone caller runs at once, in its own transaction, as it would
without this class.

A batch that fails in any way (a unit raises, or the commit does) is rolled back whole and its
units are run again one per transaction: each then gets its own result or its own error, and a
unit's failure never costs another unit its change. The units must only touch the database
through their session (and note what to publish on it, see ``app.events``): a rolled-back run
leaves nothing behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlmodel import Session

from app.db import SessionFactory, session_scope

LOG = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[Session], T]

MAX_BATCH = 32  # units per transaction: bounds the wait of a batch's first unit


class _Unit(Generic[T]):
    __slots__ = ("error", "result", "settled", "wake", "work")

    def __init__(self, work: Work[T]) -> None:
        self.work = work
        self.wake = threading.Event()  # settled, or made the leader
        self.settled = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def settle(self, result: T | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.settled = result, error, True

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """``run(work)``: ``work(session)`` in a transaction shared with concurrent callers."""

    def __init__(
        self,
        session_factory: SessionFactory,
        max_batch: int = MAX_BATCH,
        *,
        sharing: bool | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.max_batch = max_batch
        self.sharing = _one_writer(session_factory) if sharing is None else sharing
        self._lock = threading.Lock()
        self._queue: list[_Unit[Any]] = []  # the leader's unit first
        self._leading = False
        self.shared = 0  # transactions committed with more than one unit (tests, metrics)

    @property
    def waiting(self) -> int:
        """Units queued for the next transaction (tests wait for a batch to form with it)."""
        with self._lock:
            return len(self._queue)

    def run(self, work: Work[T]) -> T:
        """``work(session)``'s result once committed; its exception if it raised (then nothing
        of it was committed); the commit's exception if the commit failed."""
        unit: _Unit[T] = _Unit(work)
        if not self.sharing:
            self._run_alone(unit)
            return unit.outcome()
        with self._lock:
            self._queue.append(unit)
            lead, self._leading = not self._leading, True
        if not lead:
            unit.wake.wait()
        if not unit.settled:  # made the leader: run the units queued until now
            self._run_next_batch()
        return unit.outcome()

    def _run_next_batch(self) -> None:
        """One batch (this thread's unit first), then the next waiting unit leads: every caller
        waits for at most the transaction running when it came and its own."""
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            self._run_batch(batch)
        finally:
            for unit in batch:
                if not unit.settled:  # interrupted (BaseException): never a silent success
                    unit.settle(error=RuntimeError("the transaction was interrupted"))
            with self._lock:
                if self._queue:
                    self._queue[0].wake.set()  # not settled: it leads the next batch
                else:
                    self._leading = False
            for unit in batch:
                unit.wake.set()

    def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        if len(batch) > 1:
            try:
                with session_scope(self.session_factory) as session:
                    results = [unit.work(session) for unit in batch]
            except Exception:  # rolled back: run alone below, each unit gets its own outcome
                LOG.debug("a shared transaction of %d units failed; running each alone", len(batch))
            else:
                for unit, result in zip(batch, results, strict=True):
                    unit.settle(result)
                self.shared += 1
                return
        for unit in batch:
            self._run_alone(unit)

    def _run_alone(self, unit: _Unit[Any]) -> None:
        try:
            with session_scope(self.session_factory) as session:
                result = unit.work(session)
        except Exception as exc:  # raised again in the caller's thread
            unit.settle(error=exc)
        else:
            unit.settle(result)


def _one_writer(session_factory: SessionFactory) -> bool:
    """Whether the database takes one writer at a time (SQLite): then sharing transactions costs
    no parallelism. PostgreSQL runs transactions side by side and already shares one WAL flush
    between commits that come together; a shared transaction there would run the messages' round
    trips one after the other (each a network round trip to a database on another host)."""
    with session_factory() as session:
        return bool(session.get_bind().dialect.name == "sqlite")
