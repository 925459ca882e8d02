"""``/api/storage-commitments``: results with committed and failed instances, filters, paging,
the delivery of the report, viewer access."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.commitment import CommitmentRequest
from app.services import commitment
from tests.support.auth import bearer, create_api_token
from tests.support.commitment import CT, MR, register_requester, store_instance

UID = "1.2.826.0.1.3680043.8.498.6"


def _commit(settings: Settings, tx: str, ae: str, refs: list[tuple[str, str]]) -> None:
    engine = create_db_engine(settings.database_url)
    factory = create_session_factory(engine)
    try:
        with session_scope(factory) as session:
            commitment.record(session, requester=ae, request=CommitmentRequest.parse(tx, refs))
        report = commitment.check(
            factory,
            transaction_uid=tx,
            storage_dir=settings.storage.dir,
            retrieve_ae_title="MWLBROKER",
        )
        with session_scope(factory) as session:
            commitment.queue_report(session, report=report)
    finally:
        engine.dispose()


def _seed(settings: Settings) -> None:
    engine = create_db_engine(settings.database_url)
    factory = create_session_factory(engine)
    try:
        store_instance(factory, settings.storage.dir, sop_class=CT, sop_instance=f"{UID}.1")
        store_instance(factory, settings.storage.dir, sop_class=CT, sop_instance=f"{UID}.3")
        register_requester(factory, "MOD1", 4242)
    finally:
        engine.dispose()
    _commit(settings, f"{UID}.101", "MOD1", [(CT, f"{UID}.1"), (CT, f"{UID}.2"), (MR, f"{UID}.3")])
    _commit(settings, f"{UID}.102", "MOD2", [(CT, f"{UID}.1")])


def test_detail_shows_committed_failed_and_delivery(client: TestClient, settings: Settings) -> None:
    _seed(settings)

    body = client.get(f"/api/storage-commitments/{UID}.101").json()

    assert body["state"] == "checked" and body["event_type"] == 2
    assert body["requester_ae_title"] == "MOD1"
    assert [c["sop_instance_uid"] for c in body["committed"]] == [f"{UID}.1"]
    assert [(f["sop_instance_uid"], f["failure_reason"]) for f in body["failed"]] == [
        (f"{UID}.2", 0x0112),
        (f"{UID}.3", 0x0119),
    ]
    assert body["delivery"]["state"] == "pending" and body["delivery"]["attempts"] == 0
    assert len(body["requested"]) == 3


def test_list_filters_by_requester_and_state(client: TestClient, settings: Settings) -> None:
    _seed(settings)

    every = client.get("/api/storage-commitments").json()
    mod2 = client.get("/api/storage-commitments", params={"requester": "MOD2"}).json()
    undeliverable = client.get("/api/storage-commitments", params={"state": "undeliverable"}).json()
    page = client.get("/api/storage-commitments", params={"limit": 1, "offset": 1}).json()

    assert [c["transaction_uid"] for c in every] == [f"{UID}.102", f"{UID}.101"]
    assert every[1]["failed_count"] == 2 and every[1]["committed_count"] == 1
    assert [c["transaction_uid"] for c in mod2] == [f"{UID}.102"]
    assert [c["state"] for c in undeliverable] == ["undeliverable"]
    assert [c["transaction_uid"] for c in page] == [f"{UID}.101"]


def test_unknown_is_404_bad_state_422_anonymous_401_viewer_reads_only(
    client: TestClient, anonymous: TestClient, settings: Settings
) -> None:
    assert client.get("/api/storage-commitments/1.2.3").status_code == 404
    assert client.get("/api/storage-commitments", params={"state": "x"}).status_code == 422
    assert anonymous.get("/api/storage-commitments").status_code == 401
    viewer = bearer(create_api_token(settings.database_url, role="viewer", name="viewer"))
    assert anonymous.get("/api/storage-commitments", headers=viewer).status_code == 200
    assert (
        anonymous.post("/api/storage-commitments/1.2.3/report", headers=viewer).status_code == 403
    )


def test_undeliverable_report_is_queued_again_once_the_requester_is_known(
    client: TestClient, settings: Settings
) -> None:
    _seed(settings)
    url = f"/api/storage-commitments/{UID}.102/report"
    still = client.post(url)
    assert still.status_code == 200 and still.json()["state"] == "undeliverable"
    engine = create_db_engine(settings.database_url)
    try:
        register_requester(create_session_factory(engine), "MOD2", 4343)
    finally:
        engine.dispose()

    queued = client.post(url).json()

    assert queued["state"] == "checked" and queued["delivery"]["state"] == "pending"
    assert client.post(url).status_code == 409  # already queued
    assert client.post("/api/storage-commitments/1.2.3/report").status_code == 404
