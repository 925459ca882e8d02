"""Any listener started through ``FrontDoor.start_listener`` is guarded, TLS ones too: a peer
that connects and never sends its ClientHello neither blocks the accept loop (pynetdicom
handshakes there) nor outlives ARTIM."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from dicom_scp.server import build_ae, build_front_door
from dicom_scp.transport import FrontDoor, GuardedAssociationServer
from tests.support.dicom_wire import RawPeer
from tests.support.net import wait_until
from tests.support.settings import make_settings
from tests.support.tools import require_tool, run_tool


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = run_tool(
        [
            require_tool("openssl"),
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
        ]
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return key, cert


@pytest.fixture
def tls_listener(
    certificate: tuple[Path, Path], tmp_path: Path
) -> Iterator[tuple[FrontDoor, GuardedAssociationServer]]:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    settings = make_settings("sqlite://", tmp_path, dicom={"artim_timeout": 1.0})
    door = build_front_door(settings.dicom)
    ae = build_ae(settings.dicom)
    handlers: list[Any] = [(evt.EVT_C_ECHO, lambda event: 0x0000)]
    server = door.start_listener(ae, ("127.0.0.1", 0), handlers, ssl_context=context)
    yield door, server
    server.shutdown()
    door.stop()
    ae.shutdown()


def tls_echo(port: int, cert: Path) -> int | None:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER", tls_args=(context, "localhost"))
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else None
    finally:
        assoc.release()


def test_silent_tls_peers_neither_block_the_listener_nor_stay(
    tls_listener: tuple[FrontDoor, GuardedAssociationServer], certificate: tuple[Path, Path]
) -> None:
    door, server = tls_listener
    port = int(server.server_address[1])
    silent = [RawPeer(port) for _ in range(3)]
    wait_until(lambda: door.stats().connections_open == 3, what="three silent connections")
    started = time.monotonic()
    assert tls_echo(port, certificate[1]) == 0
    assert time.monotonic() - started < 1.0
    assert all(peer.closed_within(5.0) for peer in silent)
    assert door.stats().aborted_by_watchdog.get("artim", 0) >= 3
