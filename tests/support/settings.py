"""Settings for in-process servers: free ports (0), loopback, a storage folder under tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "bind_host": "127.0.0.1",
        "dicom_port": 0,
        "hl7_port": 0,
        "http_port": 0,
        "storage_dir": tmp_path / "storage",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
