"""Interop fixtures: the broker as users run it (``mwl-broker serve``) and DCMTK tools around it.

The broker runs as a subprocess configured only by ``BROKER_*`` environment variables, on free
ports and its own SQLite file; readiness is polled on ``/api/health``; SIGTERM must stop it with
exit code 0. DCMTK binaries that are missing skip the test locally and fail it in CI. The helpers
live in ``tests/support/broker.py`` and ``tests/support/tools.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker import BrokerProcess, running_broker
from tests.support.db import create_pg_database


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker subprocess with an empty, migrated database, shared by one test module."""
    yield from running_broker(tmp_path_factory.mktemp("broker"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def broker_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database URL for a ``BrokerProcess``: ``""`` (its own SQLite file) or a fresh,
    empty PostgreSQL database, dropped afterwards."""
    if request.param == "sqlite":
        yield ""
        return
    url, drop = create_pg_database()
    try:
        yield url
    finally:
        drop()
