"""Connection settings that durability and concurrency rely on; PostgreSQL's dead connections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from app import db
from app.db import HL7_WORKERS, OTHER_HEADROOM, PoolLimits, create_db_engine
from tests.support.db import PG_ADMIN_URL, create_pg_database


def test_sqlite_is_wal_durable_with_foreign_keys(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_the_pool_has_room_for_every_association_and_the_rest(tmp_path: Path) -> None:
    """DICOM cannot take the connections HL7 intake and HTTP need (issue 9): the pool holds
    every association at once plus the others, and a starved session fails within seconds."""
    limits = PoolLimits.for_front_ends(max_associations=20)
    assert limits.size >= 20 + HL7_WORKERS + OTHER_HEADROOM
    assert limits.timeout <= 5.0
    only_hl7 = PoolLimits.for_front_ends(max_associations=20, dicom=False)
    assert only_hl7.size == HL7_WORKERS + OTHER_HEADROOM
    engine = create_db_engine(f"sqlite:///{tmp_path / 'pool.db'}", limits)
    try:
        assert engine.pool.size() == limits.size  # type: ignore[attr-defined]
        assert engine.pool.timeout() == limits.timeout  # type: ignore[attr-defined]
    finally:
        engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    url, drop = create_pg_database()
    engine = create_db_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        drop()


def _kill_pooled_connection(engine: Engine) -> int:
    """Use one connection, give it back to the pool, and have the server end its backend."""
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    return int(pid)


@pytest.mark.postgres
def test_a_connection_that_died_while_idle_in_the_pool_is_replaced_unseen(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # any idle time is long enough
    dead = _kill_pooled_connection(pg_engine)
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != dead


@pytest.mark.postgres
def test_a_connection_back_from_use_just_now_is_not_pinged(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No round trip before a session in steady use: the dead connection is only found when
    used (SQLAlchemy then empties the pool, so the next session connects afresh)."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)
    _kill_pooled_connection(pg_engine)
    with pytest.raises(OperationalError), pg_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
