"""SQLite connection settings that durability and concurrency rely on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.db import HL7_WORKERS, OTHER_HEADROOM, PoolLimits, create_db_engine


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
