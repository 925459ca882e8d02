"""PostgreSQL stopped in the middle of an HL7 burst: nothing is acknowledged that is not stored,
nothing hangs, and everything recovers by itself once the server is back.

The real local server is stopped with ``pg_ctlcluster`` (fast mode: every session is cut, as in
a crash of the database server) for a few seconds and always started again (see
``tests/support/pg_cluster.py``). While it is down:

* no order is answered at all: with ``BROKER_HL7_DB_DOWN=close`` (the default) the broker closes
  the connection without an ACK, so the RIS resends (never AA, never AR);
* a worklist C-FIND fails at once with a failure status (0xC000), it does not hang;
* ``/api/health`` answers 503 with the database down.

Once the server is back, with no restart of the broker: health is 200 again, C-FIND finds the
orders, the RIS's resends are applied, and every order is answered AA and stored exactly once.

This test stops a server other people may be using: keep the outage short, run it rarely.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.db import create_pg_database
from tests.support.hl7 import (
    MllpPeer,
    ResendingSender,
    ack_code,
    assert_each_applied_once,
    order_message,
)
from tests.support.net import wait_until
from tests.support.pg_cluster import Cluster, local_cluster, outage
from tests.support.tools import dimse_statuses, findscu, require_tool

pytestmark = [pytest.mark.interop, pytest.mark.postgres]

ORDERS = 150
DOWN_AFTER = 30  # answered orders before the server is stopped
RESENDS_WHILE_DOWN = (
    8  # the burst keeps hitting the outage this often (about 2 s) before the restart
)
FAILS_FAST = 10.0  # seconds: a C-FIND or health check during the outage answers within this
BACK_WITHIN = 60.0  # seconds for the broker to be healthy again once PostgreSQL is back
UNABLE_TO_PROCESS = 0xC000


@pytest.fixture
def cluster() -> Cluster:
    return local_cluster()


@pytest.fixture
def broker(cluster: Cluster, tmp_path: Path) -> Iterator[BrokerProcess]:
    require_tool("findscu")
    url, drop = create_pg_database()
    broker = BrokerProcess(tmp_path / "broker", database=url)
    broker.workdir.mkdir()
    try:
        broker.start()
        broker.add_station()
        yield broker
        assert broker.stop() == 0, broker.log()
    finally:
        if broker.process is not None:
            broker.stop()
        drop()


def health(broker: BrokerProcess) -> httpx.Response:
    return httpx.get(f"{broker.base_url}/api/health", timeout=FAILS_FAST)


def find_accession(broker: BrokerProcess, accession: str, out: Path) -> tuple[list[int], int]:
    """DIMSE statuses of a C-FIND for one accession, and the number of matches."""
    result = findscu(
        broker.dicom_port,
        BROKER_AE,
        out,
        keys=["PatientID", f"AccessionNumber={accession}", "ScheduledProcedureStepSequence"],
        debug=True,
    )
    return dimse_statuses(result.output), len(result.responses)


def unanswered(sender: ResendingSender) -> int:
    return sum(d.unanswered for d in sender.deliveries.values())


def test_postgres_outage_during_an_hl7_burst(
    cluster: Cluster, broker: BrokerProcess, tmp_path: Path
) -> None:
    messages = {f"D{n}": order_message(n, prefix="D") for n in range(ORDERS)}
    probe_id, probe = "PROBE1", order_message(1, prefix="PROBE")
    sender = ResendingSender(broker.hl7_port, messages)
    sender.start()
    try:
        wait_until(lambda: sender.answered >= DOWN_AFTER, timeout=60, what="the first orders")
        with outage(cluster) as down:
            before = unanswered(sender)
            with MllpPeer(broker.hl7_port) as peer:
                assert peer.exchange(probe) is None, "an order was answered without a database"

            started = time.monotonic()
            statuses, matches = find_accession(broker, "ACC-D0", tmp_path / "find-down")
            assert time.monotonic() - started < FAILS_FAST
            assert statuses == [UNABLE_TO_PROCESS] and matches == 0

            down_health = health(broker)
            assert down_health.status_code == 503
            assert down_health.json()["database"] == {"up": False, "error": "unavailable"}

            wait_until(
                lambda: unanswered(sender) >= before + RESENDS_WHILE_DOWN,
                timeout=FAILS_FAST,
                what="the burst to hit the outage",
            )
        wait_until(lambda: health(broker).status_code == 200, BACK_WITHIN, "health 200 again")
        statuses, matches = find_accession(broker, "ACC-D0", tmp_path / "find-back")
        assert statuses[-1] == 0x0000 and matches == 1
        with MllpPeer(broker.hl7_port) as peer:  # the RIS resends the probe
            answer = peer.exchange(probe)
        assert answer is not None and ack_code(answer) == "AA"
        sender.join()
    finally:
        sender.stop()
    outage_window = (down.stopped_at, down.starting_at)
    answered_while_down = [
        cid
        for cid, d in sender.deliveries.items()
        if outage_window[0] < d.sent_at < outage_window[1]
    ]
    assert answered_while_down == [], "sent while PostgreSQL was down, yet answered"
    assert Counter(d.code for d in sender.deliveries.values()) == {"AA": ORDERS}
    assert_each_applied_once(broker.database_url, [*messages, probe_id])
