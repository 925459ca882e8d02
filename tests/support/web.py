"""The staff page in headless Chromium (Debian's ``chromium`` package, never a downloaded one),
driven by Playwright; an in-process broker with users of each role.

A missing Chromium or Playwright skips the browser tests locally and fails them in CI.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.access import Role
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.runtime import Broker
from app.services import users
from tests.support.auth import bearer, create_api_token
from tests.support.ci import IN_CI
from tests.support.settings import make_settings

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "correct horse battery"
USERS = {"alice": Role.ADMIN, "sam": Role.SCHEDULER, "vic": Role.VIEWER}
DAY = "20261201"


def chromium_or_skip() -> str:
    """The path of Debian's Chromium, with Playwright importable; else skip (fail in CI)."""
    problems = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package playwright is not installed (dev extra)")
    path = shutil.which(CHROMIUM) or shutil.which("chromium")
    if path is None:
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if problems:
        message = "browser tests need " + "; ".join(problems)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert path is not None
    return path


@dataclass
class WebBroker:
    """A running broker, its address, and an admin API token for setting up data."""

    broker: Broker
    base_url: str
    token: str

    @property
    def dicom_port(self) -> int:
        return self.broker.ports["dicom"]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=bearer(self.token), timeout=10)


def add_users(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            for name, role in USERS.items():
                users.create_user(
                    session,
                    username=name,
                    password=PASSWORD,
                    role=role,
                    actor=Actor(AuditSource.CLI, "tests"),
                )
    finally:
        engine.dispose()


def start_web_broker(database_url: str, tmp_path: Path, **overrides: Any) -> WebBroker:
    add_users(database_url)
    token = create_api_token(database_url, role="admin", name="browser-tests")
    broker = Broker(make_settings(database_url, tmp_path, **overrides))
    ports = broker.start()
    return WebBroker(broker, f"http://127.0.0.1:{ports['http']}", token)


def sign_in(page: Page, username: str, *, path: str = f"/?date={DAY}") -> None:
    """Open ``path``, get sent to the sign-in page, sign in, and land back on ``path``."""
    from playwright.sync_api import expect

    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    if path.startswith("/?"):
        expect(page.locator("#day-title")).to_contain_text("2026")
        expect(page.locator("#live")).to_have_text("Live")


def order(
    *,
    name: str,
    patient_id: str,
    accession: str,
    time: str = "0900",
    station: str = "CT01",
    modality: str = "CT",
    procedure: str = "CT HEAD",
    day: str = DAY,
) -> dict[str, Any]:
    return {
        "accession_number": accession,
        "patient": {"patient_id": patient_id, "name": name, "birth_date": "19800101", "sex": "F"},
        "procedures": [
            {
                "description": procedure,
                "steps": [
                    {
                        "station_ae_titles": [station],
                        "start_date": day,
                        "start_time": time,
                        "modality": modality,
                        "description": procedure,
                    }
                ],
            }
        ],
    }
