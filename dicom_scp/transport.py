"""The DICOM front door: every accepted socket is bounded in time, memory and number.

pynetdicom's server trusts its peers: accepted sockets have no timeout, so its reader and sender
block for ever in ``recv``/``send``; its ACSE and network timers are checked only by the loop
that is blocked; a PDU is buffered to the length its header declares before anything checks it;
and ``maximum_associations`` counts sockets that never associated. This module wraps it without
patching it:

- ``GuardedAssociationServer`` accepts, sets a timeout, TCP keep-alive and ``TCP_NODELAY`` on
  the socket, defers the TLS handshake to the connection's own thread, and closes a connection
  at once (no thread) past ``BROKER_DICOM_MAX_CONNECTIONS``.
- ``GuardedSocket`` reads each PDU header first and refuses, before the body is read, an unknown
  PDU type, anything but an A-ASSOCIATE-RQ before association, an A-ASSOCIATE-RQ longer than
  ``BROKER_MAX_ASSOCIATE_RQ_BYTES`` and a P-DATA-TF longer than the Maximum Length the broker
  stated (PS3.8 9.3.1, D.1): A-ABORT (source 2) and close.
- ``FrontDoor`` holds the connections of every listener of one broker, admits associations
  (``dicom_scp.admission``: only established associations count against the limits), and runs
  the watchdog: a connection not associated within ARTIM (PS3.8 9.1.5,
  ``BROKER_DICOM_ARTIM_TIMEOUT``), an association with no whole PDU received or sent for
  ``BROKER_NETWORK_TIMEOUT`` or older than ``BROKER_MAX_ASSOCIATION_SECONDS`` has its socket
  shut down from the watchdog thread, which wakes a reader or sender blocked on it.

``FrontDoor.start_listener`` starts any listener (plain or TLS) with all of this;
``FrontDoor.stats`` is a thread-safe snapshot of the counters for monitoring.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from app import metrics
from app.tls import failure_reason, session_summary
from dicom_scp.admission import (
    REJECT_CODES,
    AdmissionPolicy,
    RejectReason,
    allowed_sop_classes,
    service_of,
)
from dicom_scp.reactor import make_waiting

LOG = logging.getLogger(__name__)

# The rejections' labels in the association counter (``app.metrics``, PS3.8 Table 9-21).
_METRIC_LABELS = {
    RejectReason.CALLING_AE: "calling_ae",
    RejectReason.CALLED_AE: "called_ae",
    RejectReason.ASSOCIATIONS: "limit",
    RejectReason.CALLING_AE_ASSOCIATIONS: "limit",
}

PDU_HEADER_LENGTH = 6  # type, reserved, 4-byte length (PS3.8 9.3.1)
A_ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_ABORT = 0x07
PDU_TYPES = range(0x01, 0x08)
# With BROKER_MAX_PDU_SIZE=0 the broker states no limit; it still reads no PDU beyond this.
UNSTATED_PDU_CEILING = 16 * 1024 * 1024
# A DIMSE message spans any number of P-DATA-TF PDUs and pynetdicom joins its fragments in memory:
# a command set, and a data set of any service but storage (identifiers, MPPS, commitment
# requests), may not grow past these. Storage data sets are the storage service's to bound.
MAX_COMMAND_BYTES = 64 * 1024
MAX_DATA_SET_BYTES = 8 * 1024 * 1024
UNBOUNDED_SERVICES = frozenset({"store"})
# A-ABORT reasons (PS3.8 Table 9-26), source 2: the DICOM UL service provider.
ABORT_UNRECOGNIZED_PDU = 0x01
ABORT_UNEXPECTED_PDU = 0x02
ABORT_INVALID_PARAMETER = 0x06
ABORT_REASON: dict[RejectReason, int] = {
    RejectReason.UNKNOWN_PDU: ABORT_UNRECOGNIZED_PDU,
    RejectReason.UNEXPECTED_PDU: ABORT_UNEXPECTED_PDU,
}
KEEPALIVE_IDLE = 60  # seconds before the first TCP keep-alive probe
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 5
WATCHDOG_TICK = 0.2  # seconds between sweeps (at most; less for a short ARTIM)

Clock = Callable[[], float]


class WatchdogReason:
    ARTIM = "artim"
    IDLE = "idle"
    LIFETIME = "lifetime"


def a_abort_pdu(reason: int) -> bytes:
    """A-ABORT from the service provider (PS3.8 9.3.8)."""
    return struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, reason)


@dataclass(frozen=True)
class TransportPolicy:
    """Time and size bounds of every connection (seconds and bytes)."""

    artim_timeout: float
    idle_timeout: float
    max_association_seconds: float
    max_connections: int
    max_pdu_length: int  # 0: not stated to peers; UNSTATED_PDU_CEILING applies
    max_associate_rq_length: int
    # Several processes listen on the same port (SO_REUSEPORT): the kernel spreads the
    # connections over them, so one interpreter's lock does not bound the throughput.
    reuse_port: bool = False

    @property
    def pdu_ceiling(self) -> int:
        return self.max_pdu_length or UNSTATED_PDU_CEILING


@dataclass(frozen=True)
class FrontDoorStats:
    """A snapshot of the counters (for the metrics endpoint)."""

    connections_open: int
    connections_not_associated: int
    associations_established: int
    refused: Mapping[str, int]
    aborted_by_watchdog: Mapping[str, int]


@dataclass(eq=False)
class Connection:
    """One accepted socket, from accept to close."""

    sock: socket.socket
    address: Any
    opened: float
    last_activity: float
    calling_ae: str | None = None
    admitted_at: float | None = None
    # The association was released or aborted: its slot is free, the socket waits for the
    # peer to close (ARTIM, PS3.8 9.1.5).
    ended_at: float | None = None
    closed: bool = False
    # Bytes of the DIMSE message being received, per kind (command set, data set).
    command_bytes: int = 0
    data_bytes: int = 0

    @property
    def admitted(self) -> bool:
        """An established association holds this connection (it counts against the limits)."""
        return self.admitted_at is not None and self.ended_at is None

    def shut(self) -> None:
        """Shut the socket down for both directions: wakes any thread blocked on it.

        ``socket.socket.shutdown`` on purpose: on a TLS socket ``SSLSocket.shutdown`` would
        also drop the SSL object under a thread that is still using it.
        """
        with contextlib.suppress(OSError):  # already closed, or never connected
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


def _configure(sock: socket.socket, timeout: float) -> None:
    sock.settimeout(timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class FrontDoor:
    """The connections of every listener of one broker, their admission and their watchdog."""

    def __init__(
        self,
        transport: TransportPolicy,
        admission: AdmissionPolicy,
        clock: Clock = time.monotonic,
    ) -> None:
        self.transport = transport
        self.admission = admission
        self._clock = clock
        self._lock = threading.Lock()
        self._open: set[Connection] = set()
        self._refused: Counter[str] = Counter()
        self._aborted: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- connections ---------------------------------------------------------------------

    def open(self, sock: socket.socket, address: Any) -> Connection | None:
        """Register an accepted socket; ``None`` past the connection cap."""
        now = self._clock()
        with self._lock:
            if len(self._open) >= self.transport.max_connections:
                self._refused[RejectReason.CONNECTIONS] += 1
                return None
            conn = Connection(sock, address, opened=now, last_activity=now)
            self._open.add(conn)
            return conn

    def close(self, conn: Connection) -> None:
        """Shut the socket down and stop counting it (idempotent)."""
        with self._lock:
            self._open.discard(conn)
            conn.closed = True
        conn.shut()

    def refuse(self, conn: Connection, reason: RejectReason) -> None:
        with self._lock:
            self._refused[reason] += 1
        self.close(conn)

    def touch(self, conn: Connection) -> None:
        conn.last_activity = self._clock()

    # -- admission -----------------------------------------------------------------------

    def admit(self, conn: Connection, calling_ae: str, called_ae: str) -> RejectReason | None:
        """Check the A-ASSOCIATE-RQ and reserve the association slot when it passes."""
        with self._lock:
            admitted = [c for c in self._open if c.admitted]
            by_ae = sum(1 for c in admitted if c.calling_ae == calling_ae)
            reason = self.admission.check(calling_ae, called_ae, len(admitted), by_ae)
            if reason is None:
                conn.calling_ae = calling_ae
                conn.admitted_at = self._clock()
                conn.last_activity = conn.admitted_at
            else:
                self._refused[reason] += 1
            return reason

    def on_requested(self, event: evt.Event) -> None:
        """EVT_REQUESTED: admit or reject (A-ASSOCIATE-RJ) before pynetdicom negotiates.

        A notification handler's exception is only logged by pynetdicom, which would then
        accept: every failure here rejects instead.
        """
        assoc = event.assoc
        try:
            conn = cast(GuardedSocket, assoc.dul.socket).connection
            request = cast(A_ASSOCIATE, assoc.requestor.primitive)
            calling = str(request.calling_ae_title).strip()
            called = str(request.called_ae_title).strip()
            reason = self.admit(conn, calling, called)
            if reason is None:
                self._restrict_contexts(assoc, calling)
                return
            LOG.info("association from %s to %s rejected: %s", calling, called, reason.value)
        except Exception:
            LOG.exception("association admission failed")
            reason = RejectReason.INTERNAL
        assoc.acse.send_reject(*REJECT_CODES[reason])
        metrics.DICOM_ASSOCIATIONS_REJECTED.labels(_METRIC_LABELS.get(reason, "other")).inc()
        # As pynetdicom does for its own rejections: wait until the A-ASSOCIATE-RJ is out and
        # the peer closed (or ARTIM, which the association's ACSE timeout is set to).
        assoc.kill()

    def _end(self, conn: Connection) -> None:
        """The association is over (A-RELEASE-RQ or A-ABORT read): its slot is free at once.

        Marked when the peer's PDU header is read, before the A-RELEASE-RP goes out: a modality
        that associates again right after the RP is never refused for its own previous
        association, which would otherwise count until its socket closes.
        """
        with self._lock:
            if conn.admitted_at is not None and conn.ended_at is None:
                conn.ended_at = self._clock()

    def _restrict_contexts(self, assoc: Association, calling_ae: str) -> None:
        services = self.admission.services_of(calling_ae)
        if services is None:
            return
        contexts = assoc.acceptor.supported_contexts
        allowed = allowed_sop_classes(services, (str(cx.abstract_syntax) for cx in contexts))
        assoc.acceptor.supported_contexts = [cx for cx in contexts if cx.abstract_syntax in allowed]

    def check_header(self, conn: Connection, pdu_type: int, length: int) -> RejectReason | None:
        """A PDU header, before its body is read."""
        limits = self.transport
        if pdu_type not in PDU_TYPES:
            return RejectReason.UNKNOWN_PDU
        if conn.admitted_at is None and pdu_type != A_ASSOCIATE_RQ:
            return RejectReason.UNEXPECTED_PDU
        if pdu_type in (A_RELEASE_RQ, A_ABORT):
            self._end(conn)
        if pdu_type == P_DATA_TF:
            return RejectReason.PDU_LENGTH if length > limits.pdu_ceiling else None
        if length > limits.max_associate_rq_length:
            if pdu_type == A_ASSOCIATE_RQ:
                return RejectReason.ASSOCIATE_RQ_LENGTH
            return RejectReason.PDU_LENGTH
        return None

    # -- watchdog ------------------------------------------------------------------------

    def expired(self, now: float) -> list[tuple[Connection, str]]:
        """The connections past a deadline, with the deadline's name."""
        limits = self.transport
        found: list[tuple[Connection, str]] = []
        with self._lock:
            for conn in self._open:
                if conn.ended_at is not None:
                    if now - conn.ended_at > limits.artim_timeout:
                        found.append((conn, WatchdogReason.ARTIM))
                elif conn.admitted_at is None:
                    if now - conn.opened > limits.artim_timeout:
                        found.append((conn, WatchdogReason.ARTIM))
                elif now - conn.admitted_at > limits.max_association_seconds:
                    found.append((conn, WatchdogReason.LIFETIME))
                elif now - conn.last_activity > limits.idle_timeout:
                    found.append((conn, WatchdogReason.IDLE))
        return found

    def sweep(self) -> int:
        """Close every connection past a deadline; how many were closed."""
        gone = self.expired(self._clock())
        for conn, reason in gone:
            with self._lock:
                self._aborted[reason] += 1
            LOG.info(
                "DICOM connection from %s closed by the watchdog: %s (%s)",
                conn.address[0] if conn.address else "?",
                reason,
                conn.calling_ae or "not associated",
            )
            self.close(conn)
        return len(gone)

    def _watch(self) -> None:
        tick = min(WATCHDOG_TICK, self.transport.artim_timeout / 4)
        while not self._stopping.wait(tick):
            try:
                self.sweep()
            except Exception:  # the watchdog must outlive any surprise
                LOG.exception("DICOM watchdog sweep failed")

    def start(self) -> None:
        if self._watchdog is None:
            self._stopping.clear()
            self._watchdog = threading.Thread(
                target=self._watch, name="dicom-watchdog", daemon=True
            )
            self._watchdog.start()

    def stop(self) -> None:
        """Stop the watchdog and shut every open connection down."""
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
            self._watchdog = None
        with self._lock:
            remaining = list(self._open)
        for conn in remaining:
            self.close(conn)

    def stats(self) -> FrontDoorStats:
        with self._lock:
            admitted = sum(1 for c in self._open if c.admitted)
            return FrontDoorStats(
                connections_open=len(self._open),
                connections_not_associated=len(self._open) - admitted,
                associations_established=admitted,
                refused=dict(self._refused),
                aborted_by_watchdog=dict(self._aborted),
            )

    # -- listeners -----------------------------------------------------------------------

    def start_listener(
        self,
        ae: ApplicationEntity,
        address: tuple[str, int],
        handlers: list[Any],
        ssl_context: ssl.SSLContext | None = None,
    ) -> GuardedAssociationServer:
        """Serve ``ae``'s supported contexts on ``address`` (TLS with ``ssl_context``)."""
        self.start()
        server = GuardedAssociationServer(
            self,
            ae,
            address,
            ae.ae_title,
            ae.supported_contexts,
            ssl_context,
            [*handlers, (evt.EVT_REQUESTED, self.on_requested)],
        )
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        thread = threading.Thread(
            target=server.serve_forever, name=f"AcceptorServer@{stamp}", daemon=True
        )
        thread.start()
        ae._servers.append(server)
        return server


