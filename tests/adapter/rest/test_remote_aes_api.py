"""REST: ``/api/remote-aes`` (viewer reads, admin writes, audited) on SQLite and PostgreSQL,
and the seeding from ``BROKER_REMOTE_AES`` at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import session_scope
from app.runtime import Broker
from app.services import remote_aes
from tests.support.auth import bearer, create_api_token
from tests.support.settings import make_settings

URL = "/api/remote-aes"
PACS = {"ae_title": "PACS", "host": "pacs.example", "port": 104, "services": ["store", "commit"]}


def test_crud(client: TestClient) -> None:
    assert client.get(URL).json() == []
    created = client.post(URL, json=PACS)
    assert created.status_code == 201, created.text
    body = created.json()
    pk = body["id"]
    assert {k: body[k] for k in ("ae_title", "host", "port", "tls", "services")} == {
        **PACS,
        "tls": False,
    }
    assert client.post(URL, json=PACS).json()["field"] == "ae_title"
    replaced = client.put(f"{URL}/{pk}", json={**PACS, "tls": True, "services": ["mpps"]})
    assert replaced.status_code == 200 and replaced.json()["services"] == ["mpps"]
    assert client.get(f"{URL}/{pk}").json()["tls"] is True
    (event,) = client.get("/api/audit", params={"entity": "remote_ae", "limit": 1}).json()
    assert event["action"] == "update" and event["actor"] == "token:tests-admin"
    assert client.delete(f"{URL}/{pk}").status_code == 204
    assert client.get(f"{URL}/{pk}").status_code == 404
    assert client.get("/api/audit", params={"entity": "remote_ae"}).json()[0]["action"] == "delete"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PACS, "ae_title": "A" * 17}, "ae_title"),
        ({**PACS, "ae_title": "  "}, "ae_title"),
        ({**PACS, "ae_title": "PA\\CS"}, "ae_title"),
        ({**PACS, "host": "two words"}, "host"),
        ({**PACS, "port": 0}, "port"),
        ({**PACS, "port": 70000}, "port"),
        ({**PACS, "services": ["print"]}, "services"),
        ({**PACS, "tls": "maybe"}, "tls"),
    ],
)
def test_validation_is_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post(URL, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()
    assert field in (detail.get("field") or str(detail["detail"]))
    assert client.get(URL).json() == []


def test_viewer_reads_admin_writes(anonymous: TestClient, settings: Settings) -> None:
    admin = bearer(create_api_token(settings.database_url, role="admin", name="boss"))
    scheduler = bearer(create_api_token(settings.database_url, role="scheduler", name="ris"))
    viewer = bearer(create_api_token(settings.database_url, role="viewer", name="screen"))
    pk = anonymous.post(URL, json=PACS, headers=admin).json()["id"]
    assert anonymous.get(URL, headers=viewer).json()[0]["ae_title"] == "PACS"
    for headers in (viewer, scheduler):
        assert (
            anonymous.post(URL, json={**PACS, "ae_title": "X"}, headers=headers).status_code == 403
        )
        assert anonymous.put(f"{URL}/{pk}", json=PACS, headers=headers).status_code == 403
        assert anonymous.delete(f"{URL}/{pk}", headers=headers).status_code == 403
    for method, url in (("GET", URL), ("POST", URL), ("DELETE", f"{URL}/{pk}")):
        assert anonymous.request(method, url, json=PACS).status_code == 401


def test_seeded_from_settings_idempotently(database_url: str, tmp_path: Path) -> None:
    seeds = "PACS@10.0.0.5:104, RIS@ris.local:11112:tls=mpps"
    for _ in range(2):
        broker = Broker(make_settings(database_url, tmp_path, remote_aes=seeds))
        try:
            broker.seed_remote_aes()
            with session_scope(broker.session_factory) as s:
                found = [
                    (r.ae_title, r.host, r.port, r.tls, r.services)
                    for r in remote_aes.list_remote_aes(s)
                ]
                destinations = remote_aes.mpps_destinations(s)
        finally:
            broker.engine.dispose()
        assert found == [
            ("PACS", "10.0.0.5", 104, False, ["store", "commit"]),
            ("RIS", "ris.local", 11112, True, ["mpps"]),
        ]
        assert destinations == ("RIS@ris.local:11112",)
    broker = Broker(make_settings(database_url, tmp_path, remote_aes="PACS@10.0.0.6:104=mpps"))
    try:
        broker.seed_remote_aes()
        with session_scope(broker.session_factory) as s:
            assert remote_aes.mpps_destinations(s) == ("PACS@10.0.0.6:104", "RIS@ris.local:11112")
            assert remote_aes.lookup(s, "PACS", remote_aes.RemoteService.MPPS) is not None
    finally:
        broker.engine.dispose()
