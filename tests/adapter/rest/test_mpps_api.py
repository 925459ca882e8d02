"""REST: performed procedure steps and reconciliation."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.mpps import StartPerformedStep
from app.domain.status import AuditSource
from app.services import mpps
from tests.support.items import mwl_item
from tests.support.mpps import as_json, n_create, ssas_item

DICOM_JSON = {"content-type": "application/dicom+json"}


def create_mpps(settings: Settings, uid: str, *items: object) -> None:
    engine = create_db_engine(settings.database_url)
    with session_scope(create_session_factory(engine)) as session:
        command = StartPerformedStep.from_json(uid, as_json(n_create(*items)))  # type: ignore[arg-type]
        mpps.create(
            session,
            command=command,
            delivery=mpps.Delivery(),
            actor=Actor(AuditSource.DICOM, "CT01"),
        )
    engine.dispose()


def test_mpps_read_and_reconcile(client: TestClient, settings: Settings) -> None:
    assert client.post("/api/mwlitems", json=mwl_item(), headers=DICOM_JSON).status_code == 201
    create_mpps(settings, "1.2.9.1")  # names SPS1 of study 1.2.3.4.1
    create_mpps(settings, "1.2.9.2", ssas_item("2.25.77"))  # unscheduled
    one = client.get("/api/mpps/1.2.9.1").json()
    assert one["status"] == "IN PROGRESS"
    assert [s["sps_id"] for s in one["linked_steps"]] == ["SPS1"]
    assert one["attributes"]["00400241"]["Value"] == ["CT01"]
    unlinked = client.get("/api/mpps", params={"unlinked": "true"}).json()
    assert [m["sop_instance_uid"] for m in unlinked] == ["1.2.9.2"]
    linked = client.post(
        "/api/mpps/1.2.9.2/link",
        json={"steps": [{"study_instance_uid": "1.2.3.4.1", "sps_id": "SPS1"}]},
    )
    assert linked.status_code == 200
    assert [s["sps_id"] for s in linked.json()["linked_steps"]] == ["SPS1"]
    assert client.get("/api/mpps", params={"unlinked": "true"}).json() == []
    assert client.get("/api/mpps", params={"status": "COMPLETED"}).json() == []


def test_mpps_errors(client: TestClient) -> None:
    assert client.get("/api/mpps/9.9.9").status_code == 404
    assert client.post("/api/mpps/9.9.9/link", json={"steps": []}).status_code == 422
    missing = client.post(
        "/api/mpps/9.9.9/link", json={"steps": [{"study_instance_uid": "1.2", "sps_id": "S"}]}
    )
    assert missing.status_code == 404
