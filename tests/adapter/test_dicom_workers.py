"""``BROKER_DICOM_WORKERS``: more processes on the same DICOM port (SO_REUSEPORT, Linux).

Which process serves a connection is read from ``/proc``: the server side of an accepted
connection is a socket whose local port is the DICOM port, held by one process's descriptors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from app.runtime import Broker
from app.workers import SETTINGS_ENV, worker_settings
from tests.support.broker import broker_executable
from tests.support.net import free_port, wait_until
from tests.support.settings import make_settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")

ESTABLISHED, LISTEN = "01", "0A"
VERIFICATION = "1.2.840.10008.1.1"


def _sockets_of(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _on_port(port: int, state: str) -> set[int]:
    """Inodes of the IPv4 TCP sockets in ``state`` whose local port is ``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            found.add(int(fields[9]))
    return found


def _listens(pid: int, port: int) -> bool:
    try:
        return bool(_on_port(port, LISTEN) & _sockets_of(pid))
    except FileNotFoundError:
        return False


def _gone(pid: int) -> bool:
    """Exited (a zombie left to a parent that does not reap it counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _associate(port: int) -> Association:
    ae = AE(ae_title="WORKERTEST")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert assoc.is_established
    return assoc


def test_a_worker_gets_its_parents_settings_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every setting survives the trip through the environment (a field that did not, say a
    masked secret, would make the worker serve differently from its parent)."""
    settings = make_settings(
        "postgresql+psycopg://broker:secret@db/mwl",
        tmp_path,
        dicom_workers=2,
        max_associations=7,
        allowed_calling_aes="CT1:find+mpps,MR1",
        remote_aes="PACS@10.0.0.5:104:tls=store+commit",
        tls_cert=str(tmp_path / "cert.pem"),
        tls_key=str(tmp_path / "key.pem"),
        mwl_max_results=50,
    )
    monkeypatch.setenv(SETTINGS_ENV, settings.model_dump_json())
    assert worker_settings() == settings


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[Broker]:
    # One Calling AE holds all 16 associations of the spreading test: the per-AE limit (10 per
    # process) would refuse the 11th whenever the kernel put 11 in one process.
    settings = make_settings(database_url, tmp_path, dicom_workers=2, max_associations_per_ae=0)
    broker = Broker(settings, only="dicom")
    port = broker.start()["dicom"]
    (worker,) = broker.dicom_worker_pids
    wait_until(lambda: _listens(worker, port), what="the worker listens on the DICOM port")
    yield broker
    broker.stop()


def test_the_kernel_spreads_associations_over_both_processes(broker: Broker) -> None:
    port = broker.ports["dicom"]
    (worker,) = broker.dicom_worker_pids
    # 16 at once: all 16 in one process has a chance of 2 in 65,536
    held = [_associate(port) for _ in range(16)]
    try:
        assert all(assoc.send_c_echo().Status == 0 for assoc in held)
        served = _on_port(port, ESTABLISHED)
        assert served & _sockets_of(worker), "the worker served none"
        assert served & _sockets_of(os.getpid()), "the parent served none"
    finally:
        for assoc in held:
            assoc.release()


def test_stop_ends_the_workers(sqlite_url: str, tmp_path: Path) -> None:
    broker = Broker(make_settings(sqlite_url, tmp_path, dicom_workers=3), only="dicom")
    broker.start()
    workers = broker.dicom_worker_pids
    assert len(workers) == 2
    broker.stop()
    assert all(_gone(pid) for pid in workers)


def test_a_worker_that_dies_is_replaced(broker: Broker) -> None:
    (worker,) = broker.dicom_worker_pids
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: broker.dicom_worker_pids != [worker], what="a new worker")
    (replacement,) = broker.dicom_worker_pids
    wait_until(lambda: _listens(replacement, broker.ports["dicom"]), what="it listens")
    assert _associate(broker.ports["dicom"]).send_c_echo().Status == 0


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_workers_die_with_a_killed_broker(sqlite_url: str, tmp_path: Path) -> None:
    """SIGKILL leaves the parent no chance to stop them: the kernel's death signal does."""
    port = free_port()
    env = {
        **os.environ,
        "BROKER_DATABASE_URL": sqlite_url,
        "BROKER_BIND_HOST": "127.0.0.1",
        "BROKER_DICOM_PORT": str(port),
        "BROKER_DICOM_WORKERS": "2",
        "BROKER_STORAGE_DIR": str(tmp_path / "storage"),
    }
    parent = subprocess.Popen(
        [broker_executable(), "serve", "--only", "dicom"], env=env, cwd=tmp_path
    )
    try:
        wait_until(lambda: len(_children(parent.pid)) == 1, what="the worker")
        (worker,) = _children(parent.pid)
        wait_until(lambda: _listens(worker, port), what="the worker listens")
        parent.kill()
        parent.wait()
        wait_until(lambda: _gone(worker), what="the worker to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
