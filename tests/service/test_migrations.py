"""The Alembic migrations build exactly the tables the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers the tables)
from app.db import create_db_engine
from app.migrations import pending_revision, upgrade


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == [], f"models and migrations differ; add a migration: {diff}"
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_at_head(database_url: str) -> None:
    upgrade(database_url)
    engine = create_db_engine(database_url)
    try:
        assert pending_revision(engine, database_url) is None
        indexes = {i["name"] for i in inspect(engine).get_indexes("scheduled_procedure_step")}
        assert {"ix_sps_start", "ix_sps_modality_start", "ix_sps_status_start"} <= indexes
    finally:
        engine.dispose()


def test_an_empty_database_is_behind(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    engine = create_db_engine(url)
    try:
        assert pending_revision(engine, url) is not None
    finally:
        engine.dispose()
