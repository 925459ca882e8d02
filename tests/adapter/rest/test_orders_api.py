"""REST: plain JSON orders, requested procedures and steps, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.db import SessionFactory
from app.models import AuditEvent

STUDY_1 = "1.2.826.0.1.3680043.2.1"
STUDY_2 = "1.2.826.0.1.3680043.2.2"


def step_body(
    sps_id: str | None, stations: list[str], date: str, time_: str, modality: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "station_ae_titles": stations,
        "start_date": date,
        "start_time": time_,
        "modality": modality,
        "description": f"{modality} step",
    }
    if sps_id is not None:
        body["sps_id"] = sps_id
    return body


def order_body(
    *, accession: str = "ACC1", patient_id: str = "P1", study_uids: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Two requested procedures with three steps in all."""
    first, second = study_uids or (STUDY_1, STUDY_2)
    return {
        "patient": {
            "patient_id": patient_id,
            "name": "DOE^JANE",
            "birth_date": "19800101",
            "sex": "F",
        },
        "accession_number": accession,
        "referring_physician_name": "HOUSE^GREGORY",
        "procedures": [
            {
                "requested_procedure_id": "RP1",
                "study_instance_uid": first,
                "description": "CT head",
                "priority": "HIGH",
                "steps": [
                    step_body("SPS1", ["CT01"], "20261201", "0830", "CT"),
                    step_body("SPS2", ["CT01", "CT02"], "20261201", "093000", "CT"),
                ],
            },
            {
                "study_instance_uid": second,
                "steps": [step_body("SPS3", ["MR01"], "20261202", "1015", "MR")],
            },
        ],
    }


def create(client: TestClient, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/api/orders", json=order_body(**kwargs))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def steps_of(order: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["sps_id"]: s for p in order["procedures"] for s in p["steps"]}


def sps_ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["00400100"]["Value"][0]["00400009"]["Value"][0] for i in items}


def audit_rows(session_factory: SessionFactory, entity: str, pk: int) -> list[AuditEvent]:
    with session_factory() as session:
        statement = (
            select(AuditEvent)
            .where(AuditEvent.entity == entity, AuditEvent.entity_pk == pk)
            .order_by(col(AuditEvent.id))
        )
        return list(session.exec(statement))


