"""The file store: received instances as DICOM Part 10 files under ``BROKER_STORAGE_DIR``.

A file appears whole or not at all: it is written to a temporary name in its own folder,
flushed to the disk (``fsync``), renamed over the final name (atomic on POSIX within one file
system) and the folder is synced so the rename survives a crash. Any error on the way removes
the temporary file and raises :class:`FileStoreError`, so a full disk leaves nothing behind.

Layout: ``<Study Instance UID>/<Series Instance UID>/<SOP Instance UID>.dcm``. UIDs are digits
and dots (PS3.5 9.1); anything else is replaced, so a peer's value never leaves the folder.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^0-9A-Za-z.\-]")
SUFFIX = ".dcm"


class FileStoreError(Exception):
    """The file could not be written (disk full, permission, I/O error)."""


def safe_component(uid: str) -> str:
    """A UID as one path component: unsafe characters become ``_``; never ``.`` or ``..``."""
    cleaned = _UNSAFE.sub("_", uid.strip()) or "_"
    return "_" + cleaned if cleaned.strip(".") == "" else cleaned


def instance_path(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """The relative path (POSIX separators, as kept in ``StoredInstance.path``)."""
    parts = (safe_component(study_uid), safe_component(series_uid), safe_component(sop_uid))
    return str(PurePosixPath(*parts[:2], parts[2] + SUFFIX))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclass(frozen=True)
class FileStore:
    root: Path

    def absolute(self, relative: str) -> Path:
        return self.root / PurePosixPath(relative)

    def write(self, relative: str, data: bytes) -> int:
        """Write ``data`` atomically at ``relative``, replacing a file there; its size."""
        target = self.absolute(relative)
        tmp_name = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=target.parent)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, target)
            tmp_name = ""
            _fsync_dir(target.parent)
        except OSError as exc:
            raise FileStoreError(f"cannot write {relative}: {exc.strerror or exc}") from exc
        finally:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)
        return len(data)

    def remove(self, relative: str) -> None:
        """Remove the file and the folders it leaves empty (up to the root)."""
        target = self.absolute(relative)
        target.unlink(missing_ok=True)
        folder = target.parent
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
