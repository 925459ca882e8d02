"""The REST app over the ``settings`` database (SQLite and PostgreSQL), through TestClient.

``client`` authenticates as an admin API token made through the service; ``anonymous`` sends no
credentials (sign-in and access tests).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory
from app.main import create_app
from tests.support.auth import bearer, create_api_token


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    engine = create_db_engine(settings.database_url)
    listeners = {"dicom": lambda: {"up": True, "port": 11112}}
    yield create_app(settings, engine, create_session_factory(engine), listeners)
    engine.dispose()


@pytest.fixture
def client(app: FastAPI, settings: Settings) -> Iterator[TestClient]:
    token = create_api_token(settings.database_url, role="admin", name="tests-admin")
    with TestClient(app, headers=bearer(token)) as test_client:
        yield test_client


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client
