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


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker subprocess with an empty, migrated database, shared by one test module."""
    yield from running_broker(tmp_path_factory.mktemp("broker"))
