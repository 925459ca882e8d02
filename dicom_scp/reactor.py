"""Waits instead of polls for the two reactor threads of each association the broker accepts.

pynetdicom runs two threads per association, each polling: the DUL reactor sleeps 1 ms and looks
at its socket and queues again, the association reactor sleeps 1 ms and looks for a DIMSE
message, a release or an abort. An association that waits for its peer costs ~35 ms of CPU per
second that way (20 idle ones: 0.7 of a core on the interpreter lock), and every hand-over
between the threads waits for the other's next turn.

Here those two sleeps of the broker's acceptor threads become waits that end when there is
work: the DUL thread waits in ``select`` on its socket and a doorbell rung whenever a primitive
is queued for it; the association thread waits on an event set whenever the DUL queues a DIMSE
message or an A-RELEASE/A-ABORT primitive for it. Both still look at least every
``MAX_WAIT`` seconds, for what nothing announces (ARTIM and idle timers, a kill, the DUL's end).
The other threads and the broker's requestor associations keep pynetdicom's own sleeps.

``install`` also closes a race of pynetdicom's own (seen as "Received unexpected N-CREATE service
message" and a 30 s DIMSE timeout, pynetdicom#875): a ``send_*()`` pauses the association's
reactor by clearing a checkpoint and waiting for the reactor's ``_is_paused`` flag, but right
after the previous ``send_*()`` set the checkpoint again that flag is still the old ``True``
until the reactor thread runs; the next ``send_*()`` then goes ahead, and the reactor, waking,
takes the response off the queue as if it were a request. The reactor's own (non-blocking)
take now leaves the queue alone while the checkpoint is cleared: a ``send_*()`` owns it then.
It matters for every association this process requests (C-MOVE sub-operations, MPPS forwards,
storage commitment reports) under load.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pynetdicom.association
import pynetdicom.dimse
import pynetdicom.dul
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider

LOOP_DELAY = 0.001  # both reactors' sleep (pynetdicom 3.0: DUL._run_loop_delay, literal)
MAX_WAIT = 0.05
WAIT_ATTRIBUTE = "_mwl_reactor_wait"


class _LoopTime:
    """The ``time`` module as pynetdicom's reactors see it: a loop sleep of a thread that has a
    wait of its own (an ``Association`` or its DUL, both ``Thread`` subclasses) is that wait."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        wait = getattr(threading.current_thread(), WAIT_ATTRIBUTE, None)
        if wait is None or seconds != LOOP_DELAY:
            time.sleep(seconds)
            return
        wait()


_original_get_msg = DIMSEServiceProvider.get_msg


def _get_msg(self: DIMSEServiceProvider, block: bool = False) -> Any:
    """pynetdicom's ``get_msg``, except that the reactor's take (the only non-blocking one)
    finds nothing while a ``send_*()`` has the reactor paused (see the module notes)."""
    if not block and not self.assoc._reactor_checkpoint.is_set():
        return None, None
    return _original_get_msg(self, block)


def install() -> None:
    """Route the reactors' sleeps through ``_LoopTime`` (threads without a wait of their own
    keep real sleeps) and keep the reactor off a paused association's queue (idempotent)."""
    loop_time: Any = _LoopTime()
    pynetdicom.dul.time = loop_time
    pynetdicom.association.time = loop_time
    pynetdicom.dimse.DIMSEServiceProvider.get_msg = _get_msg  # type: ignore[method-assign]


class _WakingQueue(queue.Queue):
    """A queue that calls ``wake`` after every put."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class Doorbell:
    """A socket pair the DUL thread selects on beside its peer's socket."""

    def __init__(self) -> None:
        self._ring, self._bell = socket.socketpair()
        self._ring.setblocking(False)
        self._bell.setblocking(False)

    def ring(self) -> None:
        # A full buffer already wakes the reader; a closed pair has no reader left.
        with contextlib.suppress(OSError):
            self._ring.send(b"\0")

    def wait(self, peer: socket.socket | None, timeout: float) -> None:
        """Until ``peer`` is readable, the bell rang, or ``timeout``."""
        if peer is None or peer.fileno() < 0:
            time.sleep(LOOP_DELAY)  # the connection is gone: pynetdicom winds down by polling
            return
        if isinstance(peer, ssl.SSLSocket) and peer.pending():
            return  # decrypted bytes that select cannot see
        try:
            ready, _, _ = select.select([peer, self._bell], [], [], timeout)
        except (OSError, ValueError):  # closed under us
            time.sleep(LOOP_DELAY)
            return
        if self._bell in ready:
            with contextlib.suppress(OSError):
                while self._bell.recv(4096):
                    pass

    def close(self) -> None:
        self._ring.close()
        self._bell.close()


class Waits:
    """The waits of one acceptor association's two threads; ``turns`` counts them (each is one
    turn of a reactor loop that found nothing to do, or was woken)."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.events = threading.Event()
        self.doorbell = Doorbell()
        self.turns = 0

    def association(self) -> None:
        self.turns += 1
        if self.assoc._kill:  # winding down: kill() and stop_dul() poll for the DUL's end
            time.sleep(LOOP_DELAY)
            return
        self.events.wait(MAX_WAIT)
        self.events.clear()

    def dul(self) -> None:
        self.turns += 1
        sock = self.assoc.dul.socket
        self.doorbell.wait(sock.socket if sock is not None else None, MAX_WAIT)

    def close(self) -> None:
        """Once the association's threads have ended."""
        self.doorbell.close()


def make_waiting(assoc: Association) -> Waits:
    """Give a not yet started acceptor ``assoc`` (its socket set) waits instead of polls."""
    install()
    waits = Waits(assoc)
    dul = assoc.dul
    assoc.dimse.msg_queue = _WakingQueue(waits.events.set)
    dul.to_user_queue = _WakingQueue(waits.events.set)
    dul.to_provider_queue = _WakingQueue(waits.doorbell.ring)
    kill_dul = dul.kill_dul

    def kill_and_wake() -> None:
        kill_dul()
        waits.doorbell.ring()

    dul.kill_dul = kill_and_wake  # type: ignore[method-assign]
    setattr(assoc, WAIT_ATTRIBUTE, waits.association)
    setattr(dul, WAIT_ATTRIBUTE, waits.dul)
    return waits
