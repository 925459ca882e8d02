"""``/api/outbox``: list without payloads, detail with, manual retry (404 / 409)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import create_db_engine, create_session_factory, session_scope
from app.events import ChangeEvent, install_after_commit
from app.services import outbox

PAYLOAD = {"status": "IN PROGRESS", "patient": {"patient_id": "P1", "name": "DOE^JANE"}}


def write(settings: Settings, *messages: dict[str, Any]) -> list[int]:
    """Enqueue ``messages`` (enqueue kwargs over defaults; optional ``then``: "sent" / "failed")."""
    engine = create_db_engine(settings.database_url)
    ids = []
    try:
        with session_scope(create_session_factory(engine)) as session:
            for message in messages:
                then = message.pop("then", "")
                pk = outbox.enqueue(session, **{**_defaults(), **message})
                if then == "sent":
                    outbox.mark_sent(session, pk=pk)
                elif then == "failed":
                    outbox.mark_failed(session, pk=pk, error="refused", minimum=60, maximum=60)
                ids.append(pk)
    finally:
        engine.dispose()
    return ids


def _defaults() -> dict[str, Any]:
    return {
        "channel": outbox.HL7,
        "destination": "ris:2575",
        "ordering_key": "ACC1",
        "kind": "mpps-status",
        "payload": PAYLOAD,
    }


def test_list_is_newest_first_without_payload(client: TestClient, settings: Settings) -> None:
    first, second = write(settings, {}, {"then": "sent"})
    body = client.get("/api/outbox").json()
    assert [m["id"] for m in body] == [second, first]
    assert set(body[0]) == {
        "id",
        "created_at",
        "channel",
        "destination",
        "ordering_key",
        "kind",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    }
    assert body[0]["state"] == "sent" and body[0]["sent_at"] is not None
    assert "DOE" not in client.get("/api/outbox").text


def test_list_filters_and_pages(client: TestClient, settings: Settings) -> None:
    hl7, dicom, done = write(
        settings,
        {},
        {"channel": outbox.DICOM, "destination": "ARCHIVE@pacs:104", "kind": "mpps-create"},
        {"then": "sent"},
    )

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/outbox", params=params)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()]

    assert ids(channel="dicom") == [dicom]
    assert ids(state="pending") == [dicom, hl7]
    assert ids(state="sent", channel="hl7") == [done]
    assert ids(limit=1, offset=1) == [dicom]
    assert client.get("/api/outbox", params={"state": "lost"}).status_code == 422
    assert client.get("/api/outbox", params={"limit": 0}).status_code == 422


def test_detail_has_the_payload(client: TestClient, settings: Settings) -> None:
    (pk,) = write(settings, {"then": "failed"})
    body = client.get(f"/api/outbox/{pk}").json()
    assert body["payload"] == PAYLOAD
    assert (body["state"], body["attempts"], body["last_error"]) == ("pending", 1, "refused")
    assert client.get(f"/api/outbox/{pk + 99}").status_code == 404


def test_retry_makes_a_failed_message_due_now(client: TestClient, settings: Settings) -> None:
    (pk,) = write(settings, {"then": "failed"})
    waiting = client.get(f"/api/outbox/{pk}").json()["next_attempt_at"]
    response = client.post(f"/api/outbox/{pk}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["next_attempt_at"] < waiting
    assert "payload" not in response.json()


def test_retry_tells_the_after_commit_hook(client: TestClient, settings: Settings) -> None:
    (pk,) = write(settings, {"then": "failed"})
    committed: list[ChangeEvent] = []
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    install_after_commit(factory, committed.extend)
    assert client.post(f"/api/outbox/{pk}/retry").status_code == 200
    assert ChangeEvent("outbox", pk, "retry") in committed
    assert client.post(f"/api/outbox/{pk + 99}/retry").status_code == 404
    assert [e for e in committed if e.pk == pk + 99] == []  # a refused change tells nobody


def test_retry_refuses_sent_and_unknown(client: TestClient, settings: Settings) -> None:
    (pk,) = write(settings, {"then": "sent"})
    conflict = client.post(f"/api/outbox/{pk}/retry")
    assert conflict.status_code == 409
    assert "already sent" in conflict.json()["detail"]
    assert client.post(f"/api/outbox/{pk + 99}/retry").status_code == 404
