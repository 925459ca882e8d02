"""Credentials for REST tests: API tokens made through the service, as ``mwl-broker token add``."""

from __future__ import annotations

from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.services import users


def create_api_token(database_url: str, *, role: str = "admin", name: str = "tests") -> str:
    """A new API token of ``role``; returns its secret."""
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
