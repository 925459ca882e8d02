"""Test databases: the PostgreSQL test server (skip locally, fail in CI when it is down)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.support.ci import IN_CI

PG_ADMIN_URL = os.environ.get(
    "MWL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


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
    # No pool: a connection kept from CREATE to DROP would be dead after a server restart.
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop
