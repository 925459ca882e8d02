"""The multi-broker deployment of compose.yaml on one machine: two brokers on one PostgreSQL
database behind HAProxy running deploy/haproxy.cfg (TCP mode; only the addresses rewritten).

DICOM, MLLP and HTTP pass through the balancer; a sign-in made through one broker is valid on
the other (sessions live in PostgreSQL, so no stickiness); an order taken by whichever broker
got the MLLP connection is on both; when a broker stops, the balancer sends everything to the
other one.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from app.db import session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.migrations import upgrade
from app.runtime import Broker
from app.services import stations, users
from hl7_ingest.mllp import END_BLOCK, frame
from tests.support.ci import IN_CI
from tests.support.db import create_pg_database
from tests.support.haproxy import haproxy_executable, local_config
from tests.support.net import free_port, wait_until
from tests.support.settings import make_settings

pytestmark = pytest.mark.interop

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
ORDER = (DATA / "orm_o01_nw.hl7").read_bytes()
PASSWORD = "balanced-pass-1"


class Deployment:
    def __init__(self, brokers: list[Broker], listen: dict[str, int]) -> None:
        self.brokers = brokers
        self.listen = listen
        self.base_url = f"http://127.0.0.1:{listen['http']}"

    def answering_broker(self, client: httpx.Client) -> int:
        """Which broker answered a health check through the balancer (by its DICOM port)."""
        body = client.get(f"{self.base_url}/api/health", timeout=5).json()
        return int(body["listeners"]["dicom"]["port"])


def haproxy_or_skip() -> str:
    found = haproxy_executable()
    if found is None:
        if IN_CI:
            pytest.fail("haproxy is not installed; .ci/install-test-deps installs it")
        pytest.skip("haproxy is not installed")
    return found


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    haproxy = haproxy_or_skip()
    url, drop = create_pg_database()
    upgrade(url)
    brokers = [Broker(make_settings(url, tmp_path / f"b{i}")) for i in (1, 2)]
    process: subprocess.Popen[bytes] | None = None
    try:
        with session_scope(brokers[0].session_factory) as session:
            actor = Actor(AuditSource.CLI, "tests")
            users.create_user(
                session, username="tech", password=PASSWORD, role="viewer", actor=actor
            )
            for modality in ("CT", "CR"):
                stations.create_station(
                    session, data=stations.StationData(modality, f"{modality}01"), actor=actor
                )
        ports = [broker.start() for broker in brokers]
        listen = {name: free_port() for name in ("dicom", "hl7", "http")}
        config = tmp_path / "haproxy.cfg"
        config.write_text(local_config(listen, ports), encoding="utf-8")
        log = (tmp_path / "haproxy.log").open("wb")
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deployed = Deployment(brokers, listen)
        wait_until(
            lambda: httpx.get(f"{deployed.base_url}/api/health", timeout=2).status_code == 200,
            what="HAProxy to pass health checks through",
        )
        yield deployed
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        for broker in brokers:
            broker.stop()
        drop()


def mllp(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame(payload))
        reply = b""
        while not reply.endswith(END_BLOCK):
            chunk = sock.recv(65536)
            assert chunk, "closed without an ACK"
            reply += chunk
    return reply


def echo(port: int) -> int:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert assoc.is_established
    status = int(assoc.send_c_echo().Status)
    assoc.release()
    return status


def test_every_protocol_passes_and_any_broker_serves_any_request(deployment: Deployment) -> None:
    assert echo(deployment.listen["dicom"]) == 0
    assert b"MSA|AA|MSG00001" in mllp(deployment.listen["hl7"], ORDER)
    # One TCP connection per request: in TCP mode the balancer picks a broker per connection.
    with httpx.Client(headers={"Connection": "close"}) as client:
        login = client.post(
            f"{deployment.base_url}/api/auth/login",
            json={"username": "tech", "password": PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200
        # Round robin over new connections: consecutive requests go to alternate brokers.
        seen = [deployment.answering_broker(client) for _ in range(4)]
        assert set(seen) == {b.ports["dicom"] for b in deployment.brokers}
        assert seen[0] != seen[1]
        for _ in range(2):  # the session and the order, on each broker
            orders = client.get(f"{deployment.base_url}/api/orders", timeout=10)
            assert orders.status_code == 200
            assert "ACC0001" in {o["accession_number"] for o in orders.json()}


def test_a_stopped_broker_is_left_out(deployment: Deployment) -> None:
    gone, staying = deployment.brokers
    gone.stop()
    with httpx.Client(headers={"Connection": "close"}) as client:

        def only_the_other_answers() -> bool:
            answers = {deployment.answering_broker(client) for _ in range(4)}
            return answers == {staying.ports["dicom"]}

        wait_until(only_the_other_answers, timeout=30, what="the balancer to drop the broker")
    for _ in range(3):
        assert echo(deployment.listen["dicom"]) == 0
