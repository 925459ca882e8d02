"""MLLP over TLS: a real TLS client sends ORM^O01 and reads the AA; the TLS port keeps the front
door of the plain one (caps shared over both ports, address allow-list, idle timeout); a client
without the right certificate, an old TLS version or plain MLLP is dropped, others go on."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.services import stations
from app.tls import server_context
from hl7_ingest.handler import Hl7Handler
from hl7_ingest.mllp import END_BLOCK, START_BLOCK, frame
from hl7_ingest.server import MllpServer
from tests.support.certs import Certificates, Pair, tls_overrides
from tests.support.net import wait_until
from tests.support.settings import make_settings

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
ORDER = (DATA / "orm_o01_nw.hl7").read_bytes()
CLIENT_TIMEOUT = 10.0
SERVER_LOG = "hl7_ingest.server"


def client_context(certs: Certificates, pair: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


class TlsPeer:
    """A blocking MLLP sender over TLS, parsing replies without the code under test."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")

    def exchange(self, payload: bytes) -> bytes:
        self.sock.sendall(frame(payload))
        buffer = b""
        while END_BLOCK not in buffer:
            data = self.sock.recv(4096)
            if not data:
                raise AssertionError(f"closed before an answer: {buffer!r}")
            buffer += data
        assert buffer.startswith(START_BLOCK), buffer
        return buffer[len(START_BLOCK) : buffer.index(END_BLOCK)]

    def close(self) -> None:
        self.sock.close()


def msa(ack: bytes) -> list[str]:
    line = next(s for s in ack.decode().split("\r") if s.startswith("MSA|"))
    return line.split("|")


def closed_by_server(sock: socket.socket) -> bool:
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


Start = Callable[..., MllpServer]


@pytest.fixture
def serve(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, certs: Certificates
) -> Iterator[Start]:
    """``serve(client_cert="none", **settings)``: the MLLP server as the broker builds it."""
    with session_scope(session_factory) as session:
        for modality in ("CT", "CR", "MR", "US"):
            data = stations.StationData(modality, f"{modality}01")
            stations.create_station(session, data=data, actor=Actor(AuditSource.REST))
    servers: list[MllpServer] = []

    def start(client_cert: str = "none", **overrides: Any) -> MllpServer:
        values = {"hl7_tls_port": 0, **tls_overrides(certs, client_cert), **overrides}
        settings: Settings = make_settings(database_url, tmp_path, **values)
        hl7 = settings.hl7
        handler = Hl7Handler(hl7, session_factory)
        server = MllpServer(
            handler.handle,
            reject=handler.reject,
            host=hl7.bind_host,
            port=hl7.port,
            max_frame_bytes=hl7.max_frame_bytes,
            idle_timeout=hl7.idle_timeout,
            max_connections=hl7.max_connections,
            max_connections_per_address=hl7.max_connections_per_address,
            allowed_networks=hl7.address_allow_list,
            tls_port=hl7.tls_port,
            ssl_context=server_context(settings.tls),
        )
        server.port = server.start()  # type: ignore[attr-defined]
        servers.append(server)
        assert server.tls_port is not None
        return server

    yield start
    for server in servers:
        server.stop()


def tls_port(server: MllpServer) -> int:
    assert server.tls_port is not None
    return server.tls_port


def test_an_order_over_tls_is_acknowledged(serve: Start, certs: Certificates) -> None:
    server = serve()
    peer = TlsPeer(tls_port(server), client_context(certs))
    try:
        assert msa(peer.exchange(ORDER))[1:3] == ["AA", "MSG00001"]
        assert msa(peer.exchange(ORDER))[1] == "AA"  # persistent connection, same answer
    finally:
        peer.close()


def test_required_client_certificate(
    serve: Start, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    port = tls_port(serve("required"))
    refused = TlsPeer(port, client_context(certs))  # TLS 1.3: refused after the client's part
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        refused.exchange(ORDER)
    refused.close()

    def failed() -> bool:
        messages = [r.getMessage() for r in caplog.records]
        return any("handshake" in m and "CERTIFICATE" in m for m in messages)

    wait_until(failed, what="the handshake failure in the server's log")
    peer = TlsPeer(port, client_context(certs, certs.client))
    try:
        assert msa(peer.exchange(ORDER))[1] == "AA"
    finally:
        peer.close()
    assert any("client certificate CN=modality" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_a_tls_1_1_client_is_refused(
    serve: Start, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    port = tls_port(serve())
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=certs.ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname="localhost")
    # refused by the server (asyncio closes without sending the alert), not by the client
    wait_until(
        lambda: any("UNSUPPORTED_PROTOCOL" in r.getMessage() for r in caplog.records),
        what="the server's refusal of TLS 1.1",
    )


def test_a_plain_client_on_the_tls_port_is_dropped_without_harming_others(
    serve: Start, certs: Certificates
) -> None:
    server = serve()
    port = tls_port(server)
    other = TlsPeer(port, client_context(certs))  # connected before, served after
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as plain:
            plain.sendall(frame(ORDER))
            assert closed_by_server(plain)
        assert msa(other.exchange(ORDER))[1] == "AA"
    finally:
        other.close()
    # the plain port still speaks plain MLLP
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT) as sock:  # type: ignore[attr-defined]
        sock.sendall(frame(ORDER))
        assert b"MSA|AA|MSG00001" in sock.recv(65536)


def test_connection_caps_count_both_ports_together(serve: Start, certs: Certificates) -> None:
    server = serve(hl7_max_connections_per_address=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT):  # type: ignore[attr-defined]
        raw = socket.create_connection(("127.0.0.1", tls_port(server)), timeout=CLIENT_TIMEOUT)
        with raw, pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            client_context(certs).wrap_socket(raw, server_hostname="localhost")


def test_the_address_allow_list_holds_on_the_tls_port(serve: Start, certs: Certificates) -> None:
    server = serve(hl7_allowed_addresses="10.0.0.0/8")
    raw = socket.create_connection(("127.0.0.1", tls_port(server)), timeout=CLIENT_TIMEOUT)
    with raw, pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client_context(certs).wrap_socket(raw, server_hostname="localhost")


def test_a_silent_peer_on_the_tls_port_is_closed_after_the_idle_timeout(
    serve: Start, certs: Certificates
) -> None:
    server = serve(hl7_idle_timeout=0.5)
    with socket.create_connection(("127.0.0.1", tls_port(server)), timeout=CLIENT_TIMEOUT) as raw:
        assert closed_by_server(raw)  # never shook hands: closed within the idle timeout
    peer = TlsPeer(tls_port(server), client_context(certs))
    try:
        assert msa(peer.exchange(ORDER))[1] == "AA"
        assert closed_by_server(peer.sock)  # silent after the answer: closed as on plain MLLP
    finally:
        peer.close()
