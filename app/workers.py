"""More processes on the DICOM ports (``BROKER_DICOM_WORKERS``).

One interpreter runs one thread at a time: with twenty modalities querying at once, a single
broker process is bound by its interpreter lock (and by the lock hand-offs between its
association threads) long before the machine is. Every DICOM listener of a broker with
``workers > 1`` binds with ``SO_REUSEPORT``, and the broker starts ``workers - 1`` more
processes that serve the same ports (``mwl-broker dicom-worker``, with the parent's
settings and bound ports); the kernel spreads new connections over all of them. They share the
database as brokers on one database do (``docs/design.md``); the parent alone seeds the remote
AEs, runs storage retention and takes up unfinished storage commitments.

A worker that dies is started again; a worker outlives its parent by no more than a signal
(``PR_SET_PDEATHSIG``), and it stops if its parent is gone before it could ask for that.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from app.config import Settings

LOG = logging.getLogger(__name__)

# The parent's process id and settings (JSON, with its bound ports), read by a worker.
PARENT_ENV = "MWL_BROKER_DICOM_WORKER_OF"
SETTINGS_ENV = "MWL_BROKER_DICOM_WORKER_SETTINGS"
RESTART_DELAY = 1.0  # seconds between a worker's death and its replacement
MAX_BACKOFF = 60.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WORKER_MAIN = "from app.cli import main; raise SystemExit(main(['dicom-worker']))"


def worker_settings() -> Settings | None:
    """In a worker process: the parent's settings (its ports bound); elsewhere ``None``."""
    raw = os.environ.get(SETTINGS_ENV)
    return Settings.model_validate_json(raw) if raw is not None else None


def bind_to_parent() -> bool:
    """In a worker process: die with the parent. False when the parent is already gone."""
    parent = int(os.environ[PARENT_ENV])
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent


@dataclass
class DicomWorkers:
    """``count`` worker processes serving ``settings``'s DICOM ports beside this one."""

    settings: Settings
    count: int
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _watch: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        with self._lock:
            self._processes = [self._spawn() for _ in range(self.count)]
        self._watch = threading.Thread(target=self._watch_loop, name="dicom-workers", daemon=True)
        self._watch.start()
        LOG.info("DICOM workers started: pids %s", ", ".join(map(str, self.pids())))

    def pids(self) -> list[int]:
        with self._lock:
            return [process.pid for process in self._processes]

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                LOG.warning("DICOM worker %d did not stop in time: killed", process.pid)
                process.kill()
                process.wait()
        if self._watch is not None:
            self._watch.join(timeout=STOP_TIMEOUT)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            PARENT_ENV: str(os.getpid()),
            SETTINGS_ENV: self.settings.model_dump_json(),
        }
        return subprocess.Popen([sys.executable, "-c", _WORKER_MAIN], env=env)

    def _watch_loop(self) -> None:
        """Replace dead workers; one that keeps dying right away (a port it cannot bind, a
        setting it refuses) is retried ever more slowly, up to once every ``MAX_BACKOFF``."""
        backoff = RESTART_DELAY
        while not self._stopping.wait(backoff):
            with self._lock:
                dead = [i for i, p in enumerate(self._processes) if p.poll() is not None]
                for index in dead:
                    if self._stopping.is_set():
                        return
                    process = self._processes[index]
                    LOG.error(
                        "DICOM worker %d exited with %s: starting another",
                        process.pid,
                        process.returncode,
                    )
                    self._processes[index] = self._spawn()
            backoff = min(backoff * 2, MAX_BACKOFF) if dead else RESTART_DELAY
