"""Two ``mwl-broker serve`` processes on one PostgreSQL database, as ``compose.yaml`` scales them.

* The same HL7 message sent to both (one after the other, and at the same moment) is applied
  once; both answer AA with the same ACK (the second one sends the ACK the first one stored).
* A modality's MPPS N-CREATE goes to one broker and its N-SET COMPLETED to the other: the step
  moves to STARTED, then COMPLETED, and both brokers' REST show it.
* A change made through one broker's REST API reaches a page subscribed to the other broker's
  ``/api/events`` (PostgreSQL ``NOTIFY``, relayed by ``app.events.PgEventRelay``).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.db import create_pg_database
from tests.support.hl7 import MllpPeer, ack_code, assert_each_applied_once, order_message
from tests.support.items import mwl_item
from tests.support.mpps import n_create, n_set
from tests.support.sse import sse_events

pytestmark = [pytest.mark.interop, pytest.mark.postgres]

MPPS_UID = "1.2.826.0.1.3680043.10.543.77.1"
HTTP_TIMEOUT = 10.0
RACES = 10  # messages sent to both brokers at the same moment
EVENT_WAIT = 3.0  # seconds one REST change has to reach the other broker's stream
EVENT_TRIES = 5  # changes made until one arrives (the relay LISTENs soon after start-up)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, BrokerProcess]]:
    url, drop = create_pg_database()
    first = BrokerProcess(tmp_path_factory.mktemp("broker-a"), database=url)
    second = BrokerProcess(tmp_path_factory.mktemp("broker-b"), database=url)
    try:
        migrated = first.cli("db", "upgrade")
        assert migrated.returncode == 0, migrated.stderr
        # Both start at once, as compose would start them (their own upgrade finds nothing to do).
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(first.start), pool.submit(second.start)]:
                started.result()
        first.add_station()
        yield first, second
        for broker in (first, second):
            assert broker.stop() == 0, broker.log()
    finally:
        for broker in (first, second):
            if broker.process is not None:
                broker.stop()
        drop()


def exchange(port: int, message: bytes) -> bytes:
    with MllpPeer(port) as peer:
        answer = peer.exchange(message)
    assert answer is not None, "closed without an ACK"
    return answer


def test_the_same_message_sent_to_both_is_applied_once(
    pair: tuple[BrokerProcess, BrokerProcess],
) -> None:
    first, second = pair
    message = order_message(1, prefix="TWO")
    answer = exchange(first.hl7_port, message)
    assert ack_code(answer) == "AA"
    assert exchange(second.hl7_port, message) == answer  # the ACK the first one stored

    racing = {f"RACE{n}": order_message(n, prefix="RACE") for n in range(RACES)}
    answers: dict[tuple[str, int], bytes] = {}
    barrier = threading.Barrier(2)

    def send_all(broker: BrokerProcess) -> None:
        with MllpPeer(broker.hl7_port) as peer:
            for cid, racer in racing.items():
                barrier.wait(timeout=HTTP_TIMEOUT)
                got = peer.exchange(racer)
                assert got is not None
                answers[cid, broker.hl7_port] = got

    threads = [threading.Thread(target=send_all, args=(b,)) for b in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 2 * RACES, "a sender failed"
    for cid in racing:
        a, b = answers[cid, first.hl7_port], answers[cid, second.hl7_port]
        assert ack_code(a) == "AA" and a == b, (cid, a, b)
    assert_each_applied_once(first.database_url, ["TWO1", *racing])


def step_status(broker: BrokerProcess, accession: str) -> str:
    items = httpx.get(
        f"{broker.base_url}/api/mwlitems",
        params={"AccessionNumber": accession},
        headers=broker.headers,
        timeout=HTTP_TIMEOUT,
    ).json()
    assert len(items) == 1, items
    return str(items[0]["00400100"]["Value"][0]["00400020"]["Value"][0])


def test_mpps_created_on_one_and_completed_on_the_other_moves_the_step(
    pair: tuple[BrokerProcess, BrokerProcess],
) -> None:
    first, second = pair
    created = httpx.post(
        f"{first.base_url}/api/mwlitems",
        json=mwl_item(),  # study 1.2.3.4.1, SPS1, accession A1: what n_create() references
        headers=first.headers,
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    modality = AE(ae_title="CT01")
    modality.add_requested_context(ModalityPerformedProcedureStep)

    assoc = modality.associate("127.0.0.1", first.dicom_port, ae_title=BROKER_AE)
    assert assoc.is_established
    status, _ = assoc.send_n_create(n_create(), ModalityPerformedProcedureStep, MPPS_UID)
    assoc.release()
    assert status.Status == 0x0000
    assert step_status(second, "A1") == "STARTED"

    assoc = modality.associate("127.0.0.1", second.dicom_port, ae_title=BROKER_AE)
    assert assoc.is_established
    status, _ = assoc.send_n_set(n_set("COMPLETED"), ModalityPerformedProcedureStep, MPPS_UID)
    assoc.release()
    assert status.Status == 0x0000
    assert step_status(first, "A1") == "COMPLETED"


def read_stream(response: httpx.Response, events: queue.Queue[tuple[str, str]]) -> None:
    try:
        for event in sse_events(response.iter_lines()):
            events.put(event)
    except httpx.HTTPError:
        pass  # the test closed the stream


def test_a_rest_change_on_one_reaches_the_event_stream_of_the_other(
    pair: tuple[BrokerProcess, BrokerProcess],
) -> None:
    first, second = pair
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    with (
        httpx.Client(base_url=second.base_url, headers=second.headers, timeout=30) as client,
        client.stream("GET", "/api/events") as response,
    ):
        assert response.status_code == 200
        reader = threading.Thread(target=read_stream, args=(response, events), daemon=True)
        reader.start()
        assert events.get(timeout=HTTP_TIMEOUT) == ("hello", "{}")
        change = None
        for attempt in range(EVENT_TRIES):
            item = mwl_item(
                accession=f"EV{attempt}", study_uid=f"1.2.3.4.9{attempt}", sps_id=f"EV{attempt}"
            )
            made = httpx.post(
                f"{first.base_url}/api/mwlitems",
                json=item,
                headers=first.headers,
                timeout=HTTP_TIMEOUT,
            )
            assert made.status_code == 201, made.text
            try:
                change = events.get(timeout=EVENT_WAIT)
                break
            except queue.Empty:
                continue
        assert change is not None, "no change event reached the other broker's stream"
        name, data = change
        assert name == "change"
        assert json.loads(data)["entity"] in {"patient", "order", "procedure", "step"}
