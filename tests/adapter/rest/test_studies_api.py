"""REST: ``/api/studies`` (received studies, reconciliation) and images counts in the step and
board views, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import DuplicatePolicy, Settings
from app.db import create_db_engine, create_session_factory
from app.filestore import FileStore
from app.services import storage
from tests.support.auth import bearer, create_api_token
from tests.support.storage import add_order, received

URL = "/api/studies"


def _receive(settings: Settings, sop_uid: str, **kwargs: str) -> None:
    engine = create_db_engine(settings.database_url)
    try:
        storage.receive(
            create_session_factory(engine),
            files=FileStore(settings.storage.dir),
            instance=received(sop_uid, **kwargs),
            duplicate=DuplicatePolicy.KEEP,
        )
    finally:
        engine.dispose()


def _order(settings: Settings, **kwargs: str) -> int:
    engine = create_db_engine(settings.database_url)
    try:
        return add_order(create_session_factory(engine), **kwargs)
    finally:
        engine.dispose()


def test_images_received_on_step_board_and_details(client: TestClient, settings: Settings) -> None:
    step = _order(settings, study_uid="1.2.3.4.1")
    _receive(settings, "9.1")
    _receive(settings, "9.2", series_uid="1.2.3.4.1.2")
    details = client.get(f"/api/steps/{step}/details").json()
    images = details["order"]["procedures"][0]["images"]
    assert (images["studies"], images["series"], images["instances"]) == (1, 2, 2)
    assert [s["study_instance_uid"] for s in details["studies"]] == ["1.2.3.4.1"]
    (row,) = client.get("/api/board", params={"date": "20261201"}).json()
    assert row["images"]["instances"] == 2
    assert client.get(f"/api/steps/{step}").json()["images"]["series"] == 2
    assert details["step"]["images"]["instances"] == 2


def test_unlinked_listed_and_linked_by_hand(anonymous: TestClient, settings: Settings) -> None:
    step = _order(settings, study_uid="1.2.3.4.99", accession="ACC9")
    _receive(settings, "9.1", study_uid="5.5.5", series_uid="5.5.5.1", accession="NONE")
    viewer = bearer(create_api_token(settings.database_url, role="viewer", name="screen"))
    scheduler = bearer(create_api_token(settings.database_url, role="scheduler", name="ris"))
    assert anonymous.get(URL, params={"unlinked": True}).status_code == 401
    (waiting,) = anonymous.get(URL, params={"unlinked": True}, headers=viewer).json()
    assert waiting["procedure_pk"] is None and waiting["instances"] == 1
    link = f"{URL}/{waiting['id']}/link"
    assert anonymous.post(link, json={"step_id": step}, headers=viewer).status_code == 403
    assert anonymous.post(link, json={}, headers=scheduler).status_code == 422
    missing = anonymous.post(link, json={"step_id": 2**31 - 1}, headers=scheduler)
    assert missing.status_code == 404
    linked = anonymous.post(link, json={"step_id": step}, headers=scheduler)
    assert linked.status_code == 200, linked.text
    assert anonymous.get(URL, params={"unlinked": True}, headers=viewer).json() == []
    details = anonymous.get(f"/api/steps/{step}/details", headers=viewer).json()
    assert details["order"]["procedures"][0]["images"]["instances"] == 1
    assert "study_linked" in [e["action"] for e in details["history"]]
    events = anonymous.get("/api/audit", params={"entity": "stored_study"}, headers=viewer).json()
    (event,) = [e for e in events if e["action"] == "link"]
    assert event["actor"] == "token:ris" and event["after"] == {
        "procedure_pk": linked.json()["procedure_pk"]
    }
    assert (
        anonymous.get(f"{URL}/{waiting['id']}", headers=viewer).json()["procedure_pk"]
        == (linked.json()["procedure_pk"])
    )
