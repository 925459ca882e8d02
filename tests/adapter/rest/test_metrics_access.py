"""Who may read GET /metrics: a viewer by default, anyone only with BROKER_METRICS_PUBLIC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.db import create_db_engine, create_session_factory
from app.main import create_app
from tests.support.auth import bearer, create_api_token
from tests.support.metrics import parse
from tests.support.settings import make_settings


@pytest.fixture
def open_metrics(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(database_url, tmp_path, metrics_public=True)
    engine = create_db_engine(database_url)
    with TestClient(create_app(settings, engine, create_session_factory(engine))) as client:
        yield client
    engine.dispose()


def test_metrics_are_closed_to_anonymous_and_open_to_a_viewer(
    anonymous: TestClient, database_url: str
) -> None:
    assert anonymous.get("/metrics").status_code == 401
    viewer = create_api_token(database_url, role="viewer", name="prometheus")
    answer = anonymous.get("/metrics", headers=bearer(viewer))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert parse(answer.text)  # valid exposition text


def test_a_public_setting_opens_them(open_metrics: TestClient) -> None:
    answer = open_metrics.get("/metrics")
    assert answer.status_code == 200
    assert "mwl_outbox_pending" in answer.text


def test_metrics_are_not_part_of_the_rest_api(anonymous: TestClient) -> None:
    assert "/metrics" not in anonymous.get("/openapi.json").json()["paths"]
