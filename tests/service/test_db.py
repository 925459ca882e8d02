"""SQLite connection settings that durability and concurrency rely on."""

from __future__ import annotations

from sqlalchemy import text

from app.db import create_db_engine


def test_sqlite_is_wal_durable_with_foreign_keys(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
