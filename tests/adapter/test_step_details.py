"""A step's details and the audit trail across interfaces: HL7 order in, REST edit, MPPS from a
modality, REST cancel; each change recorded with who, before and after, and shown together."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.mpps import StartPerformedStep
from app.domain.status import AuditSource
from app.main import create_app
from app.services import mpps, stations
from hl7_ingest.handler import Hl7Handler
from tests.support.auth import bearer, create_api_token
from tests.support.mpps import as_json, n_create, ssas_item

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
MPPS_UID = "1.2.9.77"


def test_details_show_every_interface(settings: Settings, session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        for modality in ("CT", "CR"):  # the message orders a CT and a CR
            stations.create_station(
                session,
                data=stations.StationData(modality, f"{modality}01"),
                actor=Actor(AuditSource.CLI),
            )
    ack = Hl7Handler(settings, session_factory).handle((DATA / "orm_o01_nw.hl7").read_bytes())
    assert b"MSA|AA|MSG00001" in ack

    engine = create_db_engine(settings.database_url)
    app = create_app(settings, engine, create_session_factory(engine))
    token = create_api_token(settings.database_url, role="scheduler", name="desk")
    with TestClient(app, headers=bearer(token)) as client:
        (order,) = client.get("/api/orders", params={"accession_number": "ACC0001"}).json()
        step = order["procedures"][0]["steps"][0]
        assert step["station_ae_titles"] == ["CT01"]
        moved = client.patch(f"/api/steps/{step['id']}", json={"start_time": "1015"})
        assert moved.status_code == 200, moved.text

        procedure = order["procedures"][0]
        ssas = ssas_item(
            procedure["study_instance_uid"],
            "ACC0001",
            procedure["requested_procedure_id"],
            step["sps_id"],
        )
        with session_scope(session_factory) as session:
            mpps.create(
                session,
                command=StartPerformedStep.from_json(MPPS_UID, as_json(n_create(ssas))),
                delivery=mpps.Delivery(),
                actor=Actor(AuditSource.DICOM, "CT01", context=MPPS_UID),
            )

        details = client.get(f"/api/steps/{step['id']}/details")
        assert details.status_code == 200, details.text
        body = details.json()
        assert body["step"]["status"] == "STARTED"
        assert body["order"]["accession_number"] == "ACC0001"
        assert body["order"]["patient"]["patient_id"] == "PAT001"
        assert [m["sop_instance_uid"] for m in body["mpps"]] == [MPPS_UID]
        assert [(m["control_id"], m["outcome"]) for m in body["hl7_messages"]] == [
            ("MSG00001", "AA")
        ]
        history = body["history"]
        created = next(e for e in history if e["entity"] == "scheduled_procedure_step")
        assert (created["source"], created["actor"], created["context"]) == (
            "HL7",
            "RIS",
            "MSG00001",
        )
        assert created["after"]["status"] == "SCHEDULED"
        edit = next(e for e in history if e["action"] == "update" and e["source"] == "REST")
        assert edit["before"]["start_datetime"].endswith("0930" + "00")
        assert edit["after"]["start_datetime"].endswith("101500")
        assert edit["actor"] == "token:desk"
        started = next(e for e in history if e["action"] == "status")
        assert (started["source"], started["actor"], started["context"]) == (
            "DICOM",
            "CT01",
            MPPS_UID,
        )
        assert (started["before"], started["after"]) == (
            {"status": "SCHEDULED"},
            {"status": "STARTED"},
        )
        assert any(e["entity"] == "mpps" and e["action"] == "create" for e in history)
        assert [e["id"] for e in history] == sorted(e["id"] for e in history)

        canceled = client.post(f"/api/orders/{order['id']}/cancel", json={"reason": "no show"})
        assert canceled.status_code == 200, canceled.text
        trail = client.get("/api/audit", params={"entity": "order", "entity_pk": order["id"]})
        assert trail.status_code == 200
        assert trail.json()[0]["action"] == "cancel"
        assert trail.json()[0]["detail"]["reason"] == "no show"

        by_modality = client.get("/api/audit", params={"source": "DICOM", "actor": "CT01"})
        assert {e["context"] for e in by_modality.json()} == {MPPS_UID}
        assert client.get("/api/audit", params={"entity_pk": 2**40}).status_code == 422
        assert client.get("/api/steps/999999/details").status_code == 404
    engine.dispose()
