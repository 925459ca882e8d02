"""The DICOM listener: one pynetdicom AE serving Verification, Modality Worklist FIND, MPPS,
Query/Retrieve (Patient Root and Study Root FIND, MOVE, GET), Storage Commitment Push Model (SCP)
and, when given storage settings, the Storage SCP (C-STORE of every storage SOP class).

Association policy (PS3.8 9.3.4, stated in the conformance statement) and the bounds on every
connection live in ``dicom_scp.admission`` and ``dicom_scp.transport``: every listener is started
through ``FrontDoor.start_listener`` so that they apply to it.

Listeners: the plain port and, when ``BROKER_DICOM_TLS_PORT`` is on, a TLS port (PS3.15 B.9)
serving the same AE, services and policy; both start through :meth:`DicomServer._listen`, and
share one front door (connection cap, association limits, watchdog). The TLS handshake runs in
the connection's own thread, under ARTIM (``dicom_scp.transport``).
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityPerformedProcedureStepRetrieve,
    ModalityWorklistInformationFind,
    StorageCommitmentPushModel,
    Verification,
)

from app import metrics
from app.config import DicomSettings, StorageSettings, WorklistSettings
from app.db import SessionFactory
from app.services.mpps import Delivery
from dicom_scp import reactor
from dicom_scp.admission import AdmissionPolicy
from dicom_scp.commitment import CommitmentContext, handle_n_action, resume
from dicom_scp.handlers import ScpContext, handle_echo, serve_find_event
from dicom_scp.mpps import handle_n_create, handle_n_get, handle_n_set
from dicom_scp.observe import HANDLERS as OBSERVERS
from dicom_scp.observe import timed_find
from dicom_scp.qr import SOP_CLASSES as QR_SOP_CLASSES
from dicom_scp.qr import handle_get, handle_move, install_raw_sending
from dicom_scp.storage import StoreContext, handle_store
from dicom_scp.tcp import HANDLERS as TCP_HANDLERS
from dicom_scp.transport import (
    FrontDoor,
    FrontDoorStats,
    GuardedAssociationServer,
    TransportPolicy,
)

LOG = logging.getLogger(__name__)

# Uncompressed transfer syntaxes: the only sensible ones for query and status messages.
TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian (the default, PS3.5 10.1)
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
)
SOP_CLASSES: tuple[tuple[str, str], ...] = (
    (Verification, "Verification"),
    (ModalityWorklistInformationFind, "Modality Worklist Information Model - FIND"),
    (ModalityPerformedProcedureStep, "Modality Performed Procedure Step"),
    (ModalityPerformedProcedureStepRetrieve, "Modality Performed Procedure Step Retrieve"),
    *QR_SOP_CLASSES,
    (StorageCommitmentPushModel, "Storage Commitment Push Model"),
)
# Role selection (PS3.7 D.3.3.4) for Storage Commitment: a requester may be its SCU (it sends the
# N-ACTION and takes the N-EVENT-REPORT); the broker never takes the SCU role itself.
ROLES: dict[str, tuple[bool, bool]] = {str(StorageCommitmentPushModel): (True, False)}

# Identifiers carry patient data: pynetdicom must not print them (it does at INFO by default).
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


# pynetdicom counts every acceptor thread, associated or not, against this: the front door
# counts established associations itself (BROKER_MAX_ASSOCIATIONS), so this never decides.
UNCOUNTED = 1_000_000


def quiet_pdu_logging() -> None:
    """pynetdicom's "standard" handlers describe every PDU for its debug log (an
    A-ASSOCIATE-AC is dozens of formatted lines) under the AE-wide lock, whether or not debug
    is on: bound only when the ``pynetdicom`` logger shows debug."""
    debug = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
    _config.LOG_HANDLER_LEVEL = "standard" if debug else "none"


def build_ae(settings: DicomSettings) -> AE:
    quiet_pdu_logging()
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = UNCOUNTED
    ae.require_called_aet = settings.require_called_ae
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_pdu_size = settings.max_pdu_size
    for uid, _name in SOP_CLASSES:
        scu_role, scp_role = ROLES.get(str(uid), (None, None))
        ae.add_supported_context(uid, list(TRANSFER_SYNTAXES), scu_role=scu_role, scp_role=scp_role)
    add_get_storage_contexts(ae)
    install_raw_sending()
    return ae


def build_front_door(settings: DicomSettings) -> FrontDoor:
    transport = TransportPolicy(
        artim_timeout=settings.artim_timeout,
        idle_timeout=settings.network_timeout,
        max_association_seconds=settings.max_association_seconds,
        max_connections=settings.max_connections,
        max_pdu_length=settings.max_pdu_size,
        max_associate_rq_length=settings.max_associate_rq_bytes,
        reuse_port=settings.workers > 1,
    )
    admission = AdmissionPolicy(
        ae_title=settings.ae_title,
        require_called_ae=settings.require_called_ae,
        calling_ae_services=settings.calling_ae_services,
        max_associations=settings.max_associations,
        max_associations_per_ae=settings.max_associations_per_ae,
    )
    return FrontDoor(transport, admission)


def add_get_storage_contexts(ae: AE) -> None:
    """Storage contexts a C-GET requestor proposes with the SCP role (PS3.4 C.4.3.1, PS3.7
    D.3.3.4): every storage SOP class and transfer syntax, since stored files go out as they
    are. Both proposed roles are accepted, so a plain Storage SCU is not affected: the same
    contexts serve the Storage SCP (``dicom_scp.storage``), which keeps any syntax as received.

    pynetdicom accepts the first of these syntaxes the requestor offers in a context, so
    Explicit VR Little Endian comes first: it is what most stored files are in, and a file is
    never transcoded to fit a context."""
    preferred = [TRANSFER_SYNTAXES[1], TRANSFER_SYNTAXES[0]]
    syntaxes = preferred + [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in preferred]
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(str(cx.abstract_syntax), syntaxes, scu_role=True, scp_role=True)


@dataclass(frozen=True)
class Listener:
    """One port of the DICOM listener: plain TCP, or TLS when ``ssl_context`` is given."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None


