"""Shared fixtures: databases (SQLite and PostgreSQL), settings and session factories.

Helpers without fixture magic (settings, items, ports, polling) live in ``tests/support``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory
from app.migrations import upgrade
from tests.support.certs import Certificates, make_certificates
from tests.support.db import create_pg_database
from tests.support.settings import make_settings


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


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA with server, client and stranger certificates, made once per run, never kept."""
    return make_certificates(tmp_path_factory.mktemp("certs"))
