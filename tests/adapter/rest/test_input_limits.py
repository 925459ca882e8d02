"""REST input limits: storable integers, bounded bodies, 4xx (never 500) for bad input.

The integer parameters are found by walking the OpenAPI schema, so an endpoint added later
without ``DbId``/``DbOffset`` fails here instead of answering 500 in production.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.limits import DB_INT_MAX, MAX_JSON_DEPTH, RequestLimitMiddleware
from app.config import Settings
from app.db import create_db_engine, create_session_factory
from app.main import create_app
from tests.support.auth import bearer, create_api_token
from tests.support.settings import make_settings

ONE_MIB = 1024 * 1024
DICOM_JSON = "application/dicom+json"


def _int_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    if schema.get("type") == "integer":
        return schema
    for option in schema.get("anyOf", []):
        if option.get("type") == "integer":
            return dict(option)
    return None


def _integer_parameters(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(method, path, parameter, its integer schema) for every integer path/query parameter."""
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = _int_schema(parameter.get("schema", {}))
                if schema is not None and parameter["in"] in ("path", "query"):
                    yield method.upper(), path, parameter, schema


def _filled(path: str, operation: dict[str, Any], name: str, value: str) -> str:
    """``path`` with ``name`` set to ``value`` and every other path parameter a valid value."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        if parameter["name"] == name:
            fill = value
        elif "enum" in parameter["schema"]:
            fill = str(parameter["schema"]["enum"][0])
        elif _int_schema(parameter["schema"]) is not None:
            fill = "1"
        else:
            fill = "x"
        path = path.replace("{" + parameter["name"] + "}", fill)
    return path


def test_every_integer_parameter_is_bounded_to_the_database(app: FastAPI) -> None:
    found = list(_integer_parameters(app))
    names = {(method, path, p["name"]) for method, path, p, _ in found}
    # the parameters of the attacks that once answered 500 are among those found
    for expected in (
        ("DELETE", "/api/stations/{pk}", "pk"),
        ("GET", "/api/mpps", "offset"),
        ("GET", "/api/outbox", "offset"),
        ("POST", "/api/orders/{pk}/cancel", "pk"),
        ("GET", "/api/mpps", "step"),
        ("GET", "/api/audit", "entity_pk"),
    ):
        assert expected in names
    for method, path, parameter, schema in found:
        where = f"{method} {path} {parameter['name']}"
        assert schema.get("minimum", -1) >= 0, f"{where}: no lower bound"
        assert schema.get("maximum", DB_INT_MAX + 1) <= DB_INT_MAX, f"{where}: no upper bound"


def _out_of_range(schema: dict[str, Any]) -> list[int]:
    return [schema["minimum"] - 1, schema["maximum"] + 1, 2**63, 10**30]


def test_every_integer_parameter_answers_422_out_of_range(client: TestClient, app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    checked = 0
    for method, path, parameter, schema in _integer_parameters(app):
        operation = paths[path][method.lower()]
        name = parameter["name"]
        for value in _out_of_range(schema):
            if parameter["in"] == "path":
                url, params = _filled(path, operation, name, str(value)), {}
            else:
                url, params = _filled(path, operation, "", ""), {name: str(value)}
            response = client.request(method, url, params=params)
            where = f"{method} {url} {params}"
            assert response.status_code == 422, f"{where}: {response.status_code}"
            errors = response.json()["detail"]
            assert any(e["loc"] == [parameter["in"], name] for e in errors), where
            checked += 1
    assert checked >= 4 * 20


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("DELETE", f"/api/stations/{2**63}"),
        ("GET", f"/api/mpps?offset={2**63}"),
        ("GET", f"/api/outbox?offset={2**63}"),
        ("POST", f"/api/orders/{2**63}/cancel"),
        ("GET", f"/api/orders/{DB_INT_MAX + 1}"),
    ],
)
def test_the_reported_big_integers_answer_422(client: TestClient, method: str, url: str) -> None:
    response = client.request(method, url)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] in ("less_than_equal", "int_parsing")


def test_the_largest_id_is_looked_up_not_refused(client: TestClient) -> None:
    response = client.get(f"/api/orders/{DB_INT_MAX}")
    assert response.status_code == 404
    assert client.get(f"/api/mpps?offset={DB_INT_MAX}").json() == []


# --- body size --------------------------------------------------------------------------------


def test_body_over_the_limit_by_content_length_is_413(client: TestClient) -> None:
    body = b'{"x": "' + b"a" * ONE_MIB + b'"}'
    response = client.post(
        "/api/orders", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert str(ONE_MIB) in response.json()["detail"]


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"a" * (64 * 1024)

    response = client.post("/api/mwlitems", content=chunks(), headers={"Content-Type": DICOM_JSON})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_body_at_the_limit_reaches_the_route(client: TestClient) -> None:
    filler = ONE_MIB - len(b'{"x": ""}')
    body = b'{"x": "' + b"a" * filler + b'"}'
    assert len(body) == ONE_MIB
    response = client.post(
        "/api/orders", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422  # the route's validation, not the size limit
    assert isinstance(response.json()["detail"], list)


def test_the_limit_is_a_setting(settings: Settings) -> None:
    small = make_settings(
        settings.database_url, settings.storage.dir.parent, http_max_body_bytes=2048
    )
    assert small.http.max_body_bytes == 2048
    engine = create_db_engine(small.database_url)
    try:
        token = create_api_token(small.database_url, name="small")
        app = create_app(small, engine, create_session_factory(engine))
        with TestClient(app, headers=bearer(token)) as client:
            response = client.post("/api/patients", json={"patient_id": "P" * 3000})
            assert response.status_code == 413
            assert response.json() == {"detail": "the request body is larger than 2048 bytes"}
            ok = client.post("/api/patients", json={"patient_id": "P1", "name": "DOE^JANE"})
            assert ok.status_code == 201
    finally:
        engine.dispose()


# --- JSON nesting and encoding ----------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/api/orders", "application/json"),
        ("/api/patients", "application/json"),
        ("/api/mwlitems", DICOM_JSON),
        ("/api/mwlitems", "application/json"),
        ("/api/auth/login", "application/json"),
    ],
)
@pytest.mark.parametrize(
    "body",
    [
        _nested(100_000),
        b"[" * 100_000,  # never closed: the parser would still recurse
        b'{"patient": ' + _nested(MAX_JSON_DEPTH) + b"}",
        b'{"00100010": {"vr": "PN", "Value": ' + _nested(5000) + b"}}",
    ],
    ids=["100k-arrays", "100k-unclosed", "depth-65-in-object", "dicom-json-5000"],
)
def test_deep_nesting_is_400_with_a_reason(
    client: TestClient, url: str, content_type: str, body: bytes
) -> None:
    response = client.post(url, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
    }


def test_deep_nesting_without_content_type_is_400(client: TestClient) -> None:
    response = client.post("/api/orders", content=_nested(100_000))
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/api/orders", "/api/mwlitems"])
def test_nesting_at_the_limit_reaches_the_route(client: TestClient, url: str) -> None:
    body = b'{"x": ' + _nested(MAX_JSON_DEPTH - 1) + b"}"
    response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422  # the route's validation refuses it, not the depth limit
    assert response.json()["detail"]


def test_brackets_inside_strings_do_not_count(client: TestClient) -> None:
    name = "[" * 200 + '\\"{' * 100
    response = client.post(
        "/api/patients",
        content=('{"patient_id": "BR1", "name": "DOE^' + name + '"}').encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (201, 422), response.text  # parsed, judged by the schema
    assert "nested" not in response.text


@pytest.mark.parametrize(
    ("url", "content_type"),
    [("/api/orders", "application/json"), ("/api/mwlitems", DICOM_JSON)],
)
def test_invalid_utf8_is_400(client: TestClient, url: str, content_type: str) -> None:
    response = client.post(
        url, content=b'{"00100010": "\xff\xfe"}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert re.fullmatch(r"the JSON body is not valid UTF-8 \(byte \d+\)", response.json()["detail"])


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/api/orders", "text/plain"),
        ("/api/orders", "application/xml"),
        ("/api/mwlitems", "text/plain"),
        ("/api/mwlitems", "multipart/form-data; boundary=x"),
    ],
)
def test_wrong_content_type_is_4xx(client: TestClient, url: str, content_type: str) -> None:
    response = client.post(url, content=b"\xff{not json", headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]


def test_lone_surrogate_is_4xx_not_500(client: TestClient) -> None:
    body = b'{"patient_id": "S1", "name": "DOE^\\ud800"}'
    response = client.post(
        "/api/patients", content=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]
    assert client.get("/api/patients", params={"patient_id": "S1"}).json() == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"patient_id": "N1", "name": "DOE^\\u0000"}',
        b'{"patient_id": "N\\u00001", "name": "DOE^JANE"}',
        b'{"patient_id": "N1", "issuer_of_patient_id": "A\\u0007"}',
        b'{"patient_id": "N1\\\\N2", "name": "DOE^JANE"}',
    ],
    ids=["PN NUL", "LO NUL", "LO control", "LO backslash"],
)
def test_nul_control_and_backslash_in_text_are_refused_on_every_database(
    client: TestClient, body: bytes
) -> None:
    """PN, LO, SH hold one value without control characters (PS3.5 6.2): refused with the
    field named (PostgreSQL could not even store the NUL)."""
    response = client.post(
        "/api/patients", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert client.get("/api/patients").json() == []


@pytest.mark.parametrize(
    "url",
    ["/api/mpps/%00", "/api/patients?patient_id=%00", "/api/mwlitems?PatientID=A%00B"],
)
def test_nul_in_the_url_is_400(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 400
    assert response.json() == {"detail": "the URL contains a NUL character"}


def test_the_server_keeps_serving_after_refusals(client: TestClient) -> None:
    client.post(
        "/api/orders", content=_nested(100_000), headers={"Content-Type": "application/json"}
    )
    client.post("/api/orders", content=b"a" * (ONE_MIB + 1))
    client.delete(f"/api/stations/{2**63}")
    created = client.post("/api/patients", json={"patient_id": "OK1", "name": "DOE^JANE"})
    assert created.status_code == 201
    assert client.get(f"/api/patients/{created.json()['id']}").json()["patient_id"] == "OK1"


@pytest.mark.parametrize("length", [b"abc", b"-1", b"\xb2", b"1e3"])
def test_a_content_length_that_is_not_a_number_is_400(length: bytes) -> None:
    """Servers (h11, httptools) refuse these first; the middleware does not count on that."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not see the request")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/orders",
        "query_string": b"",
        "headers": [(b"content-length", length)],
    }
    asyncio.run(RequestLimitMiddleware(app, max_body_bytes=1024)(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {"detail": "Content-Length is not a number"}
