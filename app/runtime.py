"""Composition root: builds the engine, the DICOM listener and the HTTP server in one process.

This is the one place in ``app/`` that imports adapters: ``app.cli`` reaches the adapters'
commands (``import_worklist_files``, ``conformance_statement``) through it. Every listener can
start on port 0 (a free port) and stop cleanly, so tests run the real servers in-process.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine

import web
from app.config import Settings
from app.db import (
    PoolLimits,
    SessionFactory,
    create_db_engine,
    create_session_factory,
    session_scope,
)
from app.delivery import OutboxWorker
from app.domain.actor import SYSTEM
from app.events import (
    ChangeEvent,
    EventBus,
    PgEventRelay,
    install_after_commit,
    install_pg_notify,
)
from app.filestore import FileStore
from app.main import create_app
from app.services import hl7_log, outbox, remote_aes, retention
from app.services.mpps import Delivery
from app.services.remote_aes import RemoteService
from app.tls import client_context, server_context
from app.workers import DicomWorkers
from dicom_scp.conformance import render as render_conformance
from dicom_scp.outbound import dicom_sender
from dicom_scp.server import DicomServer
from dicom_scp.wlimport import ImportProgress, ImportReport, import_into_database
from hl7_ingest.handler import Hl7Handler
from hl7_ingest.outbound import hl7_sender
from hl7_ingest.server import MllpServer

LOG = logging.getLogger(__name__)
SERVICES = ("dicom", "hl7", "http")
PURGE_INTERVAL = 3600.0  # seconds between retention runs (HL7 message log, stored studies)
GRACEFUL_SHUTDOWN = 2  # seconds the HTTP server waits for open requests (event streams) on stop


def import_worklist_files(
    settings: Settings, paths: Sequence[Path], progress: ImportProgress | None = None
) -> ImportReport:
    """``mwl-broker import-wl``: DCMTK/Orthanc worklist files into the configured database."""
    return import_into_database(settings.database_url, paths, progress)


def conformance_statement(settings: Settings) -> str:
    """``mwl-broker conformance``: the DICOM adapter's conformance statement, as Markdown."""
    return render_conformance(settings)


