"""``GET /api/events`` over a real HTTP server: hello, changes, reload on overflow, clean ends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import events as events_module
from app.events import ChangeEvent
from app.runtime import Broker
from tests.support.auth import bearer, create_api_token
from tests.support.net import wait_until
from tests.support.settings import make_settings
from tests.support.sse import sse_events


@pytest.fixture
def broker(sqlite_url: str, tmp_path: Path) -> Iterator[Broker]:
    running = Broker(make_settings(sqlite_url, tmp_path), only="http")
    running.start()
    yield running
    running.stop()


def open_stream(broker: Broker, sqlite_url: str) -> tuple[httpx.Client, httpx.Response]:
    token = create_api_token(sqlite_url, role="viewer", name=f"viewer{time.monotonic_ns()}")
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{broker.ports['http']}", headers=bearer(token), timeout=10
    )
    response = client.send(client.build_request("GET", "/api/events"), stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return client, response


def test_changes_reach_an_open_stream(broker: Broker, sqlite_url: str) -> None:
    client, response = open_stream(broker, sqlite_url)
    try:
        stream = sse_events(response.iter_lines())
        assert next(stream) == ("hello", "{}")
        broker.events.publish([ChangeEvent("step", 7, "status", "STARTED")])
        name, data = next(stream)
        assert name == "change"
        assert json.loads(data) == {
            "entity": "step", "pk": 7, "action": "status", "status": "STARTED"
        }  # fmt: skip
    finally:
        response.close()
        client.close()
    # The server notices the closed connection and drops the subscription.
    wait_until(lambda: broker.events.subscriber_count == 0, what="the subscription to end")


def test_a_subscriber_that_fell_behind_is_told_to_reload(
    broker: Broker, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "SUBSCRIBER_QUEUE", 1)
    client, response = open_stream(broker, sqlite_url)
    try:
        stream = sse_events(response.iter_lines())
        assert next(stream)[0] == "hello"
        broker.events.publish([ChangeEvent("step", n, "update") for n in range(5)])
        assert next(stream)[0] == "reload"
    finally:
        response.close()
        client.close()


def test_stopping_the_broker_ends_open_streams(sqlite_url: str, tmp_path: Path) -> None:
    running = Broker(make_settings(sqlite_url, tmp_path), only="http")
    running.start()
    client, response = open_stream(running, sqlite_url)
    try:
        stream = sse_events(response.iter_lines())
        assert next(stream)[0] == "hello"
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 8, "an open event stream held up the stop"
    finally:
        response.close()
        client.close()
