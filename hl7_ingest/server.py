"""MLLP listener: an asyncio server in a daemon thread, one task per connection.

Original acknowledgement mode: the sender opens the connection and sends frames; every frame is
answered on the same connection, strictly in order, one at a time per connection. Connections are
persistent (many messages each) and served concurrently. ``handler`` does blocking work (database),
so it runs in a thread pool, never on the event loop. This layer moves bytes: it never looks at, nor
logs, the content (it is patient data).

Protection of the process (one file descriptor per connection, shared with DICOM and REST):
at most ``max_connections`` connections at a time and ``max_connections_per_address`` from one
source address; a connection over a cap, or from an address outside ``allowed_networks`` (when
given), is closed at once (and logged); connections already open keep working.

The handler may raise :class:`CloseConnection` to close the connection without an answer (the
sender resends later); :func:`current_peer` tells it which peer it is answering (for logs).

With ``tls_port`` and ``ssl_context`` the same server also listens for MLLP over TLS: the same
handler, caps (counted over both ports together), allow-list and idle timeout; the handshake
runs on the connection's own task within the idle timeout, so a peer that fails it (or speaks
plain MLLP to the TLS port) is closed without holding up anyone else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import ipaddress
import logging
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from app.tls import failure_reason, session_summary
from hl7_ingest.mllp import FrameDecoder, FrameEvent, Garbage, Oversized, frame

logger = logging.getLogger(__name__)

READ_SIZE = 65536
STOP_TIMEOUT = 30.0
LISTEN_BACKLOG = 100
ACCEPT_BATCH = 100
ACCEPT_RETRY_DELAY = 1.0
TLS_SHUTDOWN_TIMEOUT = 2.0  # seconds a closing TLS connection waits for the peer's close_notify

Handler = Callable[[bytes], bytes]
Reject = Callable[[str], bytes | None]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PEER: contextvars.ContextVar[str] = contextvars.ContextVar("mllp_peer", default="")


class CloseConnection(Exception):
    """Raised by a handler: close the connection without an answer (the reason is logged)."""


def current_peer() -> str:
    """The ``host:port`` of the peer whose message the handler is processing ("" outside)."""
    return _PEER.get()


class MllpServer:
    """HL7 v2 over MLLP; ``handler(payload) -> ack payload`` is called once per frame."""

    def __init__(
        self,
        handler: Handler,
        *,
        reject: Reject,
        host: str,
        port: int,
        max_frame_bytes: int,
        idle_timeout: float,
        max_workers: int = 8,
        max_connections: int = 200,
        max_connections_per_address: int = 20,
        allowed_networks: Sequence[Network] = (),
        tls_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if tls_port is not None and ssl_context is None:
            raise ValueError("an MLLP TLS port needs an SSL context")
        self._handler = handler
        self._reject = reject
        self._host = host
        self._port = port
        # (port, context): the plain listener, then the TLS one
        self._listeners: list[tuple[int, ssl.SSLContext | None]] = [(port, None)]
        if tls_port is not None:
            self._listeners.append((tls_port, ssl_context))
        self.tls_port: int | None = None  # bound, while serving
        self._max_frame_bytes = max_frame_bytes
        self._idle_timeout = idle_timeout
        self._max_workers = max_workers
        self._max_connections = max_connections
        self._max_per_address = max_connections_per_address
        self._allowed_networks = tuple(allowed_networks)
        self._per_address: Counter[str] = Counter()
        self._task_address: dict[asyncio.Task[None], str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._connections: dict[asyncio.Task[None], socket.socket] = {}

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> int:
        """Bind, start serving in a daemon thread and return the bound port.

        Returns once the socket is listening; raises ``OSError`` if the bind fails.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the MLLP server is already running")
            bound: concurrent.futures.Future[int] = concurrent.futures.Future()
            self._loop = asyncio.new_event_loop()
            self._executor = ThreadPoolExecutor(
                self._max_workers, thread_name_prefix="mllp-handler"
            )
            self._thread = threading.Thread(
                target=self._run, args=(bound,), name="mllp-server", daemon=True
            )
            self._thread.start()
            try:
                return bound.result()
            except BaseException:
                self._thread.join()
                self._cleanup()
                raise

    def stop(self) -> None:
        """Close the listener and every connection, then join the thread. Idempotent.

        Waits for handler calls already running in the worker threads (their replies are dropped).
        """
        with self._lock:
            thread, loop, stopping = self._thread, self._loop, self._stopping
            if thread is None or loop is None:
                return
            if stopping is not None:
                with contextlib.suppress(RuntimeError):  # the loop already ended
                    loop.call_soon_threadsafe(stopping.set)
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                logger.error("the MLLP server thread did not stop within %s s", STOP_TIMEOUT)
            self._cleanup()

    def _cleanup(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._thread = self._loop = self._stopping = self._executor = None

    # --- event loop thread -------------------------------------------------------------------

    def _run(self, bound: concurrent.futures.Future[int]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(bound))
        except BaseException as exc:
            if not bound.done():
                bound.set_exception(exc)
            else:
                logger.exception("the MLLP server loop failed")
        finally:
            loop.close()

    async def _serve(self, bound: concurrent.futures.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        try:
            for port, context in self._listeners:
                listeners.append((_listen(self._host, port), context))
        except BaseException:
            for sock, _ in listeners:
                sock.close()
            raise
        ports = [int(sock.getsockname()[1]) for sock, _ in listeners]
        for (sock, context), port in zip(listeners, ports, strict=True):
            loop.add_reader(sock, self._on_acceptable, sock, context)
            logger.info("%s listening on %s:%s", _kind(context), self._host, port)
        self.tls_port = ports[1] if len(ports) > 1 else None
        bound.set_result(ports[0])
        try:
            await self._stopping.wait()
        finally:
            for (sock, context), port in zip(listeners, ports, strict=True):
                loop.remove_reader(sock)
                sock.close()
                logger.info("%s listener on %s:%s closed", _kind(context), self._host, port)
            self.tls_port = None
            await self._close_connections()

    def _on_acceptable(
        self, listener: socket.socket, context: ssl.SSLContext | None = None
    ) -> None:
        """Accept pending connections; each is registered before anything else can run."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE, ENOBUFS...: pause accepting, never die
                logger.error("MLLP accept failed (%s); retrying in %s s", exc, ACCEPT_RETRY_DELAY)
                self._pause_accepting(listener, context)
                return
            refusal = self._refusal(address)
            if refusal:
                logger.warning(
                    "%s connection from %s refused: %s",
                    _kind(context),
                    _address_text(address),
                    refusal,
                )
                _drop(conn)
                continue
            self._start_connection(conn, _host(address), context)

    def _refusal(self, address: object) -> str:
        """Why a new connection from ``address`` must be closed at once ("" when it may stay)."""
        host = _host(address)
        if self._allowed_networks:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return "unreadable source address"
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not any(ip in network for network in self._allowed_networks):
                return "source address not allowed (BROKER_HL7_ALLOWED_ADDRESSES)"
        if len(self._connections) >= self._max_connections:
            return f"{self._max_connections} connections open (BROKER_HL7_MAX_CONNECTIONS)"
        if self._per_address[host] >= self._max_per_address:
            return (
                f"{self._max_per_address} connections open from this address "
                "(BROKER_HL7_MAX_CONNECTIONS_PER_ADDRESS)"
            )
        return ""

    def _pause_accepting(self, listener: socket.socket, context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(listener)

        def resume() -> None:
            if self._stopping is not None and not self._stopping.is_set():
                loop.add_reader(listener, self._on_acceptable, listener, context)

        loop.call_later(ACCEPT_RETRY_DELAY, resume)

    def _start_connection(
        self, conn: socket.socket, host: str, context: ssl.SSLContext | None = None
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._on_connection(conn, context))
        self._connections[task] = conn
        self._task_address[task] = host
        self._per_address[host] += 1
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._connections.pop(task, None)
        host = self._task_address.pop(task, None)
        if host is not None:
            self._per_address[host] -= 1
            if self._per_address[host] <= 0:
                del self._per_address[host]

    async def _close_connections(self) -> None:
        connections = dict(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        for conn in connections.values():  # a task cancelled before it made its transport
            conn.close()

    async def _on_connection(self, conn: socket.socket, context: ssl.SSLContext | None) -> None:
        peer = _peer(conn)
        if context is None:
            logger.info("MLLP connection from %s", peer)
        else:
            logger.info("MLLP TLS connection from %s", peer)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader, writer = await _open_streams(conn, context, self._idle_timeout)
        except OSError as exc:  # ssl.SSLError, a reset, the handshake timing out
            if context is not None:
                logger.warning("MLLP TLS handshake with %s failed: %s", peer, failure_reason(exc))
            else:
                logger.info("MLLP connection from %s lost: %s", peer, type(exc).__name__)
            conn.close()
            return
        if context is not None:
            _log_tls(writer, peer)
        try:
            await self._converse(reader, writer, peer)
        except ConnectionError as exc:
            logger.info("MLLP connection from %s lost: %s", peer, type(exc).__name__)
        except Exception:
            logger.exception("MLLP connection from %s failed", peer)
        finally:
            await _close_writer(writer)
            logger.info("MLLP connection from %s closed", peer)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        decoder = FrameDecoder(self._max_frame_bytes)
        while True:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for wraps every read in a new task
                async with asyncio.timeout(self._idle_timeout):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                logger.info("MLLP connection from %s idle for %s s", peer, self._idle_timeout)
                return
            if not data:
                logger.debug("MLLP peer %s closed its side", peer)
                for event in decoder.finish():
                    await self._on_event(event, writer, peer)
                return
            for event in decoder.feed(data):
                if not await self._on_event(event, writer, peer):
                    return

    async def _on_event(self, event: FrameEvent, writer: asyncio.StreamWriter, peer: str) -> bool:
        """Act on one decoder event; return whether the connection stays open."""
        if isinstance(event, Garbage):
            logger.warning("MLLP %s: skipped %d bytes outside a frame", peer, event.size)
            return True
        if isinstance(event, Oversized):
            await self._send_rejection(writer, peer)
            return False
        return await self._answer(event.payload, writer, peer)

    async def _answer(self, payload: bytes, writer: asyncio.StreamWriter, peer: str) -> bool:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(_PEER.set, peer)
        call = functools.partial(context.run, self._handler, payload)
        try:
            ack = await loop.run_in_executor(self._executor, call)
        except CloseConnection as exc:
            logger.warning("MLLP %s: closing without an answer: %s", peer, exc)
            return False
        except Exception:
            logger.exception("MLLP handler failed for a message from %s; closing", peer)
            return False
        await _send(writer, ack)
        return True

    async def _send_rejection(self, writer: asyncio.StreamWriter, peer: str) -> None:
        reason = f"frame larger than {self._max_frame_bytes} bytes"
        logger.warning("MLLP %s: %s; closing", peer, reason)
        loop = asyncio.get_running_loop()
        try:
            reply = await loop.run_in_executor(self._executor, self._reject, reason)
        except Exception:
            logger.exception("MLLP reject callback failed for %s", peer)
            return
        if reply is not None:
            await _send(writer, reply)


def _kind(context: ssl.SSLContext | None) -> str:
    return "MLLP" if context is None else "MLLP TLS"


async def _open_streams(
    conn: socket.socket, context: ssl.SSLContext | None, handshake_timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over an accepted socket; with ``context``, after the server-side handshake."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    tls: dict[str, object] = {}
    if context is not None:
        tls = {
            "ssl": context,
            "ssl_handshake_timeout": handshake_timeout,
            "ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT,
        }
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn, **tls)  # type: ignore[arg-type]
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _log_tls(writer: asyncio.StreamWriter, peer: str) -> None:
    tls = writer.get_extra_info("ssl_object")
    if isinstance(tls, ssl.SSLObject):
        cipher = tls.cipher()
        summary = session_summary(tls.version(), cipher[0] if cipher else None, tls.getpeercert())
        logger.info("MLLP TLS from %s: %s", peer, summary)


def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on the first address ``host`` resolves to."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _send(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(frame(payload))
    await writer.drain()


def _host(address: object) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def _address_text(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _drop(conn: socket.socket) -> None:
    """Close a just-accepted connection at once, without reading from it."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _peer(conn: socket.socket) -> str:
    try:
        address = conn.getpeername()
    except OSError:
        return "<disconnected>"
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
