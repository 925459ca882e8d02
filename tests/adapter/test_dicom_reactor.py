"""Accepted associations wait for work instead of polling (``dicom_scp.reactor``).

pynetdicom's two reactor threads poll every millisecond; the broker's acceptor threads wait on
their socket, a doorbell and an event instead. Checked by what the threads do, not by time: an
idle association takes a few turns per ``MAX_WAIT``, not one per millisecond, and still
answers at once; its doorbell is closed with the connection.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, _config
from pynetdicom.association import Association

from dicom_scp import reactor, transport
from dicom_scp.server import quiet_pdu_logging
from tests.support.dicom_wire import (
    A_ASSOCIATE_AC,
    RawPeer,
    associate_rq,
    c_echo_rq,
    p_data,
    pdu,
)
from tests.support.net import wait_until
from tests.support.scp import Scp, start_scp

VERIFICATION = "1.2.840.10008.1.1"
IDLE = 0.5  # seconds watched: polling would take ~1,000 turns in it (two threads, 1 ms each)


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[reactor.Waits]:
    """Every ``Waits`` the listener makes."""
    found: list[reactor.Waits] = []

    def spy(assoc: Association) -> reactor.Waits:
        waits = reactor.make_waiting(assoc)
        found.append(waits)
        return waits

    monkeypatch.setattr(transport, "make_waiting", spy)
    return found


def test_an_idle_association_waits_and_still_answers_at_once(
    scp: Scp, made: list[reactor.Waits]
) -> None:
    peer = RawPeer(scp.port)
    assert peer.associate(associate_rq()).pdu_type == A_ASSOCIATE_AC
    wait_until(lambda: bool(made) and made[0].turns > 0, what="the association's reactors")
    before = made[0].turns
    time.sleep(IDLE)  # watching an idle period, not waiting for readiness
    turns = made[0].turns - before
    assert turns <= 4 * 2 * IDLE / reactor.MAX_WAIT, turns  # ~20 expected; polling: ~1,000
    peer.send(p_data(1, c_echo_rq(), command=True))
    assert int(peer.dimse_response().Status) == 0
    peer.send(pdu(0x05, bytes(4)))  # A-RELEASE-RQ
    assert peer.read_pdu().pdu_type == 0x06
    peer.close()
    wait_until(lambda: made[0].doorbell._bell.fileno() == -1, what="the doorbell to close")


def test_the_accept_loop_runs_no_full_collection(scp: Scp, monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom's accept loop runs ``gc.collect()`` every 60 turns (~100 ms with a warm
    item cache, holding every association)."""
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)
    (listener,) = scp.server._servers
    for _ in range(200):
        listener.service_actions()
    assert collections == []


@pytest.mark.parametrize(
    ("level", "handlers"), [(logging.INFO, "none"), (logging.DEBUG, "standard")]
)
def test_pdu_debug_handlers_only_with_the_debug_log(
    level: int, handlers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom's standard handlers describe every PDU under the AE-wide lock."""
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", _config.LOG_HANDLER_LEVEL)
    logger = logging.getLogger("pynetdicom")
    previous = logger.level
    logger.setLevel(level)  # clears the logger's cache of enabled levels, unlike setattr
    try:
        quiet_pdu_logging()
    finally:
        logger.setLevel(previous)
    assert handlers == _config.LOG_HANDLER_LEVEL


class _WakesLate(threading.Event):
    """The requestor's reactor checkpoint, but its thread resumes 50 ms after being let go:
    the window in which pynetdicom's ``_is_paused`` still says "paused" although it is not."""

    def __init__(self, reactor_thread: threading.Thread) -> None:
        super().__init__()
        self.set()
        self._reactor_thread = reactor_thread

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        if threading.current_thread() is self._reactor_thread:
            time.sleep(0.05)
        return woken


def test_a_reactor_waking_late_does_not_take_the_next_response(scp: Scp) -> None:
    """pynetdicom#875: after a ``send_*()`` the next one can go ahead before the reactor has
    resumed; the reactor then took the response as if it were a request ("Received unexpected
    C-ECHO service message") and the sender waited out its DIMSE timeout. Seen here as a
    stuck MPPS N-CREATE of a test under load; it hits every association the broker requests
    too (C-MOVE)."""
    reactor.install()  # as the broker does when it starts
    ae = AE(ae_title="RACE")
    ae.add_requested_context(VERIFICATION)
    ae.dimse_timeout = 5
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
    assert assoc.is_established
    assoc._reactor_checkpoint = _WakesLate(assoc)
    take = assoc.dimse.get_msg

    def slow_sender(block: bool = False) -> Any:
        """The sender looks for its response 100 ms late: the reactor, woken at 50 ms, comes
        first (in real life the two threads just race for it)."""
        if block:
            time.sleep(0.1)
        return take(block)

    assoc.dimse.get_msg = slow_sender  # type: ignore[method-assign]
    try:
        statuses = [assoc.send_c_echo().get("Status") for _ in range(5)]
    finally:
        assoc.release()
    assert statuses == [0x0000] * 5
