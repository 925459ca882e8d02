"""The outbox delivery worker: takes due messages, hands them to a sender, records the outcome.

Delivery is at-least-once: a message is marked sent only after its sender returned, so a crash
(or a lost database write) between the two sends it again on the next run. The receivers
deduplicate: HL7 status messages carry the same MSH-10 on every try, MPPS forwards repeat the
same SOP Instance UID.

Network I/O never runs inside a database transaction: the due messages are copied into
:class:`OutboxMessageView` objects in one short session, each is sent with no session open, and
each outcome is written in its own short session. Order per ``ordering_key`` comes from
:func:`app.services.outbox.due` (a message is due only when no earlier one of its key is
pending); a failure of one key never holds up the others.

This module imports no adapter: the senders (``channel -> callable``) are passed in by the
composition root.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.db import SessionFactory, session_scope
from app.models import OutboxMessage
from app.services import outbox

LOG = logging.getLogger(__name__)

STOP_TIMEOUT = 60.0  # seconds stop() waits for a send in progress
BATCH_SIZE = 50
REPEAT_LOG_INTERVAL = 60.0  # seconds between ERROR lines while passes keep failing


@dataclass(frozen=True, slots=True)
class OutboxMessageView:
    """A detached copy of an outbox row: what a sender needs, no ORM object."""

    id: int
    channel: str
    destination: str
    ordering_key: str
    kind: str
    payload: dict[str, Any] = field(hash=False)
    attempts: int

    @classmethod
    def of(cls, message: OutboxMessage) -> OutboxMessageView:
        assert message.id is not None
        return cls(
            id=message.id,
            channel=message.channel,
            destination=message.destination,
            ordering_key=message.ordering_key,
            kind=message.kind,
            payload=dict(message.payload),
            attempts=message.attempts,
        )


Sender = Callable[[OutboxMessageView], None]


class PassFailures:
    """The log of failing delivery passes: the first with its traceback, then one line a
    minute while they keep failing (a database away for an hour is not 7,200 tracebacks), and
    the recovery. Call :meth:`failed` inside the ``except`` block."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = 0
        self._clock = clock
        self._logged_at = 0.0

    def failed(self) -> None:
        self.count += 1
        now = self._clock()
        if self.count == 1:
            LOG.exception("outbox delivery pass failed; retrying, logged once a minute")
            self._logged_at = now
        elif now - self._logged_at >= REPEAT_LOG_INTERVAL:
            LOG.error("outbox delivery still failing: %d passes in a row", self.count)
            self._logged_at = now
        else:
            LOG.debug("outbox delivery pass %d failed", self.count, exc_info=True)

    def succeeded(self) -> None:
        if self.count:
            LOG.info("outbox delivery works again after %d failed passes", self.count)
            self.count = 0


class OutboxWorker:
    """Delivers the outbox in a daemon thread; :meth:`run_once` does one pass synchronously."""

    def __init__(
        self,
        session_factory: SessionFactory,
        senders: Mapping[str, Sender],
        *,
        retry_min: float,
        retry_max: float,
        poll_interval: float = 0.5,
    ) -> None:
        self._factory = session_factory
        self._senders = dict(senders)
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._poll_interval = poll_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._run_lock = threading.Lock()  # one pass at a time: never the same message twice
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start delivering in a daemon thread (a first pass runs at once)."""
        if self._thread is not None:
            raise RuntimeError("the outbox worker is already running")
        self._stopping.clear()
        self._wake.set()
        self._thread = threading.Thread(target=self._loop, name="outbox-delivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the send in progress (if any) and join the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            LOG.error("the outbox worker did not stop within %s s", STOP_TIMEOUT)
        self._thread = None

    def wake(self) -> None:
        """Something was enqueued: deliver now instead of at the next poll."""
        self._wake.set()

    def run_once(self) -> int:
        """Deliver everything due now, pass after pass while passes make progress.

        Returns how many messages were sent. A key that fails is not tried again in this call.
        """
        with self._run_lock:
            sent = 0
            failed_keys: set[str] = set()
            while not self._stopping.is_set():
                batch = [v for v in self._due() if v.ordering_key not in failed_keys]
                delivered = self._deliver_batch(batch, failed_keys)
                sent += delivered
                if delivered == 0:
                    return sent
            return sent

    # --- internals ---------------------------------------------------------------------------

    def _loop(self) -> None:
        failures = PassFailures()
        while not self._stopping.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.run_once()
            except Exception:  # the database may be away for a while: keep polling
                failures.failed()
            else:
                failures.succeeded()

    def _due(self) -> list[OutboxMessageView]:
        with session_scope(self._factory) as session:
            return [OutboxMessageView.of(m) for m in outbox.due(session, limit=BATCH_SIZE)]

    def _deliver_batch(self, batch: list[OutboxMessageView], failed_keys: set[str]) -> int:
        delivered = 0
        for view in batch:
            if self._stopping.is_set():
                break
            if self._deliver(view):
                delivered += 1
            else:
                failed_keys.add(view.ordering_key)
        return delivered

    def _deliver(self, view: OutboxMessageView) -> bool:
        """Claim, send (no transaction open), then record the outcome in a new transaction."""
        with session_scope(self._factory) as session:
            if not outbox.claim(session, pk=view.id):
                return False  # another worker took it: skip its key for this pass
        try:
            self._send(view)
        except Exception as exc:  # any failure of a sender is a failed try, retried later
            self._record_failure(view, exc)
            return False
        with session_scope(self._factory) as session:
            outbox.mark_sent(session, pk=view.id)
        LOG.info(
            "outbox %d %s to %s: sent (try %d)",
            view.id,
            view.kind,
            view.destination,
            view.attempts + 1,
        )
        return True

    def _send(self, view: OutboxMessageView) -> None:
        sender = self._senders.get(view.channel)
        if sender is None:
            raise LookupError(f"no sender for channel '{view.channel}'")
        sender(view)

    def _record_failure(self, view: OutboxMessageView, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with session_scope(self._factory) as session:
            retry_at = outbox.mark_failed(
                session,
                pk=view.id,
                error=error,
                minimum=self._retry_min,
                maximum=self._retry_max,
            )
        # The error text may quote the receiver's answer (patient data): only its type is logged;
        # the full text is in the outbox row (last_error, GET /api/outbox/{id}).
        LOG.info(
            "outbox %d %s to %s: failed (try %d, %s); next try at %s",
            view.id,
            view.kind,
            view.destination,
            view.attempts + 1,
            type(exc).__name__,
            retry_at.isoformat(timespec="seconds"),
        )
