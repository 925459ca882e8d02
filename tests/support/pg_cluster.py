"""The local PostgreSQL cluster behind the test server, stopped and started for outage tests.

Debian's ``pg_lsclusters`` finds the cluster listening on the test server's port and
``pg_ctlcluster`` stops and starts it (both from postgresql-common, installed with the server).
``pg_ctlcluster`` must run as root or as the cluster's owner; anyone else cannot stop the
server, so the test skips locally and fails under ``CI=true`` (CI runs as root).

:func:`outage` always starts the cluster again, even when the test body fails, and returns only
once it accepts connections: other tests (and other people) share this server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.ci import IN_CI
from tests.support.db import PG_ADMIN_URL, postgres_or_skip
from tests.support.net import wait_until

CTL_TIMEOUT = 60.0
BACK_TIMEOUT = 60.0
LOCAL_HOSTS = {None, "", "127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    owner: str


@dataclass
class Outage:
    """When the server was stopped and started (``time.monotonic()``)."""

    stopped_at: float = 0.0
    starting_at: float = 0.0


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def local_cluster() -> Cluster:
    """The cluster serving the test server, if this user may stop and start it."""
    postgres_or_skip()
    url = make_url(PG_ADMIN_URL)
    if url.host not in LOCAL_HOSTS:
        _unavailable(f"the test PostgreSQL at {url.host} is not local: cannot stop it")
    for tool in ("pg_lsclusters", "pg_ctlcluster"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is missing (Debian postgresql-common): cannot stop PostgreSQL")
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"],
        capture_output=True,
        text=True,
        timeout=CTL_TIMEOUT,
        check=True,
    ).stdout
    port = url.port or 5432
    for line in listed.splitlines():
        version, name, cluster_port, status, owner = [*line.split(), "", "", "", "", ""][:5]
        if cluster_port == str(port) and status.startswith("online"):
            cluster = Cluster(version, name, port, owner)
            break
    else:
        _unavailable(f"no online cluster on port {port} in pg_lsclusters:\n{listed}")
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() != 0 and user != cluster.owner:
        _unavailable(f"pg_ctlcluster needs root or the user {cluster.owner}, not {user}")
    return cluster


def _ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pg_ctlcluster", cluster.version, cluster.name, *args],
        capture_output=True,
        text=True,
        timeout=CTL_TIMEOUT,
        check=False,
    )


def accepts_connections() -> bool:
    try:
        with psycopg.connect(
            make_url(PG_ADMIN_URL).set(drivername="postgresql").render_as_string(False),
            connect_timeout=2,
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@contextmanager
def outage(cluster: Cluster) -> Iterator[Outage]:
    """Stop the server (fast: open sessions are cut, as in a crash of the server), run the
    body, then start it again and wait until it accepts connections, whatever happened."""
    times = Outage()
    try:
        stopped = _ctl(cluster, "stop", "--mode", "fast")
        assert stopped.returncode == 0, f"pg_ctlcluster stop failed: {stopped.stderr}"
        times.stopped_at = time.monotonic()
        yield times
    finally:
        times.starting_at = time.monotonic()
        started = _ctl(cluster, "start")
        # Exit code 2: already running (the stop failed); anything else is checked below.
        wait_until(accepts_connections, timeout=BACK_TIMEOUT, what="PostgreSQL to be back")
        assert started.returncode in (0, 2), f"pg_ctlcluster start: {started.stderr}"
