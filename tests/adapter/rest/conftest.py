"""The REST app over the ``settings`` database (SQLite and PostgreSQL), through TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory
from app.main import create_app


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    engine = create_db_engine(settings.database_url)
    listeners = {"dicom": lambda: {"up": True, "port": 11112}}
    app = create_app(settings, engine, create_session_factory(engine), listeners)
    with TestClient(app) as test_client:
        yield test_client
    engine.dispose()
