"""Schema migrations (Alembic), run as their own step: ``mwl-broker db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from app.db import create_db_engine

SCRIPT_LOCATION = Path(__file__).parent / "alembic"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # Alembic's config is interpolated with %-syntax; escape the URL's own percent signs.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("sqlite"):
        create_db_engine(database_url).dispose()  # creates the folder of the SQLite file
    command.upgrade(alembic_config(database_url), revision)


def pending_revision(engine: Engine, database_url: str) -> str | None:
    """The head revision when the database is not at it, else ``None``."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return None if current == head else head
