"""The DICOM listener in-process on a free port, over its own engine, with items to find."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.services import worklist
from app.tls import client_context, server_context
from dicom_scp.server import DicomServer
from tests.support.items import mwl_item
from tests.support.settings import make_settings


class Scp:
    def __init__(self, settings: Settings) -> None:
        self.engine = create_db_engine(settings.database_url)
        self.factory: SessionFactory = create_session_factory(self.engine)
        tls = server_context(settings.tls) if settings.dicom.tls_port is not None else None
        self.server = DicomServer(
            settings.dicom,
            settings.worklist,
            self.factory,
            storage_dir=settings.storage.dir,
            ssl_context=tls,
            # C-MOVE to TLS remote AEs: only when the test gives the broker a certificate
            client_ssl_context=client_context(settings.tls)
            if settings.tls.has_certificate
            else None,
        )
        self.port = self.server.start()
        self.tls_port = self.server.tls_port
        self.settings = settings

    def add(self, **kwargs: Any) -> None:
        with session_scope(self.factory) as s:
            worklist.upsert_item(
                s, data=item_from_json(mwl_item(**kwargs)), actor=Actor(AuditSource.CLI)
            )

    def stop(self) -> None:
        self.server.stop()
        self.engine.dispose()


def start_scp(url: str, tmp_path: Path, **overrides: Any) -> Scp:
    return Scp(make_settings(url, tmp_path, **overrides))