def _bind(host: str, port: int) -> socket.socket:
    """The HTTP listening socket. Created with ``IPPROTO_TCP`` (not 0): asyncio sets
    ``TCP_NODELAY`` only on accepted sockets whose protocol says TCP, and a keep-alive
    request otherwise waits on the client's delayed ACK (~40 ms)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


@dataclass
class Broker:
    """All front-ends of one process; ``only`` restricts it to one of ``SERVICES``."""

    settings: Settings
    only: str | None = None
    # A DICOM worker of another broker (``app.workers``): it leaves the once-per-site jobs
    # (remote AE seeding, storage retention, resuming commitments) to that broker.
    worker: bool = False
    engine: Engine = field(init=False)
    session_factory: SessionFactory = field(init=False)
    events: EventBus = field(default_factory=EventBus, init=False)
    _relay: PgEventRelay | None = field(default=None, init=False)
    ports: dict[str, int] = field(default_factory=dict, init=False)
    _tls: ssl.SSLContext | None = field(default=None, init=False)
    _dicom: DicomServer | None = field(default=None, init=False)
    _hl7: MllpServer | None = field(default=None, init=False)
    _outbox: OutboxWorker | None = field(default=None, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _http: uvicorn.Server | None = field(default=None, init=False)
    _http_thread: threading.Thread | None = field(default=None, init=False)
    _workers: DicomWorkers | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.engine = create_db_engine(
            self.settings.database_url,
            PoolLimits.for_front_ends(
                self.settings.dicom.max_associations,
                dicom=self._wanted("dicom"),
                hl7=self._wanted("hl7"),
            ),
        )
        self.session_factory = create_session_factory(self.engine)
        # The one after-commit hook: open pages hear of every committed change, and the
        # delivery worker wakes when a change queued a message, whichever interface made it.
        # On PostgreSQL the pages' events travel through NOTIFY, so that the pages served by
        # one broker hear of the changes made through every broker on the database.
        if self.settings.is_sqlite:
            install_after_commit(self.session_factory, self.events.publish, self._after_commit)
        else:
            install_after_commit(self.session_factory, self._after_commit)
            install_pg_notify(self.session_factory)
            self._relay = PgEventRelay(self.settings.database_url, self.events)

    def _wanted(self, name: str) -> bool:
        return self.only is None or self.only == name

    def _listeners(self) -> dict[str, Any]:
        probes: dict[str, Any] = {}
        if self._wanted("dicom"):
            probes["dicom"] = lambda: {
                "up": self._dicom is not None and self._dicom.running,
                "port": self.ports.get("dicom"),
                "tls_port": self.ports.get("dicom_tls"),
                "ae_title": self.settings.dicom.ae_title,
            }
        if self._wanted("hl7"):
            probes["hl7"] = lambda: {
                "up": self._hl7 is not None and self._hl7.running,
                "port": self.ports.get("hl7"),
                "tls_port": self.ports.get("hl7_tls"),
            }
        if self._wanted("http"):
            probes["http"] = lambda: {"up": True, "port": self.ports.get("http")}
        return probes

    def _server_tls(self) -> ssl.SSLContext | None:
        """The context of the TLS listeners this process runs (None: none of them is on).

        Built once, before anything listens: a certificate that cannot be used is a
        :class:`~app.config.SettingsError` at start-up."""
        wanted = [
            name
            for name, port in (
                ("dicom", self.settings.dicom.tls_port),
                ("hl7", self.settings.hl7.tls_port),
            )
            if port is not None and self._wanted(name)
        ]
        if wanted and self._tls is None:
            self._tls = server_context(self.settings.tls)
        return self._tls

    def _remote_tls(self, client: ssl.SSLContext) -> Callable[[str], ssl.SSLContext | None]:
        """MPPS forwarding over TLS for the AEs whose ``remote_ae`` row says ``tls``."""

        def tls_for(ae_title: str) -> ssl.SSLContext | None:
            with session_scope(self.session_factory) as session:
                known = remote_aes.lookup(session, ae_title, RemoteService.MPPS)
            return client if known is not None and known.tls else None

        return tls_for

    def start_outbox(self) -> None:
        """The delivery worker: status messages to the RIS, MPPS to downstream SCPs, storage
        commitment reports to their requesters."""
        client = client_context(self.settings.tls)
        ris_tls = client if self.settings.outbox.ris_hl7_tls else None
        self._outbox = OutboxWorker(
            self.session_factory,
            {
                "hl7": hl7_sender(
                    self.settings.hl7, self.settings.outbox.ris_hl7_message, ssl_context=ris_tls
                ),
                "dicom": dicom_sender(
                    self.settings.dicom, self.session_factory, self._remote_tls(client), client
                ),
            },
            retry_min=self.settings.outbox.retry_min,
            retry_max=self.settings.outbox.retry_max,
        )
        self._outbox.start()

    def _after_commit(self, events: Sequence[ChangeEvent]) -> None:
        if self._outbox is not None and any(e.entity == outbox.ENTITY for e in events):
            self._outbox.wake()

    def start_dicom(self) -> None:
        self._dicom = DicomServer(
            self.settings.dicom,
            self.settings.worklist,
            self.session_factory,
            Delivery.from_settings(self.settings.outbox),
            self.settings.storage.dir,
            storage=self.settings.storage,
            ssl_context=self._server_tls() if self.settings.dicom.tls_port is not None else None,
            client_ssl_context=client_context(self.settings.tls),
            resume_commitments=not self.worker,
        )
        self.ports["dicom"] = self._dicom.start()
        if self._dicom.tls_port is not None:
            self.ports["dicom_tls"] = self._dicom.tls_port
        if self.worker:
            return
        self.start_dicom_workers()
        if self.settings.storage.retention_days > 0:
            threading.Thread(
                target=self._storage_retention_loop, name="storage-retention", daemon=True
            ).start()

    def start_dicom_workers(self) -> None:
        """``BROKER_DICOM_WORKERS - 1`` more processes on the ports just bound."""
        dicom = self.settings.dicom
        if dicom.workers < 2:
            return
        bound = dicom.model_copy(
            update={"port": self.ports["dicom"], "tls_port": self.ports.get("dicom_tls")}
        )
        settings = self.settings.model_copy(update={"dicom": bound})
        self._workers = DicomWorkers(settings, dicom.workers - 1)
        self._workers.start()

    @property
    def dicom_worker_pids(self) -> list[int]:
        return self._workers.pids() if self._workers is not None else []

    def purge_studies(self) -> list[str]:
        """One retention run over the stored studies (``BROKER_STORAGE_RETENTION_DAYS``)."""
        storage = self.settings.storage
        return retention.purge_studies(
            self.session_factory,
            files=FileStore(storage.dir),
            retention_days=storage.retention_days,
            requires_commitment=storage.retention_requires_commitment,
        )

    def _storage_retention_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                gone = self.purge_studies()
                if gone:
                    LOG.info("storage retention: %d studies removed", len(gone))
            except Exception:
                LOG.exception("storage retention run failed")
            self._stopping.wait(PURGE_INTERVAL)

    def seed_remote_aes(self) -> None:
        """Upsert ``BROKER_REMOTE_AES`` into the remote AE table (idempotent)."""
        seeds = self.settings.dicom.remote_aes
        if not seeds:
            return
        entries = [remote_aes.RemoteAeData(**seed.model_dump()) for seed in seeds]
        with session_scope(self.session_factory) as session:
            changed = remote_aes.seed(session, entries, actor=SYSTEM)
        LOG.info("remote AEs from the settings: %d of %d added or changed", changed, len(seeds))

    def start_hl7(self) -> None:
        hl7 = self.settings.hl7
        handler = Hl7Handler(hl7, self.session_factory)
        self._hl7 = MllpServer(
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
            ssl_context=self._server_tls() if hl7.tls_port is not None else None,
        )
        self.ports["hl7"] = self._hl7.start()
        if self._hl7.tls_port is not None:
            self.ports["hl7_tls"] = self._hl7.tls_port
        threading.Thread(target=self._purge_loop, name="hl7-retention", daemon=True).start()

    def _purge_loop(self) -> None:
        """Keep the HL7 message log within its retention, now and then every hour."""
        while not self._stopping.is_set():
            try:
                with session_scope(self.session_factory) as session:
                    gone = hl7_log.purge(
                        session, retention_days=self.settings.hl7.message_retention_days
                    )
                if gone:
                    LOG.info("HL7 message log: %d messages past retention removed", gone)
            except Exception:
                LOG.exception("HL7 message log retention run failed")
            self._stopping.wait(PURGE_INTERVAL)

    def http_server(self) -> tuple[uvicorn.Server, socket.socket]:
        app = create_app(
            self.settings, self.engine, self.session_factory, self._listeners(), self.events
        )
        web.install(app)
        sock = _bind(self.settings.http.bind_host, self.settings.http.port)
        self.ports["http"] = int(sock.getsockname()[1])
        # Open pages hold event streams; stopping waits this long for them, then closes them.
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
        return uvicorn.Server(config), sock

    def start(self) -> dict[str, int]:
        """Start every wanted listener in background threads; return the bound ports.

        Raises :class:`~app.config.SettingsError` before anything starts when a TLS
        certificate, key or CA cannot be used."""
        self._server_tls()
        client_context(self.settings.tls)
        if self._relay is not None and self._wanted("http"):
            self._relay.start()
        if not self.worker:
            self.seed_remote_aes()
        self.start_outbox()
        if self._wanted("dicom"):
            self.start_dicom()
        if self._wanted("hl7"):
            self.start_hl7()
        if self._wanted("http"):
            server, sock = self.http_server()
            self._http = server
            self._http_thread = threading.Thread(
                target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True
            )
            self._http_thread.start()
        LOG.info("broker started: %s", ", ".join(f"{k}={v}" for k, v in self.ports.items()))
        return dict(self.ports)

    def stop(self) -> None:
        self._stopping.set()
        if self._workers is not None:
            self._workers.stop()
            self._workers = None
        if self._hl7 is not None:
            self._hl7.stop()
            self._hl7 = None
        if self._http is not None:
            self._http.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=10)
            self._http = None
        if self._dicom is not None:
            self._dicom.stop()
            self._dicom = None
        if self._outbox is not None:
            self._outbox.stop()
            self._outbox = None
        if self._relay is not None:
            self._relay.stop()
        self.engine.dispose()
