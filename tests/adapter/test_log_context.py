"""Every log line names its unit of work: the calling AE and association of a DICOM event, the
MSH-10 of an HL7 message, the request id of an HTTP request (echoed in X-Request-ID)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from app import log_context
from app.config import Settings
from app.db import create_db_engine, create_session_factory
from app.main import create_app
from hl7_ingest.handler import Hl7Handler
from tests.support.net import wait_until
from tests.support.scp import start_scp

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
ORDER = (DATA / "orm_o01_nw.hl7").read_bytes()
NO_MSH = (DATA / "broken_no_msh.hl7").read_bytes()
HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with the filter ``app.cli.configure_logging`` gives every handler."""
    log_context.install(caplog.handler)
    caplog.set_level(logging.DEBUG)
    yield caplog


def fields(record: logging.LogRecord) -> dict[str, str]:
    return {k: getattr(record, k, "") for k in log_context.FIELDS}


def test_dicom_lines_name_the_calling_ae_and_the_association(
    sqlite_url: str, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    scp = start_scp(sqlite_url, tmp_path)
    try:
        ae = AE(ae_title="CT01")
        ae.add_requested_context(Verification)
        ids = []
        for _ in range(2):
            assoc = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
            assert assoc.send_c_echo().Status == 0
            assoc.release()
        wrong = AE(ae_title="INTRUDER")
        wrong.add_requested_context(Verification)
        assert wrong.associate("127.0.0.1", scp.port, ae_title="NOT_ME").is_rejected
        wait_until(
            lambda: any(r.getMessage().endswith("released") for r in logs.records),
            what="the release to be logged",
        )
    finally:
        scp.stop()
    echoes = [r for r in logs.records if r.getMessage() == "C-ECHO from CT01"]
    assert len(echoes) == 2
    for record in echoes:
        assert fields(record)["calling_ae"] == "CT01"
        ids.append(fields(record)["assoc"])
    assert all(ids) and ids[0] != ids[1]
    [rejected] = [r for r in logs.records if "rejected" in r.getMessage()]
    assert rejected.levelno == logging.INFO
    assert fields(rejected)["calling_ae"] == "INTRUDER"
    assert rejected.getMessage().endswith("rejected: called_ae")


def test_hl7_lines_name_the_message_control_id(
    settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(settings.database_url)
    try:
        handler = Hl7Handler(settings.hl7, create_session_factory(engine))
        handler.handle(ORDER)
        handler.handle(NO_MSH)
    finally:
        engine.dispose()
    mine = [r for r in logs.records if r.name.startswith("hl7_ingest")]
    order = [r for r in mine if "MSG00001" in r.getMessage()]
    assert order and all(fields(r)["msh10"] == "MSG00001" for r in order)
    unreadable = [r for r in mine if "answered AR" in r.getMessage()]
    assert unreadable and all(fields(r)["msh10"] == "" for r in unreadable)
    assert log_context.current() == {}  # nothing stays behind after a message


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    engine = create_db_engine(settings.database_url)
    app = create_app(settings, engine, create_session_factory(engine))
    with TestClient(app) as test_client:
        yield test_client
    engine.dispose()


def test_http_lines_carry_the_request_id_and_the_response_echoes_it(
    client: TestClient, logs: pytest.LogCaptureFixture
) -> None:
    body = {"username": "nobody", "password": "wrong"}
    response = client.post("/api/auth/login", json=body, headers={"X-Request-ID": "lb-42.a:b"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "lb-42.a:b"
    # logged inside the route, in the thread pool, and by the access line after it
    [failed] = [r for r in logs.records if r.getMessage().startswith("failed sign-in")]
    assert fields(failed)["request_id"] == "lb-42.a:b"
    [access] = [r for r in logs.records if r.name == "app.api.access"]
    assert access.levelno == logging.INFO
    assert access.getMessage().startswith("POST /api/auth/login 401 ")
    assert fields(access)["request_id"] == "lb-42.a:b"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 65, "semi;colon", "a/b"])
def test_a_missing_or_odd_request_id_is_replaced(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    answered = client.get("/api/health", headers=headers).headers["X-Request-ID"]
    assert HEX_ID.fullmatch(answered)


def test_query_strings_stay_out_of_the_access_line(
    client: TestClient, logs: pytest.LogCaptureFixture
) -> None:
    client.get("/api/mwlitems?PatientName=DOE%5EJOHN")
    [access] = [r for r in logs.records if r.name == "app.api.access"]
    assert access.getMessage().startswith("GET /api/mwlitems 401 ")
    broker_lines = [r.getMessage() for r in logs.records if not r.name.startswith("httpx")]
    assert broker_lines and not any("DOE" in line for line in broker_lines)
