"""TCP_NODELAY on every connection the broker accepts or opens (DICOM both ways, HTTP).

Each test reads the option back with ``getsockopt`` from the broker's own end of a live
connection: without it small DIMSE PDUs and HTTP answers wait on delayed ACKs.
"""

from __future__ import annotations

import http.client
import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, Association, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from app.delivery import OutboxMessageView
from app.runtime import Broker
from dicom_scp.forward import mpps_forwarder
from dicom_scp.tcp import on_data_received
from tests.support.net import wait_until
from tests.support.scp import start_scp
from tests.support.settings import make_settings

MPPS = ModalityPerformedProcedureStep
INSTANCE = "1.2.826.0.1.3680043.8.498.77"


def _nodelay(sock: Any) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _assoc_socket(assoc: Association) -> Any:
    return assoc.dul.socket.socket  # type: ignore[union-attr]


def test_dicom_listener_sets_nodelay_on_accepted_connections(
    sqlite_url: str, tmp_path: Path
) -> None:
    scp = start_scp(sqlite_url, tmp_path)
    try:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
        assert assoc.is_established
        try:
            assert scp.server._ae is not None
            wait_until(lambda: len(scp.server._ae.active_associations) == 1)  # type: ignore[union-attr]
            (accepted,) = scp.server._ae.active_associations
            assert _nodelay(_assoc_socket(accepted))
            bound = [h for h, _ in accepted.get_handlers(evt.EVT_DATA_RECV)]  # type: ignore[misc]
            assert on_data_received in bound
        finally:
            assoc.release()
    finally:
        scp.stop()


def test_mpps_forwarder_sets_nodelay_on_its_connection(sqlite_url: str, tmp_path: Path) -> None:
    """Read on the forwarder's own socket while the downstream SCP holds the N-CREATE."""
    seen: list[bool] = []

    def on_create(event: evt.Event) -> tuple[int, Dataset]:
        requestors = [
            t
            for t in threading.enumerate()
            if isinstance(t, Association) and t.is_requestor and t.ae.ae_title == "MWLBROKER"
        ]
        seen.extend(_nodelay(_assoc_socket(a)) for a in requestors)
        return 0x0000, Dataset()

    ae = AE(ae_title="ARCHIVE")
    ae.add_supported_context(MPPS)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_N_CREATE, on_create)]
    )
    try:
        settings = make_settings(sqlite_url, tmp_path, ae_title="MWLBROKER")
        ds = Dataset()
        ds.PerformedProcedureStepStatus = "IN PROGRESS"
        view = OutboxMessageView(
            1,
            "dicom",
            f"ARCHIVE@127.0.0.1:{server.server_address[1]}",
            INSTANCE,
            "mpps-create",
            {"sop_instance_uid": INSTANCE, "dataset": ds.to_json_dict()},
            0,
        )
        mpps_forwarder(settings.dicom)(view)
    finally:
        server.shutdown()
    assert seen == [True]


def test_http_listener_sets_nodelay_on_accepted_connections(
    sqlite_url: str, tmp_path: Path
) -> None:
    broker = Broker(make_settings(sqlite_url, tmp_path), only="http")
    ports = broker.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=5)
        wait_until(lambda: _health(conn) == 200, what="HTTP health")
        assert broker._http is not None
        connections = list(broker._http.server_state.connections)
        assert connections
        for protocol in connections:
            assert _nodelay(protocol.transport.get_extra_info("socket"))  # type: ignore[attr-defined]
        conn.close()
    finally:
        broker.stop()


def _health(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/api/health")
    response = conn.getresponse()
    response.read()
    return response.status


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux only")
def test_each_received_pdu_is_acknowledged_at_once() -> None:
    """A peer with Nagle on holds its identifier PDU until the command PDU is acknowledged:
    after each PDU read the broker's socket is back in quick-ACK mode."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
            assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 0
            transport = SimpleNamespace(socket=server)
            event: Any = SimpleNamespace(
                assoc=SimpleNamespace(dul=SimpleNamespace(socket=transport))
            )
            on_data_received(event)
            assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