class GuardedSocket(AssociationSocket):
    """pynetdicom's socket wrapper, checking each PDU header before the body is read.

    pynetdicom's DUL reads a PDU as ``recv(6)`` then ``recv(length)``; the header read is
    checked here, and a refused PDU makes the header read come back empty, which pynetdicom
    takes as the connection closing (Evt17).
    """

    def __init__(
        self, assoc: Association, client_socket: socket.socket, door: FrontDoor, conn: Connection
    ) -> None:
        super().__init__(assoc, client_socket=client_socket)
        self.door = door
        self.connection = conn
        self._body_next = False
        self._pdu_type = 0

    def _read(self, nr_bytes: int) -> bytearray:
        """``nr_bytes`` or, when the peer closed or the socket failed, fewer: the connection is
        then over (pynetdicom's reactor may linger, the connection is not counted)."""
        try:
            data = super().recv(nr_bytes)
        except OSError:
            self._ended()
            raise
        if len(data) < nr_bytes:
            self._ended()
        return data

    def _ended(self) -> None:
        """The connection is over: stop counting it and, before association, wake the
        association thread that waits for the A-ASSOCIATE-RQ (it takes ``None`` as its ARTIM
        expiring), so that no thread outlives its connection by the ARTIM time."""
        self.door.close(self.connection)
        if self.connection.admitted_at is None:
            self.assoc.dul.to_user_queue.put(None)

    def recv(self, nr_bytes: int) -> bytearray:
        if self.connection.closed:
            self._ended()
            return bytearray()
        if self._body_next:
            self._body_next = False
            body = self._read(nr_bytes)
            if len(body) != nr_bytes:
                return body
            self.door.touch(self.connection)
            if self._pdu_type == P_DATA_TF and not self._fragments_fit(body):
                self._refuse(RejectReason.MESSAGE_LENGTH, P_DATA_TF, nr_bytes)
                self._ended()
                return bytearray()
            return body
        header = self._read(nr_bytes)
        if nr_bytes != PDU_HEADER_LENGTH or len(header) != PDU_HEADER_LENGTH:
            return header
        pdu_type, _, length = struct.unpack(">BBL", header)
        reason = self.door.check_header(self.connection, pdu_type, length)
        if reason is None:
            self._body_next = True
            self._pdu_type = pdu_type
            return header
        self._refuse(reason, pdu_type, length)
        self._ended()
        return bytearray()

    def _fragments_fit(self, body: bytes | bytearray) -> bool:
        """Add the P-DATA-TF's fragments (PS3.8 9.3.5, E.2) to the message being received;
        ``False`` once a command or non-storage data set grows past its bound. Malformed PDV
        items are left to pynetdicom, which aborts on them."""
        conn = self.connection
        pos = 0
        while pos + 6 <= len(body):
            length, context_id, control = struct.unpack_from(">LBB", body, pos)
            fragment = max(length - 2, 0)
            pos += 4 + length
            if control & 0x01:
                conn.command_bytes = 0 if control & 0x02 else conn.command_bytes + fragment
                if conn.command_bytes > MAX_COMMAND_BYTES:
                    return False
                continue
            conn.data_bytes = 0 if control & 0x02 else conn.data_bytes + fragment
            if conn.data_bytes > MAX_DATA_SET_BYTES and not self._unbounded(context_id):
                return False
        return True

    def _unbounded(self, context_id: int) -> bool:
        context = self.assoc._accepted_cx.get(context_id)
        if context is None or context.abstract_syntax is None:
            return False
        return service_of(str(context.abstract_syntax)) in UNBOUNDED_SERVICES

    def _refuse(self, reason: RejectReason, pdu_type: int, length: int) -> None:
        LOG.info(
            "DICOM connection from %s aborted: %s (PDU type 0x%02X, length %d)",
            self.connection.address[0] if self.connection.address else "?",
            reason.value,
            pdu_type,
            length,
        )
        try:
            # The DUL thread both reads and sends: nothing else writes to this socket now.
            sock = cast(socket.socket, self.socket)
            sock.sendall(a_abort_pdu(ABORT_REASON.get(reason, ABORT_INVALID_PARAMETER)))
        except (OSError, AttributeError):
            pass
        self.door.refuse(self.connection, reason)

    def send(self, bytestream: bytes) -> None:
        super().send(bytestream)
        self.door.touch(self.connection)

    def close(self) -> None:
        super().close()
        self.door.close(self.connection)


