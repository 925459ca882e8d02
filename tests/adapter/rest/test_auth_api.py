"""REST access control: sign-in, sessions, CSRF, roles, tokens, and no endpoint left open."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.access import Role
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.main import create_app
from app.services import users
from tests.support.auth import bearer, create_api_token
from tests.support.settings import make_settings

PASSWORD = "correct horse battery"
PATIENT = {"patient_id": "P1", "name": "DOE^JANE"}

# Answer without credentials; everything else must say 401.
OPEN = {
    ("GET", "/api/health"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/auth/setup"),
    ("POST", "/api/auth/setup"),
}


def add_user(settings: Settings, name: str = "alice", role: Role = Role.ADMIN) -> int:
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            view = users.create_user(
                session,
                username=name,
                password=PASSWORD,
                role=role,
                actor=Actor(AuditSource.CLI, "tests"),
            )
    finally:
        engine.dispose()
    return view.id


def login(client: TestClient, name: str = "alice", password: str = PASSWORD) -> str:
    response = client.post("/api/auth/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


@pytest.fixture
def app_with(settings: Settings, tmp_path: Path) -> Iterator[object]:
    """Build another app on the same database with changed settings."""
    engines = []

    def build(**overrides: object) -> FastAPI:
        changed = make_settings(settings.database_url, tmp_path, **overrides)
        engine = create_db_engine(changed.database_url)
        engines.append(engine)
        return create_app(changed, engine, create_session_factory(engine))

    yield build
    for engine in engines:
        engine.dispose()


def test_first_admin_setup(app: FastAPI, anonymous: TestClient) -> None:
    assert anonymous.get("/api/auth/setup").json() == {"needed": True}
    body = {"setup_code": "guess", "username": "root", "password": PASSWORD}
    wrong = anonymous.post("/api/auth/setup", json=body)
    assert wrong.status_code == 403
    done = anonymous.post("/api/auth/setup", json={**body, "setup_code": app.state.setup_code})
    assert done.status_code == 200, done.text
    assert done.json()["name"] == "root" and done.json()["role"] == "admin"
    assert "mwl_session=" in done.headers["set-cookie"]
    me = anonymous.get("/api/auth/me").json()
    assert me == {
        "name": "root",
        "role": "admin",
        "kind": "user",
        "csrf_token": done.json()["csrf_token"],
    }
    assert anonymous.get("/api/auth/setup").json() == {"needed": False}
    again = anonymous.post("/api/auth/setup", json={**body, "setup_code": app.state.setup_code})
    assert again.status_code == 409


def test_the_setup_code_is_logged_while_no_user_exists(
    app_with: object, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    build = app_with
    assert callable(build)
    with caplog.at_level(logging.WARNING, logger="app.api.auth"):
        first = build()
    assert first.state.setup_code in caplog.text
    caplog.clear()
    add_user(settings)
    with caplog.at_level(logging.WARNING, logger="app.api.auth"):
        second = build()
    assert second.state.setup_code not in caplog.text and "setup code" not in caplog.text


def test_login_me_logout(settings: Settings, anonymous: TestClient) -> None:
    add_user(settings)
    unknown = anonymous.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    wrong = anonymous.post("/api/auth/login", json={"username": "alice", "password": "nope"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json() == {"detail": "wrong user name or password"}
    assert anonymous.get("/api/auth/me").status_code == 401

    response = anonymous.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    csrf = response.json()["csrf_token"]
    assert response.json() == {"name": "alice", "role": "admin", "csrf_token": csrf}
    cookie = response.headers["set-cookie"]
    assert re.match(r"mwl_session=[\w-]{43};", cookie)
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict"} <= flags and "secure" not in flags

    me = anonymous.get("/api/auth/me")
    assert me.json() == {"name": "alice", "role": "admin", "kind": "user", "csrf_token": csrf}
    assert anonymous.post("/api/auth/logout").status_code == 403  # no CSRF token
    out = anonymous.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204 and "mwl_session=" in out.headers["set-cookie"]
    assert anonymous.get("/api/auth/me").status_code == 401


def test_secure_cookie_when_configured(app_with: object, settings: Settings) -> None:
    build = app_with
    assert callable(build)
    add_user(settings)
    with TestClient(build(cookie_secure=True)) as client:
        response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}


def test_csrf_for_cookie_writes(settings: Settings, anonymous: TestClient) -> None:
    add_user(settings, "sam", Role.SCHEDULER)
    csrf = login(anonymous, "sam")
    missing = anonymous.post("/api/patients", json=PATIENT)
    assert missing.status_code == 403
    assert missing.json() == {"detail": "CSRF token missing or wrong"}
    wrong = anonymous.post("/api/patients", json=PATIENT, headers={"X-CSRF-Token": "x" + csrf})
    assert wrong.status_code == 403
    accented = anonymous.post("/api/patients", json=PATIENT, headers={"X-CSRF-Token": b"\xc3\xa9"})
    assert accented.status_code == 403  # a non-ASCII token is wrong, not a server error
    ok = anonymous.post("/api/patients", json=PATIENT, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201, ok.text
    assert anonymous.get("/api/patients").status_code == 200  # reads need no CSRF token
    (event,) = anonymous.get("/api/audit", params={"entity": "patient"}).json()
    assert (event["source"], event["actor"]) == ("WEB", "sam")
    # a classic form post carries it as a field
    assert anonymous.post("/api/auth/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert anonymous.post("/api/auth/logout", data={"csrf_token": csrf}).status_code == 204


def test_bearer_tokens_need_no_csrf_and_roles_apply(
    settings: Settings, anonymous: TestClient
) -> None:
    scheduler = bearer(create_api_token(settings.database_url, role="scheduler", name="ris"))
    viewer = bearer(create_api_token(settings.database_url, role="viewer", name="screen"))
    created = anonymous.post("/api/patients", json=PATIENT, headers=scheduler)
    assert created.status_code == 201, created.text
    (event,) = anonymous.get("/api/audit", params={"entity": "patient"}, headers=viewer).json()
    assert (event["source"], event["actor"]) == ("REST", "token:ris")

    assert anonymous.get("/api/patients", headers=viewer).status_code == 200
    refused = anonymous.post("/api/patients", json=PATIENT, headers=viewer)
    assert refused.status_code == 403
    assert refused.json() == {"detail": "role scheduler required; you are viewer"}
    station = {"modality": "CT", "ae_title": "CT01"}
    refused = anonymous.post("/api/stations", json=station, headers=scheduler)
    assert refused.json() == {"detail": "role admin required; you are scheduler"}
    assert anonymous.get("/api/stations", headers=viewer).status_code == 200
    assert anonymous.get("/api/users", headers=scheduler).status_code == 403
    assert anonymous.post("/api/outbox/1/retry", headers=scheduler).status_code == 403
    me = anonymous.get("/api/auth/me", headers=viewer).json()
    assert me == {"name": "screen", "role": "viewer", "kind": "token", "csrf_token": None}


def test_revoked_and_unknown_tokens_get_401(client: TestClient, anonymous: TestClient) -> None:
    made = client.post("/api/tokens", json={"name": "ris", "role": "scheduler"})
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert secret.startswith("mwl_") and len(secret) == 44
    listed = client.get("/api/tokens").json()
    assert secret not in str(listed) and {t["name"] for t in listed} == {"tests-admin", "ris"}
    assert anonymous.get("/api/orders", headers=bearer(secret)).status_code == 200
    assert client.delete(f"/api/tokens/{made.json()['id']}").status_code == 204
    revoked = anonymous.get("/api/orders", headers=bearer(secret))
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"] == "Bearer"
    assert anonymous.get("/api/orders", headers=bearer("mwl_nope")).status_code == 401


def test_login_rate_limit(app_with: object, settings: Settings) -> None:
    build = app_with
    assert callable(build)
    add_user(settings)
    with TestClient(build(login_max_failures=2, login_window_seconds=60)) as client:
        bad = {"username": "alice", "password": "wrong"}
        assert [client.post("/api/auth/login", json=bad).status_code for _ in range(2)] == [
            401,
            401,
        ]
        blocked = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 60


def test_user_administration(client: TestClient, anonymous: TestClient) -> None:
    made = client.post(
        "/api/users", json={"username": "vic", "password": PASSWORD, "role": "viewer"}
    )
    assert made.status_code == 201, made.text
    pk = made.json()["id"]
    assert "password" not in str(made.json())
    assert client.post(
        "/api/users", json={"username": "vic", "password": PASSWORD}
    ).status_code == (409)
    assert client.post("/api/users", json={"username": "x", "password": "short"}).status_code == (
        422
    )
    csrf = login(anonymous, "vic")
    refused = anonymous.post("/api/patients", json=PATIENT, headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 403

    changed = client.patch(f"/api/users/{pk}", json={"role": "scheduler"})
    assert changed.json()["role"] == "scheduler"
    allowed = anonymous.post("/api/patients", json=PATIENT, headers={"X-CSRF-Token": csrf})
    assert allowed.status_code == 201  # the role is read on every request

    assert client.patch(f"/api/users/{pk}", json={"active": False}).json()["active"] is False
    assert anonymous.get("/api/auth/me").status_code == 401  # deactivated: sessions ended
    assert client.patch(f"/api/users/{pk}", json={"active": True, "password": "new password"})
    login(anonymous, "vic", "new password")
    assert [u["username"] for u in client.get("/api/users").json()] == ["vic"]
    assert client.delete(f"/api/users/{pk}").status_code == 204
    assert anonymous.get("/api/auth/me").status_code == 401
    assert client.delete(f"/api/users/{pk}").status_code == 404


def test_openapi_documents_both_schemes(client: TestClient) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["session"]["in"] == "cookie" and schemes["session"]["name"] == "mwl_session"


def test_every_endpoint_but_the_open_ones_needs_credentials(
    app: FastAPI, anonymous: TestClient
) -> None:
    """Walks the whole OpenAPI schema, so a new endpoint cannot be left open by mistake."""
    seen = set()
    for path, operations in app.openapi()["paths"].items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in operations:
            seen.add((method.upper(), path))
            if (method.upper(), path) in OPEN:
                continue
            response = anonymous.request(method.upper(), url)
            assert response.status_code == 401, f"{method.upper()} {path}: {response.status_code}"
            assert response.headers["www-authenticate"] == "Bearer"
    assert seen >= OPEN
    assert len(seen) > 30
