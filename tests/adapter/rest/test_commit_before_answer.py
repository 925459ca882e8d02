"""A write is answered only after its transaction committed: a commit that fails is never
answered 2xx (the client would believe a change that is not there)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.config import Settings
from app.models import AuditEvent
from tests.support.auth import bearer, create_api_token


class CommitFailed(Exception):
    pass


def _is_station_audit(row: object) -> bool:
    return isinstance(row, AuditEvent) and row.entity == "station"


def test_a_failing_commit_is_not_answered_success(app: FastAPI, settings: Settings) -> None:
    token = create_api_token(settings.database_url, role="admin", name="tests-commit")
    factory = app.state.session_factory
    failing = {"on": False}

    def fail(session: Any) -> None:
        # Only the transaction that writes the station fails (sign-in commits its own).
        if failing["on"] and any(_is_station_audit(row) for row in session.new):
            raise CommitFailed("the database refused the commit")

    event.listen(factory, "before_commit", fail)
    station = {"modality": "CT", "ae_title": "CT01"}
    with TestClient(app, headers=bearer(token), raise_server_exceptions=False) as client:
        failing["on"] = True
        refused = client.post("/api/stations", json=station)
        failing["on"] = False
        assert refused.status_code == 500, refused.text
        assert client.get("/api/stations").json() == []  # nothing half-done either

        created = client.post("/api/stations", json=station)
        assert created.status_code == 201
        # Read right after the write: the answer came after the commit, so it is there.
        assert [s["ae_title"] for s in client.get("/api/stations").json()] == ["CT01"]
