"""The broker's Storage SCP in-process on a free port, and a pynetdicom C-STORE client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory
from dicom_scp.server import DicomServer
from tests.support.settings import make_settings


class StorageScp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings.database_url)
        self.factory: SessionFactory = create_session_factory(self.engine)
        self.server = DicomServer(
            settings.dicom, settings.worklist, self.factory, storage=settings.storage
        )
        self.port = self.server.start()

    @property
    def root(self) -> Path:
        return self.settings.storage.dir

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else []

    def stop(self) -> None:
        self.server.stop()
        self.engine.dispose()


def start_storage_scp(url: str, tmp_path: Path, **overrides: Any) -> StorageScp:
    return StorageScp(make_settings(url, tmp_path, **overrides))


def c_store(port: int, *paths: Path, called: str = "MWLBROKER") -> list[int]:
    """Send each file on one association, in its own transfer syntax; the statuses."""
    datasets = [dcmread(p) for p in paths]
    ae = AE(ae_title="STORESCU")
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
