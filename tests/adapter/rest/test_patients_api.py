"""REST: plain JSON patients, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.db import SessionFactory
from app.models import AuditEvent


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"patient_id": "P1", "name": "DOE^JANE", "birth_date": "19800101", "sex": "F"}
    response = client.post("/api/patients", json={**body, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def patient_audit(session_factory: SessionFactory, pk: int) -> list[AuditEvent]:
    with session_factory() as session:
        statement = (
            select(AuditEvent)
            .where(AuditEvent.entity == "patient", AuditEvent.entity_pk == pk)
            .order_by(col(AuditEvent.id))
        )
        return list(session.exec(statement))


def test_create_and_get(client: TestClient, session_factory: SessionFactory) -> None:
    created = create(client, name="YAMADA^TARO=山田^太郎=やまだ^たろう")
    assert created["patient_id"] == "P1"
    assert created["issuer_of_patient_id"] == ""
    assert created["name"] == "YAMADA^TARO=山田^太郎=やまだ^たろう"
    assert (created["birth_date"], created["sex"]) == ("19800101", "F")
    assert isinstance(created["id"], int)
    fetched = client.get(f"/api/patients/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert [e.action for e in patient_audit(session_factory, created["id"])] == ["create"]


def test_duplicate_identity_is_409(client: TestClient) -> None:
    first = create(client)
    again = client.post("/api/patients", json={"patient_id": "P1", "name": "OTHER^NAME"})
    assert again.status_code == 409
    assert again.json()["field"] == "patient_id"
    assert "P1" in again.json()["detail"]
    assert client.get(f"/api/patients/{first['id']}").json()["name"] == "DOE^JANE"
    other_issuer = create(client, issuer_of_patient_id="HOSP2")
    assert other_issuer["id"] != first["id"]


def test_list_filters(client: TestClient) -> None:
    doe = create(client, patient_id="P1", name="DOE^JANE")
    roe = create(client, patient_id="P2", name="Roe^Richard")
    other = create(client, patient_id="X9", name="DOE^JOHN")

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/patients", params=params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()]

    assert ids() == [doe["id"], roe["id"], other["id"]]
    assert ids(patient_id="P2") == [roe["id"]]
    assert ids(patient_id="P*") == [doe["id"], roe["id"]]
    assert ids(patient_id="?9") == [other["id"]]
    assert ids(name="doe*") == [doe["id"], other["id"]]
    assert ids(name="ROE^RICHARD") == [roe["id"]]
    assert ids(name="doe^j?ne") == [doe["id"]]
    assert ids(name="SMITH*") == []
    assert ids(limit=2) == [doe["id"], roe["id"]]
    assert ids(limit=2, offset=2) == [other["id"]]
    assert client.get("/api/patients", params={"limit": 0}).status_code == 422


def test_patch_changes_the_worklist_item(
    client: TestClient, session_factory: SessionFactory
) -> None:
    order = client.post(
        "/api/orders",
        json={
            "patient": {
                "patient_id": "P1",
                "name": "DOE^JANE",
                "sex": "F",
                "birth_date": "19800101",
            },
            "accession_number": "ACC1",
            "procedures": [
                {
                    "study_instance_uid": "1.2.3.9",
                    "steps": [
                        {
                            "sps_id": "SPS1",
                            "station_ae_titles": ["CT01"],
                            "start_date": "20261201",
                            "start_time": "0830",
                            "modality": "CT",
                        }
                    ],
                }
            ],
        },
    )
    assert order.status_code == 201, order.text
    pk = order.json()["patient"]["id"]

    response = client.patch(f"/api/patients/{pk}", json={"name": "SMITH^JANE", "sex": ""})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["name"], patched["sex"], patched["birth_date"]) == (
        "SMITH^JANE",
        "",
        "19800101",
    )
    assert client.get(f"/api/patients/{pk}").json() == patched

    item = client.get("/api/mwlitems/1.2.3.9/SPS1").json()
    assert item["00100010"]["Value"] == [{"Alphabetic": "SMITH^JANE"}]
    assert item["00100030"]["Value"] == ["19800101"]
    by_name = client.get("/api/mwlitems", params={"PatientName": "smith*"})
    assert len(by_name.json()) == 1  # the folded name key was updated too

    events = patient_audit(session_factory, pk)
    assert [e.action for e in events] == ["create", "update"]
    assert events[1].source == "REST"
    assert events[1].detail["fields"] == ["name", "sex"]
    assert set(events[1].detail["before"]) == {"name", "sex"}
    assert events[1].detail["after"]["name"] == "SMITH^JANE"


def test_invalid_input_names_the_field(client: TestClient) -> None:
    def loc(response: Any) -> list[Any]:
        assert response.status_code == 422, response.text
        return list(response.json()["detail"][0]["loc"])

    base = {"patient_id": "P1", "name": "DOE^JANE"}
    assert loc(client.post("/api/patients", json={**base, "sex": "X"})) == ["body", "sex"]
    bad_date = {**base, "birth_date": "20230230"}
    assert loc(client.post("/api/patients", json=bad_date)) == ["body", "birth_date"]
    assert loc(client.post("/api/patients", json={"patient_id": "P1"})) == ["body", "name"]
    assert loc(client.post("/api/patients", json={**base, "patient_id": ""})) == [
        "body",
        "patient_id",
    ]
    four_groups = {**base, "name": "A=B=C=D"}
    assert loc(client.post("/api/patients", json=four_groups)) == ["body", "name"]
    assert client.get("/api/patients").json() == []

    pk = create(client)["id"]
    assert loc(client.patch(f"/api/patients/{pk}", json={"name": ""})) == ["body", "name"]
    assert loc(client.patch(f"/api/patients/{pk}", json={"sex": "male"})) == ["body", "sex"]
    assert loc(client.patch(f"/api/patients/{pk}", json={"patient_id": "P2"})) == [
        "body",
        "patient_id",
    ]
    assert client.get(f"/api/patients/{pk}").json()["patient_id"] == "P1"


def test_unknown_patient_is_404(client: TestClient) -> None:
    for response in (
        client.get("/api/patients/999999"),
        client.patch("/api/patients/999999", json={"name": "X^Y"}),
    ):
        assert response.status_code == 404
        assert "999999" in response.json()["detail"]
