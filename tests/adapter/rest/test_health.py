"""``/api/health`` is open to anyone: it says whether the database answers, never why."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.db import create_db_engine, create_session_factory
from app.main import create_app
from tests.support.net import free_port
from tests.support.settings import make_settings

SECRET = "s3cret-pw"


def test_a_database_that_is_down_is_reported_without_its_address(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://broker:{SECRET}@127.0.0.1:{free_port()}/wards?connect_timeout=2"
    settings = make_settings(url, tmp_path)
    engine = create_db_engine(url)
    with TestClient(create_app(settings, engine, create_session_factory(engine))) as client:
        answer = client.get("/api/health")
    engine.dispose()
    assert answer.status_code == 503
    assert answer.json()["database"] == {"up": False, "error": "unavailable"}
    for leak in (SECRET, "broker", "wards", "127.0.0.1"):
        assert leak not in answer.text
