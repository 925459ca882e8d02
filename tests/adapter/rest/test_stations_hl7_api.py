"""REST: the station table and the HL7 message log."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory, session_scope
from app.services import hl7_log


def test_station_crud(client: TestClient) -> None:
    created = client.post("/api/stations", json={"modality": "CT", "ae_title": "CT01"})
    assert created.status_code == 201
    pk = created.json()["id"]
    assert (
        client.post("/api/stations", json={"modality": "CT", "ae_title": "CT02"}).status_code == 409
    )  # one default per modality
    replaced = client.put(
        f"/api/stations/{pk}", json={"modality": "CT", "ae_title": "CT09", "location": "ER"}
    )
    assert replaced.status_code == 200 and replaced.json()["ae_title"] == "CT09"
    assert [s["location"] for s in client.get("/api/stations").json()] == ["ER"]
    assert client.delete(f"/api/stations/{pk}").status_code == 204
    assert client.get(f"/api/stations/{pk}").status_code == 404


def test_station_validation(client: TestClient) -> None:
    too_long = client.post("/api/stations", json={"modality": "CT", "ae_title": "A" * 17})
    assert too_long.status_code == 422
    bad = client.post("/api/stations", json={"modality": "CT", "ae_title": "A\\B"})
    assert bad.status_code == 422
    assert bad.json()["detail"]


def test_message_log_search(client: TestClient, settings: Settings) -> None:
    engine = create_db_engine(settings.database_url)
    with session_scope(create_session_factory(engine)) as session:
        for control_id, outcome in (("C1", "AA"), ("C2", "AE"), ("C3", "AR")):
            hl7_log.record(
                session,
                message=hl7_log.MessageRecord(
                    "RIS", "HOSP", control_id, "ORM^O01", outcome, f"MSH|raw {control_id}", "MSA"
                ),
            )
    engine.dispose()
    listed = client.get("/api/hl7/messages").json()
    assert [m["control_id"] for m in listed] == ["C3", "C2", "C1"]  # newest first
    errors = client.get("/api/hl7/messages", params={"outcome": "AE"}).json()
    assert [m["control_id"] for m in errors] == ["C2"]
    one = client.get(f"/api/hl7/messages/{errors[0]['id']}").json()
    assert one["raw"] == "MSH|raw C2" and one["ack"] == "MSA"
    assert client.get("/api/hl7/messages", params={"outcome": "XX"}).status_code == 422
    assert client.get("/api/hl7/messages/999999").status_code == 404
