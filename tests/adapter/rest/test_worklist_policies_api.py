"""REST: ``/api/worklist-policies`` (viewer reads, admin writes) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.support.auth import bearer, create_api_token

URL = "/api/worklist-policies"
CT01 = {"calling_ae_title": "CT01", "policy": "calling_ae"}


def test_crud(client: TestClient) -> None:
    assert client.get(URL).json() == []
    created = client.post(URL, json=CT01)
    assert created.status_code == 201, created.text
    body = created.json()
    pk = body["id"]
    assert {k: body[k] for k in ("calling_ae_title", "policy", "station_ae_titles")} == {
        "calling_ae_title": "CT01",
        "policy": "calling_ae",
        "station_ae_titles": [],
    }
    duplicate = client.post(URL, json={**CT01, "policy": "none"})
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "calling_ae_title"
    restricted = {
        "calling_ae_title": "CT01",
        "policy": "restrict",
        "station_ae_titles": ["CT01", "CT02"],
        "modalities": ["CT"],
    }
    replaced = client.put(f"{URL}/{pk}", json=restricted)
    assert replaced.status_code == 200
    assert replaced.json()["station_ae_titles"] == ["CT01", "CT02"]
    assert client.get(f"{URL}/{pk}").json()["modalities"] == ["CT"]
    assert [p["calling_ae_title"] for p in client.get(URL).json()] == ["CT01"]
    (event,) = client.get(
        "/api/audit", params={"entity": "worklist_policy", "entity_pk": pk, "limit": 1}
    ).json()
    assert event["action"] == "update" and event["actor"] == "token:tests-admin"
    assert client.delete(f"{URL}/{pk}").status_code == 204
    assert client.get(f"{URL}/{pk}").status_code == 404
    assert client.put(f"{URL}/{pk}", json=CT01).status_code == 404
    assert client.delete(f"{URL}/{pk}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"calling_ae_title": "A" * 17, "policy": "none"}, "calling_ae_title"),
        ({"calling_ae_title": "", "policy": "none"}, "calling_ae_title"),
        ({"calling_ae_title": "CT\\01", "policy": "none"}, "calling_ae_title"),
        ({"calling_ae_title": "CT01", "policy": "station"}, "policy"),
        ({"calling_ae_title": "CT01"}, "policy"),
        ({"calling_ae_title": "CT01", "policy": "none", "extra": 1}, "extra"),
        (
            {"calling_ae_title": "CT01", "policy": "restrict", "modalities": ["C-T"]},
            "modalities",
        ),
        (
            {"calling_ae_title": "CT01", "policy": "calling_ae", "station_ae_titles": ["X"]},
            "station_ae_titles",
        ),
    ],
)
def test_validation_is_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post(URL, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()
    named = detail.get("field") or str(detail["detail"])
    assert field in named
    assert client.get(URL).json() == []


@pytest.mark.parametrize("pk", ["0", "-1", str(2**31), "99999999999999999999", "x"])
def test_path_integers_are_bounded(client: TestClient, pk: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, f"{URL}/{pk}", json=CT01)
        assert response.status_code == 422, (method, pk, response.text)
    assert client.get(f"{URL}/{2**31 - 1}").status_code == 404


def test_viewer_reads_admin_writes(anonymous: TestClient, settings: Settings) -> None:
    admin = bearer(create_api_token(settings.database_url, role="admin", name="boss"))
    scheduler = bearer(create_api_token(settings.database_url, role="scheduler", name="ris"))
    viewer = bearer(create_api_token(settings.database_url, role="viewer", name="screen"))
    pk = anonymous.post(URL, json=CT01, headers=admin).json()["id"]
    assert anonymous.get(URL, headers=viewer).status_code == 200
    assert anonymous.get(f"{URL}/{pk}", headers=viewer).json()["policy"] == "calling_ae"
    for headers in (viewer, scheduler):
        refused = anonymous.post(URL, json={**CT01, "calling_ae_title": "MR01"}, headers=headers)
        assert refused.status_code == 403
        assert "role admin required" in refused.json()["detail"]
        assert anonymous.put(f"{URL}/{pk}", json=CT01, headers=headers).status_code == 403
        assert anonymous.delete(f"{URL}/{pk}", headers=headers).status_code == 403
    for method, url in (
        ("GET", URL),
        ("POST", URL),
        ("GET", f"{URL}/{pk}"),
        ("PUT", f"{URL}/{pk}"),
        ("DELETE", f"{URL}/{pk}"),
    ):
        assert anonymous.request(method, url, json=CT01).status_code == 401
    assert anonymous.get(f"{URL}/{pk}", headers=admin).json()["policy"] == "calling_ae"
