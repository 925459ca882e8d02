"""Shared fixtures: databases (SQLite and PostgreSQL), settings, item builders, ports, polling."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory
from app.migrations import upgrade

PG_ADMIN_URL = os.environ.get(
    "MWL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def postgres_or_skip() -> None:
    """PostgreSQL must answer; in CI its absence fails the run instead of skipping."""
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh database on the test server; returns its URL and a function that drops it."""
    postgres_or_skip()
    name = f"mwl_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'broker.db'}"
        upgrade(url)
        yield url
        return
    url, drop = create_pg_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    upgrade(url)
    return url


@pytest.fixture
def session_factory(database_url: str) -> Iterator[SessionFactory]:
    engine = create_db_engine(database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll until ``predicate`` holds; never sleep a fixed time and hope."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def mwl_item(
    *,
    patient_id: str = "P1",
    name: str | dict[str, str] = "DOE^JANE",
    accession: str = "A1",
    study_uid: str | None = "1.2.3.4.1",
    sps_id: str = "SPS1",
    station: str | list[str] = "CT01",
    date: str = "20261201",
    time_: str = "083000",
    modality: str = "CT",
    status: str | None = None,
    birth_date: str = "19800101",
    sex: str = "F",
    extra: dict[str, Any] | None = None,
    step_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A DICOM JSON worklist item (PS3.18 Annex F) with sensible defaults."""
    pn = name if isinstance(name, dict) else {"Alphabetic": name}
    stations = station if isinstance(station, list) else [station]
    step: dict[str, Any] = {
        "00400001": {"vr": "AE", "Value": stations},
        "00400002": {"vr": "DA", "Value": [date]},
        "00400003": {"vr": "TM", "Value": [time_]},
        "00080060": {"vr": "CS", "Value": [modality]},
        "00400009": {"vr": "SH", "Value": [sps_id]},
        "00400006": {"vr": "PN", "Value": [{"Alphabetic": "HOUSE^GREGORY"}]},
        "00400007": {"vr": "LO", "Value": ["CT HEAD"]},
        **(step_extra or {}),
    }
    if status:
        step["00400020"] = {"vr": "CS", "Value": [status]}
    item: dict[str, Any] = {
        "00100010": {"vr": "PN", "Value": [pn]},
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00100030": {"vr": "DA", "Value": [birth_date]},
        "00100040": {"vr": "CS", "Value": [sex]},
        "00080050": {"vr": "SH", "Value": [accession]},
        "00401001": {"vr": "SH", "Value": ["RP1"]},
        "00321060": {"vr": "LO", "Value": ["CT of the head"]},
        "00400100": {"vr": "SQ", "Value": [step]},
        **(extra or {}),
    }
    if study_uid:
        item["0020000D"] = {"vr": "UI", "Value": [study_uid]}
    return item


def create_api_token(database_url: str, *, role: str = "admin", name: str = "tests") -> str:
    """A new API token made through the service (as ``mwl-broker token add`` does); the secret."""
    from app.db import session_scope
    from app.domain.actor import Actor
    from app.domain.status import AuditSource
    from app.services import users

    engine = create_db_engine(database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            new = users.create_token(
                session, name=name, role=role, actor=Actor(AuditSource.CLI, "tests")
            )
    finally:
        engine.dispose()
    return new.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
