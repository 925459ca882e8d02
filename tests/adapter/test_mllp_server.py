"""MllpServer over real sockets on 127.0.0.1 with fake handlers (no HL7 content involved)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hl7_ingest.mllp import END_BLOCK, START_BLOCK, frame
from hl7_ingest.server import CloseConnection, MllpServer, current_peer
from tests.support.net import wait_until

CLIENT_TIMEOUT = 5.0
LOGGER = "hl7_ingest.server"


def ack(payload: bytes) -> bytes:
    return b"ACK:" + payload


def nak(reason: str) -> bytes:
    return b"NAK:" + reason.encode()


class Client:
    """A blocking MLLP peer that parses replies without the code under test."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.send(frame(payload))

    def recv_frame(self) -> bytes:
        while END_BLOCK not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise AssertionError(f"connection closed; unparsed bytes {self.buffer!r}")
            self.buffer += data
        block, self.buffer = self.buffer.split(END_BLOCK, 1)
        assert block.startswith(START_BLOCK), block
        return block[len(START_BLOCK) :]

    def closed_by_server(self) -> bool:
        """Block until the server closes the connection (True) or the timeout expires."""
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return True
                self.buffer += data
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


ServerFactory = Callable[..., tuple[MllpServer, int]]


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    servers: list[MllpServer] = []

    def factory(
        handler: Callable[[bytes], bytes] = ack,
        *,
        reject: Callable[[str], bytes | None] = nak,
        port: int = 0,
        max_frame_bytes: int = 1 << 20,
        idle_timeout: float = 30.0,
        max_workers: int = 8,
        **limits: Any,
    ) -> tuple[MllpServer, int]:
        server = MllpServer(
            handler,
            reject=reject,
            host="127.0.0.1",
            port=port,
            max_frame_bytes=max_frame_bytes,
            idle_timeout=idle_timeout,
            max_workers=max_workers,
            **limits,
        )
        servers.append(server)
        return server, server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[[int], Client]]:
    opened: list[Client] = []

    def connect(port: int) -> Client:
        client = Client(port)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def test_start_returns_bound_port_and_running(make_server: ServerFactory) -> None:
    server, port = make_server()
    assert port > 0
    assert server.running
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT):
        pass