def test_create_order_then_get_shows_procedures_and_steps(client: TestClient) -> None:
    created = create(client)
    assert created["accession_number"] == "ACC1"
    assert created["referring_physician_name"] == "HOUSE^GREGORY"
    assert created["patient"]["patient_id"] == "P1"
    assert created["patient"]["name"] == "DOE^JANE"
    first, second = created["procedures"]
    assert (first["requested_procedure_id"], first["study_instance_uid"]) == ("RP1", STUDY_1)
    assert first["priority"] == "HIGH"
    assert second["requested_procedure_id"].startswith("RP")  # generated
    assert second["study_instance_uid"] == STUDY_2
    steps = steps_of(created)
    assert set(steps) == {"SPS1", "SPS2", "SPS3"}
    assert steps["SPS1"]["start_date"] == "20261201"
    assert steps["SPS1"]["start_time"] == "083000"
    assert steps["SPS2"]["station_ae_titles"] == ["CT01", "CT02"]
    assert steps["SPS3"]["modality"] == "MR"
    assert {s["status"] for s in steps.values()} == {"SCHEDULED"}

    fetched = client.get(f"/api/orders/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created

    # The order is an ordinary worklist item.
    item = client.get(f"/api/mwlitems/{STUDY_1}/SPS2")
    assert item.status_code == 200
    assert item.json()["00080050"]["Value"] == ["ACC1"]
    assert item.json()["00400100"]["Value"][0]["00400001"]["Value"] == ["CT01", "CT02"]


def test_missing_identifiers_are_generated(client: TestClient) -> None:
    body = order_body()
    del body["procedures"][0]["study_instance_uid"]
    del body["procedures"][0]["steps"][0]["sps_id"]
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201, response.text
    procedure = response.json()["procedures"][0]
    assert procedure["study_instance_uid"].startswith("2.25.")
    generated = procedure["steps"][0]["sps_id"]
    assert generated.startswith("SPS")
    assert len(generated) == 16
    assert client.get(f"/api/mwlitems/{procedure['study_instance_uid']}/{generated}").is_success


def test_steps_may_be_created_in_another_status(client: TestClient) -> None:
    body = order_body()
    body["procedures"][1]["steps"][0]["status"] = "ARRIVED"
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201, response.text
    assert steps_of(response.json())["SPS3"]["status"] == "ARRIVED"
    assert steps_of(response.json())["SPS1"]["status"] == "SCHEDULED"
    item = client.get(f"/api/mwlitems/{STUDY_2}/SPS3").json()
    assert item["00400100"]["Value"][0]["00400020"]["Value"] == ["ARRIVED"]


def test_patient_is_found_or_created_by_identity(client: TestClient) -> None:
    first = create(client, accession="ACC1")
    second = create(client, accession="ACC2", study_uids=("1.2.3.1", "1.2.3.2"))
    other = create(client, accession="ACC3", patient_id="P2", study_uids=("1.2.3.3", "1.2.3.4"))
    assert first["patient"]["id"] == second["patient"]["id"]
    assert other["patient"]["id"] != first["patient"]["id"]


def test_list_filters(client: TestClient) -> None:
    first = create(client, accession="ACC1", patient_id="P1")
    second = create(client, accession="ACC2", patient_id="P2", study_uids=("1.2.3.1", "1.2.3.2"))
    started = steps_of(second)["SPS3"]["id"]
    assert client.post(f"/api/steps/{started}/status/STARTED").status_code == 200
    for step in steps_of(second).values():
        if step["id"] != started:
            client.post(f"/api/steps/{step['id']}/status/COMPLETED").raise_for_status()

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/orders", params=params)
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()]

    assert ids() == [first["id"], second["id"]]
    assert ids(accession_number="ACC2") == [second["id"]]
    assert ids(accession_number="NONE") == []
    assert ids(patient_id="P1") == [first["id"]]
    assert ids(status="STARTED") == [second["id"]]
    assert ids(status="SCHEDULED") == [first["id"]]
    assert ids(status="COMPLETED") == [second["id"]]
    assert ids(status="CANCELED") == []
    assert ids(patient_id="P1", status="STARTED") == []
    assert ids(limit=1) == [first["id"]]
    assert ids(limit=1, offset=1) == [second["id"]]
    listed = client.get("/api/orders", params={"accession_number": "ACC2"}).json()[0]
    assert set(steps_of(listed)) == {"SPS1", "SPS2", "SPS3"}  # listed orders are complete

    bad = client.get("/api/orders", params={"status": "FINISHED"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "status"]
    assert client.get("/api/orders", params={"limit": 0}).status_code == 422
    assert client.get("/api/orders", params={"limit": 1001}).status_code == 422


def test_reschedule_step_moves_it_on_the_worklist(
    client: TestClient, session_factory: SessionFactory
) -> None:
    step = steps_of(create(client))["SPS1"]
    response = client.patch(
        f"/api/steps/{step['id']}",
        json={"start_date": "20261215", "start_time": "1400", "station_ae_titles": ["MR02"]},
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert (moved["start_date"], moved["start_time"]) == ("20261215", "140000")
    assert moved["station_ae_titles"] == ["MR02"]
    assert moved["modality"] == "CT"  # not sent: unchanged
    assert moved["description"] == "CT step"
    assert client.get(f"/api/steps/{step['id']}").json() == moved

    new_day = client.get("/api/mwlitems", params={"ScheduledProcedureStepStartDate": "20261215"})
    assert new_day.status_code == 200
    assert sps_ids(new_day.json()) == {"SPS1"}
    item_step = new_day.json()[0]["00400100"]["Value"][0]
    assert item_step["00400003"]["Value"] == ["140000"]
    old_day = client.get("/api/mwlitems", params={"ScheduledProcedureStepStartDate": "20261201"})
    assert sps_ids(old_day.json()) == {"SPS2"}
    station = client.get("/api/mwlitems", params={"ScheduledStationAETitle": "MR02"})
    assert sps_ids(station.json()) == {"SPS1"}
    assert client.get("/api/mwlitems", params={"ScheduledStationAETitle": "CT01"}).json()[0][
        "00400100"
    ]["Value"][0]["00400009"]["Value"] == ["SPS2"]

    updates = [e for e in audit_rows(session_factory, "scheduled_procedure_step", step["id"])]
    assert [e.action for e in updates] == ["create", "update"]
    assert updates[1].source == "REST"
    assert updates[1].detail["fields"] == ["start_datetime", "station_ae_title"]


def test_step_patch_only_time_keeps_the_date(client: TestClient) -> None:
    step = steps_of(create(client))["SPS3"]
    response = client.patch(f"/api/steps/{step['id']}", json={"start_time": "0700"})
    assert response.status_code == 200, response.text
    assert (response.json()["start_date"], response.json()["start_time"]) == (
        "20261202",
        "070000",
    )


def test_step_patch_cannot_change_status_or_empty_fields(client: TestClient) -> None:
    step = steps_of(create(client))["SPS1"]
    response = client.patch(f"/api/steps/{step['id']}", json={"status": "COMPLETED"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "status"]
    empty = client.patch(f"/api/steps/{step['id']}", json={"station_ae_titles": ["  "]})
    assert empty.status_code == 422
    assert empty.json()["field"] == "ScheduledStationAETitle"
    bad_date = client.patch(f"/api/steps/{step['id']}", json={"start_date": "20261301"})
    assert bad_date.status_code == 422
    assert bad_date.json()["detail"][0]["loc"] == ["body", "start_date"]
    assert client.get(f"/api/steps/{step['id']}").json() == step


def test_cancel_order(client: TestClient, session_factory: SessionFactory) -> None:
    order = create(client)
    steps = steps_of(order)
    client.post(f"/api/steps/{steps['SPS3']['id']}/status/COMPLETED").raise_for_status()

    response = client.post(f"/api/orders/{order['id']}/cancel")
    assert response.status_code == 200, response.text
    after = steps_of(response.json())
    assert {k: s["status"] for k, s in after.items()} == {
        "SPS1": "CANCELED",
        "SPS2": "CANCELED",
        "SPS3": "COMPLETED",  # already final: left as it was
    }
    shown = client.get(f"/api/orders/{order['id']}")
    assert shown.status_code == 200
    assert steps_of(shown.json()) == after

    canceled = client.get("/api/mwlitems", params={"ScheduledProcedureStepStatus": "CANCELED"})
    assert canceled.status_code == 200
    assert sps_ids(canceled.json()) == {"SPS1", "SPS2"}
    assert client.get("/api/orders", params={"status": "CANCELED"}).json()[0]["id"] == order["id"]

    order_audit = audit_rows(session_factory, "order", order["id"])
    assert [e.action for e in order_audit] == ["create", "cancel"]
    assert order_audit[1].detail == {"steps": ["SPS1", "SPS2"]}
    step_audit = audit_rows(session_factory, "scheduled_procedure_step", steps["SPS1"]["id"])
    assert step_audit[-1].action == "status"
    assert step_audit[-1].detail == {
        "before": {"status": "SCHEDULED"},
        "after": {"status": "CANCELED"},
    }

    again = client.post(f"/api/orders/{order['id']}/cancel")
    assert again.status_code == 200
    assert len(audit_rows(session_factory, "order", order["id"])) == 2  # nothing left to cancel


def test_status_transitions(client: TestClient, session_factory: SessionFactory) -> None:
    step_id = steps_of(create(client))["SPS1"]["id"]
    for status in ("ARRIVED", "STARTED", "COMPLETED"):
        response = client.post(f"/api/steps/{step_id}/status/{status}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    forbidden = client.post(f"/api/steps/{step_id}/status/STARTED")
    assert forbidden.status_code == 409
    assert forbidden.json()["field"] == "ScheduledProcedureStepStatus"
    assert "COMPLETED" in forbidden.json()["detail"]
    assert client.get(f"/api/steps/{step_id}").json()["status"] == "COMPLETED"

    edit_final = client.patch(f"/api/steps/{step_id}", json={"modality": "MR"})
    assert edit_final.status_code == 409
    assert "COMPLETED" in edit_final.json()["detail"]
    assert client.get(f"/api/steps/{step_id}").json()["modality"] == "CT"

    reopened = client.post(f"/api/steps/{step_id}/status/SCHEDULED")
    assert reopened.status_code == 200
    assert reopened.json()["status"] == "SCHEDULED"
    assert client.patch(f"/api/steps/{step_id}", json={"modality": "MR"}).status_code == 200

    assert client.post(f"/api/steps/{step_id}/status/FINISHED").status_code == 422
    moves = [
        (e.detail["before"]["status"], e.detail["after"]["status"])
        for e in audit_rows(session_factory, "scheduled_procedure_step", step_id)
        if e.action == "status"
    ]
    assert moves == [
        ("SCHEDULED", "ARRIVED"),
        ("ARRIVED", "STARTED"),
        ("STARTED", "COMPLETED"),
        ("COMPLETED", "SCHEDULED"),
    ]


def test_update_order(client: TestClient, session_factory: SessionFactory) -> None:
    order = create(client)
    response = client.patch(
        f"/api/orders/{order['id']}",
        json={"accession_number": "ACC9", "referring_physician_name": ""},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["accession_number"] == "ACC9"
    assert updated["referring_physician_name"] == ""
    assert updated["procedures"] == order["procedures"]
    assert client.get(f"/api/orders/{order['id']}").json() == updated
    item = client.get(f"/api/mwlitems/{STUDY_1}/SPS1").json()
    assert item["00080050"]["Value"] == ["ACC9"]

    events = audit_rows(session_factory, "order", order["id"])
    assert [e.action for e in events] == ["create", "update"]
    assert events[1].detail["fields"] == ["accession_number", "referring_physician_name"]
    assert events[1].detail["after"] == {
        "accession_number": "ACC9",
        "referring_physician_name": "",
    }

    other = create(client, accession="ACC2", study_uids=("1.2.3.1", "1.2.3.2"))
    taken = client.patch(f"/api/orders/{other['id']}", json={"accession_number": "ACC9"})
    assert taken.status_code == 409
    assert taken.json()["field"] == "accession_number"
    assert client.get(f"/api/orders/{other['id']}").json()["accession_number"] == "ACC2"
    same = client.patch(f"/api/orders/{order['id']}", json={"accession_number": "ACC9"})
    assert same.status_code == 200  # its own accession number is no conflict

    unknown = client.patch(f"/api/orders/{order['id']}", json={"patient_id": "P9"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "patient_id"]


def test_invalid_orders_name_the_field_and_create_nothing(client: TestClient) -> None:
    def rejected(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/api/orders", json=body)
        assert response.status_code == 422, response.text
        answer: dict[str, Any] = response.json()
        return answer

    body = order_body()
    body["procedures"][0]["steps"][0]["start_date"] = "20261301"
    loc = rejected(body)["detail"][0]["loc"]
    assert loc == ["body", "procedures", 0, "steps", 0, "start_date"]

    body = order_body()
    body["procedures"][1]["steps"][0]["station_ae_titles"] = []
    loc = rejected(body)["detail"][0]["loc"]
    assert loc == ["body", "procedures", 1, "steps", 0, "station_ae_titles"]

    body = order_body()
    body["procedures"][1]["steps"][0]["station_ae_titles"] = [""]
    assert rejected(body)["field"] == "ScheduledStationAETitle"

    body = order_body()
    body["procedures"][0]["steps"][1]["start_time"] = "2500"
    answer = rejected(body)
    assert answer["field"] == "ScheduledProcedureStepStartTime"
    assert "2500" in answer["detail"]

    body = order_body()
    body["patient"]["sex"] = "X"
    assert rejected(body)["detail"][0]["loc"] == ["body", "patient", "sex"]

    body = order_body()
    body["procedures"] = []
    assert rejected(body)["detail"][0]["loc"] == ["body", "procedures"]

    body = order_body()
    body["procedures"][0]["study_instance_uid"] = "1.2.03"
    assert rejected(body)["detail"][0]["loc"] == ["body", "procedures", 0, "study_instance_uid"]

    assert client.get("/api/orders").json() == []
    assert client.get("/api/patients").json() == []


def test_conflicts_roll_back_the_whole_order(client: TestClient) -> None:
    create(client)
    duplicate_accession = client.post(
        "/api/orders", json=order_body(study_uids=("1.2.3.1", "1.2.3.2"))
    )
    assert duplicate_accession.status_code == 409
    assert duplicate_accession.json()["field"] == "accession_number"

    same_study = client.post(
        "/api/orders", json=order_body(accession="ACC2", study_uids=("1.2.3.1", STUDY_2))
    )
    assert same_study.status_code == 409
    assert same_study.json()["field"] == "StudyInstanceUID"
    assert STUDY_2 in same_study.json()["detail"]
    assert [o["accession_number"] for o in client.get("/api/orders").json()] == ["ACC1"]
    # The first procedure of the refused order was rolled back with the rest.
    assert client.get("/api/mwlitems", params={"StudyInstanceUID": "1.2.3.1"}).json() == []


def test_unknown_ids_are_404(client: TestClient) -> None:
    for method, path, body in (
        ("GET", "/api/orders/999999", None),
        ("PATCH", "/api/orders/999999", {"accession_number": "X"}),
        ("POST", "/api/orders/999999/cancel", None),
        ("GET", "/api/steps/999999", None),
        ("PATCH", "/api/steps/999999", {"modality": "MR"}),
        ("POST", "/api/steps/999999/status/STARTED", None),
    ):
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (method, path)
        assert "999999" in response.json()["detail"]
