"""Browser fixtures: one headless Chromium per session, a broker and a fresh context per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.migrations import upgrade
from tests.support.ci import IN_CI
from tests.support.db import create_pg_database
from tests.support.web import (
    CHROMIUM_ARGS,
    VIEWPORT,
    WebBroker,
    chromium_or_skip,
    start_web_broker,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

try:
    import playwright  # noqa: F401
except ImportError:  # the test modules import it: without it, skip them here (fail in CI)
    if not IN_CI:
        collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def web(request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path) -> Iterator[WebBroker]:
    """The broker on SQLite; ``parametrize("web", ["postgresql"], indirect=True)`` for PostgreSQL
    (then changes reach the page through NOTIFY, as between several brokers)."""
    url, drop = sqlite_url, None
    if getattr(request, "param", "sqlite") == "postgresql":
        url, drop = create_pg_database()
        upgrade(url)
    running = start_web_broker(url, tmp_path)
    with running.api() as api:
        for modality, title in (("CT", "CT01"), ("CT", "CT02"), ("MR", "MR01")):
            location = "" if title != "CT02" else "ER"
            answer = api.post(
                "/api/stations",
                json={"modality": modality, "ae_title": title, "location": location},
            )
            assert answer.status_code == 201, answer.text
    yield running
    running.broker.stop()
    if drop is not None:
        drop()


@pytest.fixture
def page(browser: Browser, web: WebBroker) -> Iterator[Page]:
    context = browser.new_context(base_url=web.base_url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