class GuardedRequestHandler(RequestHandler):
    """One accepted connection: TLS handshake, the association, then the socket's end."""

    server: GuardedAssociationServer

    def handle(self) -> None:
        door = self.server.door
        conn = self.server.connection_of(self.request)
        if conn is None:
            return
        try:
            if isinstance(self.request, ssl.SSLSocket) and not _handshake(
                self.request, self.client_address
            ):
                return
            assoc = self._create_association()
            waits = make_waiting(assoc)
            try:
                evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
                assoc.start()
                # Joined so that the connection is counted until its association thread ends.
                assoc.join()
            finally:
                waits.close()
        except (OSError, ValueError) as exc:
            LOG.info("DICOM connection from %s failed: %s", self.client_address[0], exc)
        finally:
            door.close(conn)
            cast(socket.socket, self.request).close()

    def _create_association(self) -> Association:
        """pynetdicom's ``RequestHandler._create_association`` with a ``GuardedSocket``.

        Rewritten rather than extended: the parent creates a plain ``AssociationSocket``, whose
        constructor already queues the transport-connected event (Evt5), so it cannot be
        swapped afterwards.
        """
        conn = self.server.connection_of(self.request)
        assert conn is not None
        assoc = Association(self.ae, "acceptor")
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{datetime.now().strftime('%Y%m%d%H%M%S')}"
        # For an acceptor the ACSE timeout is the wait for the A-ASSOCIATE-RQ and, after a
        # rejection or release, for the peer to close: both are ARTIM (PS3.8 9.1.5).
        assoc.acse_timeout = self.server.door.transport.artim_timeout
        sock = GuardedSocket(assoc, cast(socket.socket, self.request), self.server.door, conn)
        assoc.set_socket(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        # A new list, the same contexts: pynetdicom deep-copies them (181 contexts, 7,694
        # transfer syntaxes: ~50 ms per association), but negotiation only reads them and
        # the front door only filters the list.
        assoc.acceptor.supported_contexts = list(self.server.contexts)
        assoc.requestor.address_info = self.remote
        for event, bound in self.server._handlers.items():
            if event.is_intervention and bound:
                assoc.bind(event, *bound)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in cast(list[tuple[Callable[..., Any], Any]], bound):
                    assoc.bind(event, handler, args)
        return assoc


def _handshake(conn: ssl.SSLSocket, address: Any) -> bool:
    """The TLS handshake, in the connection's thread (the watchdog's ARTIM bounds it)."""
    peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
    try:
        conn.do_handshake()
    except (OSError, ValueError) as exc:  # ssl.SSLError, a reset, a timeout, a shut socket
        LOG.warning("DICOM TLS handshake with %s failed: %s", peer, failure_reason(exc))
        return False
    cipher = conn.cipher()
    summary = session_summary(conn.version(), cipher[0] if cipher else None, conn.getpeercert())
    LOG.info("DICOM TLS from %s: %s", peer, summary)
    return True


class GuardedAssociationServer(ThreadedAssociationServer):
    """A ``ThreadedAssociationServer`` whose connections a ``FrontDoor`` bounds."""

    daemon_threads = True

    def __init__(
        self,
        door: FrontDoor,
        ae: ApplicationEntity,
        address: tuple[str, int],
        ae_title: str,
        contexts: list[PresentationContext],
        ssl_context: ssl.SSLContext | None,
        evt_handlers: list[Any],
    ) -> None:
        self.door = door
        self._conns: dict[int, Connection] = {}
        self._conns_lock = threading.Lock()
        super().__init__(
            ae,
            address,
            ae_title,
            contexts,
            ssl_context,
            evt_handlers=evt_handlers,
            request_handler=GuardedRequestHandler,
        )

    def server_bind(self) -> None:
        if self.door.transport.reuse_port:
            cast(socket.socket, self.socket).setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def service_actions(self) -> None:
        """Nothing: pynetdicom's runs a full ``gc.collect()`` every 60 turns of the accept
        loop, which holds the interpreter for ~100 ms once the item cache is warm (a third of
        the CPU of a busy listener, and its slowest answers). The interpreter's own
        generational collector frees finished associations."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        raw, address = cast(socket.socket, self.socket).accept()
        _configure(raw, self.door.transport.idle_timeout)
        if self.ssl_context is None:
            return raw, address
        # The handshake runs in the connection's thread, under ARTIM: never in the accept loop.
        wrapped = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Past the connection cap the socket is closed at once, without a thread."""
        conn = self.door.open(cast(socket.socket, request), client_address)
        if conn is None:
            LOG.warning("DICOM connection from %s closed: too many connections", client_address[0])
            return False
        with self._conns_lock:
            self._conns[id(request)] = conn
        return True

    def connection_of(self, request: Any) -> Connection | None:
        with self._conns_lock:
            return self._conns.get(id(request))

    def shutdown_request(self, request: Any) -> None:
        """pynetdicom closes a connection here too (ARTIM, end of association)."""
        conn = self.connection_of(request)
        if conn is not None:
            self.door.close(conn)
        super().shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                conn = self._conns.pop(id(request), None)
            if conn is not None:
                self.door.close(conn)