@dataclass
class DicomServer:
    """Start with ``start()`` (port 0 picks a free port), stop with ``stop()``.

    ``ssl_context`` (``app.tls.server_context``) serves ``settings.tls_port`` when that is on."""

    settings: DicomSettings
    worklist: WorklistSettings
    session_factory: SessionFactory
    delivery: Delivery = field(default_factory=Delivery)
    storage_dir: Path | None = None
    storage: StorageSettings | None = None  # None: C-STORE is not answered (no Storage SCP)
    ssl_context: ssl.SSLContext | None = None
    client_ssl_context: ssl.SSLContext | None = None  # C-MOVE to remote AEs marked tls
    resume_commitments: bool = True  # take up the commitments a stopped broker left pending
    _ae: AE | None = field(default=None, init=False)
    _servers: list[GuardedAssociationServer] = field(default_factory=list, init=False)
    _door: FrontDoor | None = field(default=None, init=False)
    _ports: list[int] = field(default_factory=list, init=False)
    context: ScpContext | None = field(default=None, init=False)  # with the listener's caches

    def listeners(self, host: str | None = None, port: int | None = None) -> list[Listener]:
        """The plain listener (``host``/``port`` override the settings) and the TLS one."""
        host = host if host is not None else self.settings.bind_host
        found = [Listener(host, port if port is not None else self.settings.port)]
        if self.settings.tls_port is not None:
            if self.ssl_context is None:
                raise RuntimeError("BROKER_DICOM_TLS_PORT is on, but no TLS context was given")
            found.append(Listener(host, self.settings.tls_port, self.ssl_context))
        return found

    def start(self, host: str | None = None, port: int | None = None) -> int:
        """Start every listener; return the plain port (the TLS one is :attr:`tls_port`)."""
        reactor.install()  # also for the associations this process requests (C-MOVE)
        ctx = ScpContext(
            self.worklist,
            self.session_factory,
            self.delivery,
            self.files_dir,
            self.client_ssl_context,
        )
        self.context = ctx
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, handle_echo, [ctx]),
            (evt.EVT_C_FIND, timed_find(serve_find_event), [ctx]),
            (evt.EVT_N_CREATE, handle_n_create, [ctx]),
            (evt.EVT_N_SET, handle_n_set, [ctx]),
            (evt.EVT_N_GET, handle_n_get, [ctx]),
            *OBSERVERS,
            (evt.EVT_C_MOVE, handle_move, [ctx]),
            (evt.EVT_C_GET, handle_get, [ctx]),
            (evt.EVT_N_ACTION, handle_n_action, [self.commitment_context()]),
            *TCP_HANDLERS,
        ]
        if self.storage is not None:
            store = StoreContext(self.storage, self.session_factory)
            handlers.append((evt.EVT_C_STORE, handle_store, [store]))
        self._ae = build_ae(self.settings)
        self._door = build_front_door(self.settings)
        try:
            for listener in self.listeners(host, port):
                self._ports.append(self._listen(self._ae, listener, handlers))
        except BaseException:
            self.stop()
            raise
        metrics.watch_dicom(self.gauges)
        if self.resume_commitments:
            threading.Thread(
                target=resume, args=(self.commitment_context(),), name="stgcmt-resume", daemon=True
            ).start()
        return self._ports[0]

    def _listen(self, ae: AE, listener: Listener, handlers: list[Any]) -> int:
        """Bind one listener and serve it in a daemon thread, behind the front door."""
        assert self._door is not None
        server = self._door.start_listener(
            ae, (listener.host, listener.port), handlers, ssl_context=listener.ssl_context
        )
        self._servers.append(server)
        kind = "DICOM TLS" if listener.ssl_context is not None else "DICOM"
        bound = int(server.server_address[1])
        LOG.info("%s listening on %s:%d as %s", kind, listener.host, bound, ae.ae_title)
        return bound

    @property
    def files_dir(self) -> Path:
        """Where stored instances are: ``storage_dir``, else the Storage SCP's folder."""
        if self.storage_dir is not None:
            return self.storage_dir
        return (self.storage or StorageSettings()).dir

    def commitment_context(self) -> CommitmentContext:
        return CommitmentContext(
            self.session_factory,
            self.files_dir,
            self.settings.ae_title,
            self.settings.stgcmt_report_delay,
        )

    @property
    def tls_port(self) -> int | None:
        """The bound TLS port, while it listens."""
        return self._ports[1] if len(self._ports) > 1 else None

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def stats(self) -> FrontDoorStats:
        """Connections, associations, refusals and watchdog closes (thread-safe)."""
        if self._door is None:
            raise RuntimeError("the DICOM listener is not running")
        return self._door.stats()

    def gauges(self) -> dict[str, int]:
        """The metrics' gauges, from the front door's counters: ``associations_open``,
        ``connections_unassociated``."""
        if self._door is None:
            return {"associations_open": 0, "connections_unassociated": 0}
        now = self._door.stats()
        return {
            "associations_open": now.associations_established,
            "connections_unassociated": now.connections_not_associated,
        }

    def stop(self) -> None:
        metrics.unwatch_dicom(self.gauges)
        for server in self._servers:
            server.shutdown()
        self._servers.clear()
        self._ports.clear()
        if self._door is not None:
            self._door.stop()  # wakes readers and senders blocked on a socket
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