def test_persistent_connection_twenty_messages_in_order(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    seen: list[bytes] = []

    def handler(payload: bytes) -> bytes:
        seen.append(payload)
        return ack(payload)

    _, port = make_server(handler)
    client = clients(port)
    messages = [f"MSG-{i}".encode() for i in range(20)]
    for message in messages:
        client.send_frame(message)
        assert client.recv_frame() == ack(message)
    assert seen == messages


def test_message_split_across_sends(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    _, port = make_server()
    client = clients(port)
    data = frame(b"MSH|split|message\rPID|1\r")
    for i in range(0, len(data), 4):
        client.send(data[i : i + 4])
        time.sleep(0.005)  # spread the pieces over separate TCP segments, not a readiness wait
    assert client.recv_frame() == ack(b"MSH|split|message\rPID|1\r")
    # The connection stays usable.
    client.send_frame(b"next")
    assert client.recv_frame() == ack(b"next")


def test_two_frames_in_one_send_get_two_acks_in_order(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    _, port = make_server()
    client = clients(port)
    client.send(frame(b"first") + frame(b"second"))
    assert client.recv_frame() == ack(b"first")
    assert client.recv_frame() == ack(b"second")


def test_garbage_then_frame_is_acknowledged_and_logged_without_content(
    make_server: ServerFactory, clients: Callable[[int], Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    _, port = make_server()
    client = clients(port)
    client.send(b"SECRET-PATIENT\r\n" + frame(b"valid"))
    assert client.recv_frame() == ack(b"valid")
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "16 bytes" in warnings[0].getMessage()
    assert all("SECRET" not in r.getMessage() for r in caplog.records)
    assert all(b"valid".decode() not in r.getMessage() for r in caplog.records)


def test_oversized_frame_gets_reject_output_then_close(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    reasons: list[str] = []

    def reject(reason: str) -> bytes:
        reasons.append(reason)
        return nak(reason)

    handled: list[bytes] = []

    def handler(payload: bytes) -> bytes:
        handled.append(payload)
        return ack(payload)

    _, port = make_server(handler, reject=reject, max_frame_bytes=100)
    client = clients(port)
    client.send_frame(b"x" * 100)
    assert client.recv_frame() == ack(b"x" * 100)
    client.send(frame(b"y" * 101) + frame(b"after"))
    assert client.recv_frame() == b"NAK:frame larger than 100 bytes"
    assert client.closed_by_server()
    assert reasons == ["frame larger than 100 bytes"]
    assert handled == [b"x" * 100]


def test_oversized_with_reject_returning_none_just_closes(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    _, port = make_server(reject=lambda reason: None, max_frame_bytes=10)
    client = clients(port)
    client.send(frame(b"z" * 11))
    assert client.closed_by_server()
    assert client.buffer == b""


def test_idle_timeout_closes_the_connection(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    _, port = make_server(idle_timeout=0.3)
    client = clients(port)
    client.send_frame(b"hello")
    assert client.recv_frame() == ack(b"hello")
    last_activity = time.monotonic()
    assert client.closed_by_server()
    assert time.monotonic() - last_activity >= 0.25
    # A fresh connection is served.
    other = clients(port)
    other.send_frame(b"again")
    assert other.recv_frame() == ack(b"again")


def test_active_connection_outlives_the_idle_timeout(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    _, port = make_server(idle_timeout=0.3)
    client = clients(port)
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < 0.9:  # three idle periods, never idle for one
        client.send_frame(b"tick")
        assert client.recv_frame() == ack(b"tick")
        count += 1
        time.sleep(0.05)
    assert count > 5


def test_ten_concurrent_connections_keep_their_order(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    calls: list[bytes] = []

    def handler(payload: bytes) -> bytes:
        calls.append(payload)
        return ack(payload)

    _, port = make_server(handler, max_workers=4)
    connections = [clients(port) for _ in range(10)]

    def converse(index: int) -> list[bytes]:
        client = connections[index]
        messages = [f"C{index}-M{n}".encode() for n in range(10)]
        client.send(b"".join(frame(m) for m in messages))  # pipelined: all before any ACK
        return [client.recv_frame() for _ in messages]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(converse, range(10)))
    for index, acks in enumerate(results):
        assert acks == [ack(f"C{index}-M{n}".encode()) for n in range(10)]
        handled = [c for c in calls if c.startswith(f"C{index}-".encode())]
        assert handled == [f"C{index}-M{n}".encode() for n in range(10)]
    assert len(calls) == 100


def test_handler_runs_off_the_event_loop(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    release = threading.Event()
    order: list[str] = []
    threads: list[str] = []

    def handler(payload: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        if payload == b"slow":
            order.append("slow-started")
            if not release.wait(3 * CLIENT_TIMEOUT):
                raise AssertionError("never released")
        return ack(payload)

    _, port = make_server(handler)
    slow = clients(port)
    slow.send_frame(b"slow")
    wait_until(lambda: "slow-started" in order, what="the slow handler to start")
    fast = clients(port)
    fast.send_frame(b"fast")
    assert fast.recv_frame() == ack(b"fast")  # answered while the slow handler still blocks
    order.append("fast-acked")
    release.set()
    assert slow.recv_frame() == ack(b"slow")
    order.append("slow-acked")
    assert order == ["slow-started", "fast-acked", "slow-acked"]
    assert all(name.startswith("mllp-handler") for name in threads)


def test_handler_exception_closes_only_that_connection(
    make_server: ServerFactory, clients: Callable[[int], Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def handler(payload: bytes) -> bytes:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        return ack(payload)

    server, port = make_server(handler)
    bystander = clients(port)
    bystander.send_frame(b"before")
    assert bystander.recv_frame() == ack(b"before")

    victim = clients(port)
    victim.send(frame(b"boom") + frame(b"never handled"))
    assert victim.closed_by_server()
    assert victim.buffer == b""

    failures = [r for r in caplog.records if r.name == LOGGER and r.exc_info is not None]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert isinstance(failures[0].exc_info[1], RuntimeError)  # type: ignore[index]

    assert server.running
    bystander.send_frame(b"still open")
    assert bystander.recv_frame() == ack(b"still open")
    fresh = clients(port)
    fresh.send_frame(b"new")
    assert fresh.recv_frame() == ack(b"new")


def test_stop_closes_connections_and_frees_the_port(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    server, port = make_server()
    client = clients(port)
    client.send_frame(b"one")
    assert client.recv_frame() == ack(b"one")
    idle = clients(port)  # connected, never sent anything

    server.stop()
    assert not server.running
    assert client.closed_by_server()
    assert idle.closed_by_server()
    server.stop()  # idempotent

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT).close()
    again, same_port = make_server(port=port)
    assert same_port == port
    replacement = clients(port)
    replacement.send_frame(b"two")
    assert replacement.recv_frame() == ack(b"two")
    again.stop()


def test_stop_without_start_is_a_no_op() -> None:
    server = MllpServer(
        ack, reject=nak, host="127.0.0.1", port=0, max_frame_bytes=10, idle_timeout=1.0
    )
    server.stop()
    assert not server.running


def test_bind_failure_raises_from_start() -> None:
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        server = MllpServer(
            ack,
            reject=nak,
            host="127.0.0.1",
            port=occupied.getsockname()[1],
            max_frame_bytes=10,
            idle_timeout=1.0,
        )
        with pytest.raises(OSError):
            server.start()
    # No thread left behind; stop() is harmless and the same object can start once the port is free.
    assert not server.running
    server.stop()
    try:
        assert server.start() > 0
        assert server.running
    finally:
        server.stop()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "refused" in r.message]


def test_connection_over_the_cap_is_closed_and_open_ones_keep_working(
    make_server: ServerFactory, clients: Callable[[int], Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    _, port = make_server(max_connections=2, max_connections_per_address=10)
    first, second = clients(port), clients(port)
    for client in (first, second):  # both are registered by the server before the third
        client.send_frame(b"hello")
        assert client.recv_frame() == ack(b"hello")
    extra = clients(port)
    assert extra.closed_by_server()
    assert any("BROKER_HL7_MAX_CONNECTIONS" in m for m in refusals(caplog))
    first.send_frame(b"still served")
    assert first.recv_frame() == ack(b"still served")
    second.close()
    wait_until(lambda: _served(port), what="a slot freed by a closed connection")


def _served(port: int) -> bool:
    client = Client(port)
    try:
        client.send_frame(b"again")
        return client.recv_frame() == ack(b"again")
    except (AssertionError, OSError):
        return False
    finally:
        client.close()


def test_connections_per_address_are_capped(
    make_server: ServerFactory, clients: Callable[[int], Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    _, port = make_server(max_connections=50, max_connections_per_address=3)
    kept = [clients(port) for _ in range(3)]
    for client in kept:
        client.send_frame(b"x")
        assert client.recv_frame() == ack(b"x")
    extra = clients(port)
    assert extra.closed_by_server()
    assert any("PER_ADDRESS" in m for m in refusals(caplog))
    for client in kept:
        client.send_frame(b"y")
        assert client.recv_frame() == ack(b"y")


def test_address_outside_the_allow_list_is_closed_at_once(
    make_server: ServerFactory, clients: Callable[[int], Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    seen: list[bytes] = []

    def handler(payload: bytes) -> bytes:
        seen.append(payload)
        return ack(payload)

    _, port = make_server(handler, allowed_networks=[ipaddress.ip_network("10.0.0.0/8")])
    client = clients(port)
    client.send(frame(b"not from here"))
    assert client.closed_by_server()
    assert client.buffer == b""
    assert seen == []
    assert any("ALLOWED_ADDRESSES" in m for m in refusals(caplog))


def test_address_inside_the_allow_list_is_served(
    make_server: ServerFactory, clients: Callable[[int], Client]
) -> None:
    networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]
    _, port = make_server(allowed_networks=networks)
    client = clients(port)
    client.send_frame(b"local")
    assert client.recv_frame() == ack(b"local")


def test_close_connection_from_the_handler_closes_without_an_answer(
    make_server: ServerFactory, clients: Callable[[int], Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    peers: list[str] = []

    def handler(payload: bytes) -> bytes:
        peers.append(current_peer())
        if payload == b"later":
            raise CloseConnection("database unavailable")
        return ack(payload)

    _, port = make_server(handler)
    client = clients(port)
    client.send(frame(b"later") + frame(b"not handled"))
    assert client.closed_by_server()
    assert client.buffer == b""
    assert peers == [f"127.0.0.1:{client.sock.getsockname()[1]}"]
    closing = [r for r in caplog.records if r.name == LOGGER and "without an answer" in r.message]
    assert len(closing) == 1 and closing[0].exc_info is None
    other = clients(port)
    other.send_frame(b"fine")
    assert other.recv_frame() == ack(b"fine")
