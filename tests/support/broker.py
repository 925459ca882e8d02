"""The broker as users run it: ``mwl-broker serve`` as a subprocess, configured only by
``BROKER_*`` environment variables, on free ports and its own SQLite file (or a given database);
readiness is polled on ``/api/health``; SIGTERM must stop it with exit code 0, SIGKILL plays a
crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, wait_until
from tests.support.tools import TOOL_TIMEOUT, require_tool

BROKER_AE = "MWLBROKER"
STOP_TIMEOUT = 20.0


def broker_executable() -> str:
    """``mwl-broker`` of the interpreter running the tests (the venv's console script)."""
    candidate = Path(sys.executable).parent / "mwl-broker"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("mwl-broker", path=str(Path(sys.executable).parent)) or shutil.which(
        "mwl-broker"
    )
    if found is None:
        pytest.fail("the mwl-broker console script is not installed in this environment")
    return found


@dataclass
class BrokerProcess:
    """One ``mwl-broker serve`` subprocess and the environment that configures it."""

    workdir: Path
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    hl7_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    token: str = ""  # an admin API token, made with `mwl-broker token add` before serving
    database: str = ""  # a database URL (PostgreSQL); default: its own SQLite file
    extra_env: dict[str, str] = field(default_factory=dict)  # more BROKER_* settings (e.g. TLS)

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.workdir / 'b.db'}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def headers(self) -> dict[str, str]:
        """Authorization for the REST API (an admin token)."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        env.update(
            BROKER_DATABASE_URL=self.database_url,
            BROKER_DICOM_PORT=str(self.dicom_port),
            BROKER_HTTP_PORT=str(self.http_port),
            BROKER_HL7_PORT=str(self.hl7_port),
            BROKER_BIND_HOST="127.0.0.1",
            BROKER_AE_TITLE=BROKER_AE,
            BROKER_STORAGE_DIR=str(self.workdir / "storage"),
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``mwl-broker <args>`` with this broker's configuration (cwd: the work dir)."""
        return subprocess.run(
            [broker_executable(), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def add_station(self, modality: str = "CT", ae_title: str = "CT01") -> None:
        """Route orders of ``modality`` to ``ae_title`` (an order without a station is AE)."""
        response = httpx.post(
            f"{self.base_url}/api/stations",
            json={"modality": modality, "ae_title": ae_title},
            headers=self.headers,
            timeout=10.0,
        )
        assert response.status_code == 201, response.text

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError("exited")  # wait_until swallows it; the check below reports
        return httpx.get(f"{self.base_url}/api/health", timeout=2.0).status_code == 200

    def start(self) -> None:
        """Migrate, make an admin token, then serve (see :meth:`serve`)."""
        upgraded = self.cli("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        made = self.cli("token", "add", f"interop-{self.http_port}", "--role", "admin")
        assert made.returncode == 0, made.stderr
        self.token = made.stdout.strip()
        self.serve()

    def serve(self) -> None:
        """Start ``mwl-broker serve`` (again, after :meth:`kill`) and wait until it is healthy.

        The log is appended to, so that it tells the story across restarts."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [broker_executable(), "serve"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._healthy, timeout=30.0, what="the broker's /api/health")
        except AssertionError:
            self.stop()
            raise AssertionError(f"the broker did not become healthy:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit code (killed after a timeout: then -9)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def running_broker(
    workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[BrokerProcess]:
    """Start a broker, hand it out, then stop it and require a clean exit (code 0)."""
    require_tool("echoscu")
    workdir.mkdir(parents=True, exist_ok=True)
    broker = BrokerProcess(workdir, extra_env=dict(extra_env or {}))
    broker.start()
    yield broker
    code = broker.stop()
    assert code == 0, f"mwl-broker exited with {code} on SIGTERM:\n{broker.log()}"
