"""``kill -9`` of ``mwl-broker serve`` in the middle of an HL7 burst loses and doubles nothing.

A RIS pushes 150 ORM^O01 orders over one MLLP connection; the broker is killed (SIGKILL: no
shutdown code runs) after about a third of them, then started again on the same ports and
database. The RIS resends every order it got no answer for, as RIS interface engines do. At the
end every order was answered AA, and each is in the database exactly once: the one in flight at
the kill was either committed (its resend gets the same ACK, changes nothing) or not (the resend
applies it). SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.broker import BrokerProcess
from tests.support.hl7 import ResendingSender, assert_each_applied_once, order_message
from tests.support.net import wait_until

pytestmark = pytest.mark.interop

ORDERS = 150
KILL_AFTER = 50  # answered orders before the kill


def test_kill_9_during_an_hl7_burst_loses_and_doubles_nothing(
    broker_database: str, tmp_path: Path
) -> None:
    broker = BrokerProcess(tmp_path, database=broker_database)
    broker.start()
    messages = {f"K{n}": order_message(n, prefix="K") for n in range(ORDERS)}
    sender = ResendingSender(broker.hl7_port, messages)
    try:
        broker.add_station()
        sender.start()
        wait_until(lambda: sender.answered >= KILL_AFTER, timeout=60, what="the first orders")
        broker.kill()
        assert sender.answered < ORDERS, "the burst ended before the kill: nothing was tested"
        broker.serve()  # same ports, same database
        sender.join()
    finally:
        sender.stop()
        code = broker.stop()
    assert code == 0, broker.log()
    assert sender.pending == []
    assert Counter(d.code for d in sender.deliveries.values()) == {"AA": ORDERS}
    # The kill cut the connection: at least one order went unanswered and was resent.
    assert sum(d.unanswered for d in sender.deliveries.values()) >= 1
    assert sender.connections >= 2
    assert_each_applied_once(broker.database_url, list(messages))
