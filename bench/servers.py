"""The servers under test, started as users run them: ``mwl-broker serve`` and ``wlmscpfs``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.dimse import RELEASE_RQ, associate_rq, read_pdu

BROKER_AE = "MWLBROKER"
WLMSCPFS_AE = "BENCH"  # wlmscpfs answers for any called AE; the folder name is the AE
STARTUP_TIMEOUT = 60.0
PG_ADMIN_URL = os.environ.get(
    "MWL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_executable() -> str:
    return str(Path(sys.executable).parent / "mwl-broker")


def associates(port: int, called: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(associate_rq(called, "BENCHSCU"))
            kind, _ = read_pdu(sock)
            if kind == 0x02:
                sock.sendall(RELEASE_RQ)
                read_pdu(sock)
            return kind == 0x02
    except OSError:
        return False


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up within {STARTUP_TIMEOUT:.0f} s")


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has used."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Broker:
    """One ``mwl-broker`` configuration: a database and free ports, in a work folder."""

    workdir: Path
    database_url: str

    def __post_init__(self) -> None:
        self.ports = {"dicom": free_port(), "hl7": free_port(), "http": free_port()}
        self.env = {
            **os.environ,
            "BROKER_DATABASE_URL": self.database_url,
            "BROKER_BIND_HOST": "127.0.0.1",
            "BROKER_DICOM_PORT": str(self.ports["dicom"]),
            "BROKER_HL7_PORT": str(self.ports["hl7"]),
            "BROKER_HTTP_PORT": str(self.ports["http"]),
            "BROKER_LOG_LEVEL": "WARNING",
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [broker_executable(), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 1):
            raise SystemExit(f"mwl-broker {args[0]} failed: {done.stderr[-2000:]}")
        return done

    @contextmanager
    def serving(self, *only: str, dicom_workers: int = 1) -> Iterator[subprocess.Popen[bytes]]:
        command = [broker_executable(), "serve", *(("--only", only[0]) if len(only) == 1 else ())]
        log = (self.workdir / "broker.log").open("ab")
        env = {**self.env, "BROKER_DICOM_WORKERS": str(dicom_workers)}
        process = subprocess.Popen(command, env=env, cwd=self.workdir, stdout=log, stderr=log)
        try:
            if not only or "dicom" in only:
                wait_until(lambda: associates(self.ports["dicom"], BROKER_AE), "the broker")
                port = self.ports["dicom"]
                wait_until(lambda: listeners_on(port) >= dicom_workers, "the DICOM workers")
            else:
                port = self.ports[only[0]]
                wait_until(lambda: _connects(port), f"the broker's {only[0]} listener")
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def listeners_on(port: int) -> int:
    """How many sockets listen on ``port`` (one per DICOM worker: SO_REUSEPORT), Linux."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for fields in map(str.split, lines)
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
    )


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def wlmscpfs(folder_root: Path) -> Iterator[int]:
    """DCMTK's worklist server on ``folder_root`` (one sub-folder per AE), TCP_NODELAY on: its
    best setting."""
    if shutil.which("wlmscpfs") is None:
        raise SystemExit("wlmscpfs not found: install Debian's dcmtk (make test-deps)")
    port = free_port()
    process = subprocess.Popen(
        ["wlmscpfs", "-dfp", str(folder_root), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: associates(port, WLMSCPFS_AE), "wlmscpfs")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    name = f"mwl_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
