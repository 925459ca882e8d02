"""MPPS pairs and REST reads against the broker as users run it (``mwl-broker serve``).

    .venv/bin/python bench/mwl_find.py --items 10000 --broker-only --db /tmp/b10k.db --queries 1
    .venv/bin/python bench/mpps_rest.py --db /tmp/b10k.db [--source /tmp/old-checkout]

Copies the database loaded by ``bench/mwl_find.py`` (``--db``), serves it, then times N-CREATE +
N-SET pairs (IN PROGRESS, then COMPLETED, each naming one scheduled step) over one association,
and REST reads with one keep-alive client: ``GET /api/mwlitems`` (one patient) and
``GET /api/mpps``. Both clients set TCP_NODELAY, as DCMTK and browsers do. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dicom_scp.tcp import HANDLERS as NODELAY  # noqa: E402

MPPS = ModalityPerformedProcedureStep


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def n_create(index: int) -> Dataset:
    ref = Dataset()
    ref.StudyInstanceUID = f"1.2.826.0.1.3680043.10.9999.{index}"
    ref.ScheduledProcedureStepID = f"S{index}"
    ref.AccessionNumber = f"ACC{index}"
    ref.RequestedProcedureID = f"RP{index}"
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = [ref]
    ds.PatientID = f"P{index % 500}"
    ds.PerformedProcedureStepID = f"PPS{index}"
    ds.PerformedStationAETitle = "ST1"
    ds.PerformedProcedureStepStartDate = "20261201"
    ds.PerformedProcedureStepStartTime = "083500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    return ds


def n_set() -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20261201"
    ds.PerformedProcedureStepEndTime = "090000"
    return ds


def time_mpps(port: int, pairs: int) -> float:
    """MPPS pairs per second over one association."""
    ae = AE(ae_title="ST1")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER", evt_handlers=list(NODELAY))
    assert assoc.is_established
    start = time.perf_counter()
    for index in range(pairs):
        uid = f"1.2.826.0.1.3680043.10.8888.{os.getpid()}.{index}"
        status, _ = assoc.send_n_create(n_create(index), MPPS, uid)
        assert status.Status == 0, hex(status.Status)
        status, _ = assoc.send_n_set(n_set(), MPPS, uid)
        assert status.Status == 0, hex(status.Status)
    elapsed = time.perf_counter() - start
    assoc.release()
    return pairs / elapsed


class NoDelayTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        opts = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        super().__init__(socket_options=opts)


def time_rest(base: str, token: str, path: str, repeat: int) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, transport=NoDelayTransport()) as client:
        samples = []
        count = 0
        for _ in range(repeat):
            start = time.perf_counter()
            response = client.get(path)
            samples.append(time.perf_counter() - start)
            response.raise_for_status()
            count = len(response.json())
    return statistics.median(samples), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True, help="made by bench/mwl_find.py")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--source", type=Path, help="run the broker of this source tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "broker.db"
        shutil.copy(args.db, db)
        url = f"sqlite:///{db}"
        dicom_port, http_port, hl7_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "BROKER_DATABASE_URL": url,
            "BROKER_DICOM_PORT": str(dicom_port),
            "BROKER_HTTP_PORT": str(http_port),
            "BROKER_HL7_PORT": str(hl7_port),
            "BROKER_BIND_HOST": "127.0.0.1",
            "BROKER_HTTP_BIND_HOST": "127.0.0.1",
            "BROKER_HL7_BIND_HOST": "127.0.0.1",
            "BROKER_LOG_LEVEL": "WARNING",
        }
        command = [str(Path(sys.executable).parent / "mwl-broker")]
        if args.source is not None:
            env["PYTHONPATH"] = str(args.source)
            command = [sys.executable, "-m", "app.cli"]
        made = subprocess.run(
            [*command, "token", "add", "bench", "--role", "admin"],
            env=env,
            cwd=args.source,
            capture_output=True,
            text=True,
            check=True,
        )
        token = made.stdout.strip()
        broker = subprocess.Popen([*command, "serve"], env=env, cwd=args.source)
        base = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            rate = time_mpps(dicom_port, args.pairs)
            print(f"MPPS N-CREATE+N-SET pairs/s   {rate:8.1f}")
            for path in ("/api/mwlitems?PatientID=P42&limit=8", "/api/mpps?limit=100"):
                median, count = time_rest(base, token, path, args.queries)
                print(f"GET {path:<38} {count:>4} items {median * 1000:8.2f} ms")
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=15)


if __name__ == "__main__":
    main()
