"""REST: DICOM JSON worklist items and health, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory
from app.main import create_app
from tests.support.items import mwl_item

DICOM_JSON = {"content-type": "application/dicom+json"}


def post(client: TestClient, **kwargs: Any) -> Any:
    return client.post("/api/mwlitems", json=mwl_item(**kwargs), headers=DICOM_JSON)


def step(item: dict[str, Any]) -> dict[str, Any]:
    return item["00400100"]["Value"][0]  # type: ignore[no-any-return]


def test_health(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["up"] is True
    assert body["listeners"]["dicom"]["up"] is True


def test_health_reports_a_listener_down(settings: Settings) -> None:
    engine = create_db_engine(settings.database_url)
    app = create_app(
        settings, engine, create_session_factory(engine), {"dicom": lambda: {"up": False}}
    )
    with TestClient(app) as test_client:
        response = test_client.get("/api/health")
    engine.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


def test_create_then_update(client: TestClient) -> None:
    created = post(client)
    assert created.status_code == 201
    assert created.headers["content-type"].startswith("application/dicom+json")
    assert step(created.json())["00400020"]["Value"] == ["SCHEDULED"]
    updated = post(client, modality="MR")
    assert updated.status_code == 200
    assert step(updated.json())["00080060"]["Value"] == ["MR"]
    items = client.get("/api/mwlitems").json()
    assert len(items) == 1


def test_plain_json_content_type_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/api/mwlitems", json=mwl_item(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201


def test_get_one_and_delete(client: TestClient) -> None:
    post(client)
    one = client.get("/api/mwlitems/1.2.3.4.1/SPS1")
    assert one.status_code == 200
    assert one.json()["00100020"]["Value"] == ["P1"]
    assert client.delete("/api/mwlitems/1.2.3.4.1/SPS1").status_code == 204
    missing = client.get("/api/mwlitems/1.2.3.4.1/SPS1")
    assert missing.status_code == 404
    assert "no worklist item" in missing.json()["detail"]


def test_search_by_keyword(client: TestClient) -> None:
    post(client, sps_id="S1", study_uid="1.2.1", accession="A1", date="20261201")
    post(client, sps_id="S2", study_uid="1.2.2", accession="A2", date="20261208", modality="MR")
    post(client, sps_id="S3", study_uid="1.2.3", accession="A3", date="20261203", modality="CT")

    def ids(params: dict[str, str]) -> list[str]:
        response = client.get("/api/mwlitems", params=params)
        assert response.status_code == 200, response.text
        return [step(i)["00400009"]["Value"][0] for i in response.json()]

    assert ids({"AccessionNumber": "A1"}) == ["S1"]
    assert ids({"Modality": "CT", "ScheduledProcedureStepStartDate": "20261201-20261207"}) == [
        "S1",
        "S3",
    ]
    assert ids({"limit": "1", "offset": "1"}) == ["S3"]
    assert ids({"PatientName": "doe*"}) == ["S1", "S3", "S2"]


def test_status_changes_and_rest_lists_final_steps(client: TestClient) -> None:
    post(client)
    done = client.post("/api/mwlitems/1.2.3.4.1/SPS1/status/COMPLETED")
    assert done.status_code == 200
    assert step(done.json())["00400020"]["Value"] == ["COMPLETED"]
    # REST lists items in any status (the worklist SCP would hide this one)
    listed = client.get("/api/mwlitems").json()
    assert [step(i)["00400020"]["Value"][0] for i in listed] == ["COMPLETED"]
    assert (
        client.get("/api/mwlitems", params={"ScheduledProcedureStepStatus": "SCHEDULED"}).json()
        == []
    )
    refused = client.post("/api/mwlitems/1.2.3.4.1/SPS1/status/STARTED")
    assert refused.status_code == 409
    assert "cannot become STARTED" in refused.json()["detail"]
    assert client.post("/api/mwlitems/1.2.3.4.1/SPS1/status/BOGUS").status_code == 422


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ("{not json", 422, "not valid JSON"),
        ("[1, 2]", 422, "DICOM JSON object"),
        ('{"00100010": {"Value": []}}', 422, "'vr'"),
    ],
)
def test_bad_bodies_say_what_is_wrong(
    client: TestClient, body: str, status: int, fragment: str
) -> None:
    response = client.post("/api/mwlitems", content=body, headers=DICOM_JSON)
    assert response.status_code == status
    assert fragment in response.json()["detail"]


def test_missing_type_1_attribute_names_it(client: TestClient) -> None:
    item = mwl_item()
    del step(item)["00400001"]
    response = client.post("/api/mwlitems", json=item, headers=DICOM_JSON)
    assert response.status_code == 422
    assert response.json()["field"] == "ScheduledStationAETitle"


def test_wrong_content_type(client: TestClient) -> None:
    response = client.post("/api/mwlitems", content="x", headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert "application/dicom+json" in response.json()["detail"]


def test_bad_queries_are_400(client: TestClient) -> None:
    bad_date = client.get("/api/mwlitems", params={"ScheduledProcedureStepStartDate": "2026-12"})
    assert bad_date.status_code == 400
    assert bad_date.json()["field"] == "ScheduledProcedureStepStartDate"
    unknown = client.get("/api/mwlitems", params={"Colour": "red"})
    assert unknown.status_code == 400
    assert "unsupported matching key" in unknown.json()["detail"]


def test_study_of_another_patient_is_409(client: TestClient) -> None:
    post(client)
    response = post(client, patient_id="P2")
    assert response.status_code == 409
    assert response.json()["field"] == "StudyInstanceUID"


def test_openapi_lists_the_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/health",
        "/api/mwlitems",
        "/api/mwlitems/{study_uid}/{sps_id}",
        "/api/mwlitems/{study_uid}/{sps_id}/status/{status}",
    } <= set(paths)
