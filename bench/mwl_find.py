"""C-FIND side by side: mwl-broker (as users run it) against DCMTK wlmscpfs, same worklist.

    .venv/bin/python bench/mwl_find.py --items 2000 --queries 50

Loads ``--items`` steps into a fresh SQLite broker and the same items as ``*.wl`` files for
wlmscpfs, then times a broad query (one station, one day) and a patient query over one
association per server, and prints median latencies and the broker/wlmscpfs ratio. Needs DCMTK.
Only loopback traffic; every loop is bounded.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import create_db_engine, create_session_factory, session_scope  # noqa: E402
from app.domain.items import item_from_json  # noqa: E402
from app.domain.status import AuditSource  # noqa: E402
from app.migrations import upgrade  # noqa: E402
from app.services import worklist  # noqa: E402

STATIONS = 20
DAYS = 28


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def item(index: int) -> dict[str, Any]:
    def el(vr: str, value: Any) -> dict[str, Any]:
        return {"vr": vr, "Value": [value]}

    return {
        "00100010": el("PN", {"Alphabetic": f"PATIENT{index % 500}^TEST"}),
        "00100020": el("LO", f"P{index % 500}"),
        "00100030": el("DA", "19700101"),
        "00100040": el("CS", "O"),
        "00080050": el("SH", f"ACC{index}"),
        "0020000D": el("UI", f"1.2.826.0.1.3680043.10.9999.{index}"),
        "00401001": el("SH", f"RP{index}"),
        "00321060": el("LO", "CT HEAD"),
        "00400100": {
            "vr": "SQ",
            "Value": [
                {
                    "00400001": el("AE", f"ST{index % STATIONS}"),
                    "00400002": el("DA", f"202612{index % DAYS + 1:02d}"),
                    "00400003": el("TM", f"{8 + index % 10:02d}0000"),
                    "00080060": el("CS", "CT"),
                    "00400009": el("SH", f"S{index}"),
                    "00400007": el("LO", "CT HEAD"),
                }
            ],
        },
    }


def load(url: str, wl_dir: Path, count: int) -> None:
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    with session_scope(factory) as session:
        for index in range(count):
            data = item_from_json(item(index))
            stored = worklist.upsert_item(session, data=data, source=AuditSource.CLI)
            write_wl(stored.item, wl_dir / f"item{index}.wl")
    engine.dispose()


def write_wl(json_item: dict[str, Any], path: Path) -> None:
    ds = Dataset.from_json(json_item)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)


def wait_echo(port: int, called: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ae = AE()
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if assoc.is_established:
            assoc.release()
            return
        time.sleep(0.1)
    raise SystemExit(f"server on {port} did not come up")


def queries() -> dict[str, Callable[[], Dataset]]:
    def broad() -> Dataset:
        ds = Dataset()
        ds.PatientName = ""
        ds.PatientID = ""
        ds.AccessionNumber = ""
        step = Dataset()
        step.ScheduledStationAETitle = "ST4"
        step.ScheduledProcedureStepStartDate = "20261205"
        step.ScheduledProcedureStepStartTime = ""
        step.Modality = ""
        ds.ScheduledProcedureStepSequence = [step]
        return ds

    def patient() -> Dataset:
        ds = Dataset()
        ds.PatientName = ""
        ds.PatientID = "P42"
        ds.AccessionNumber = ""
        ds.ScheduledProcedureStepSequence = [Dataset()]
        return ds

    return {"station+day": broad, "patient ID": patient}


def time_queries(port: int, called: str, identifier: Dataset, repeat: int) -> tuple[float, int]:
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    samples = []
    matches = 0
    for _ in range(repeat):
        start = time.perf_counter()
        responses = assoc.send_c_find(identifier, ModalityWorklistInformationFind)
        matches = sum(1 for _status, ds in responses if ds is not None)
        samples.append(time.perf_counter() - start)
    assoc.release()
    return statistics.median(samples), matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    if not shutil.which("wlmscpfs"):
        raise SystemExit("wlmscpfs not found: install Debian's dcmtk (make test-deps)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wl_dir = work / "wl" / "BENCH"
        wl_dir.mkdir(parents=True)
        (wl_dir / "lockfile").touch()
        url = f"sqlite:///{work / 'broker.db'}"
        load(url, wl_dir, args.items)
        broker_port, dcmtk_port = free_port(), free_port()
        env = {
            **os.environ,
            "BROKER_DATABASE_URL": url,
            "BROKER_DICOM_PORT": str(broker_port),
            "BROKER_BIND_HOST": "127.0.0.1",
            "BROKER_LOG_LEVEL": "WARNING",
        }
        mwl_broker = str(Path(sys.executable).parent / "mwl-broker")
        broker = subprocess.Popen([mwl_broker, "serve", "--only", "dicom"], env=env)
        dcmtk = subprocess.Popen(
            ["wlmscpfs", "-dfp", str(work / "wl"), str(dcmtk_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_echo(broker_port, "MWLBROKER")
            wait_echo(dcmtk_port, "BENCH")
            print(f"{args.items} items, median of {args.queries} queries per row")
            print(f"{'query':<14}{'matches':>8}{'broker ms':>12}{'wlmscpfs ms':>13}{'ratio':>8}")
            for name, build in queries().items():
                b, bm = time_queries(broker_port, "MWLBROKER", build(), args.queries)
                d, dm = time_queries(dcmtk_port, "BENCH", build(), args.queries)
                print(f"{name:<14}{bm:>8}{b * 1000:>12.2f}{d * 1000:>13.2f}{b / d:>8.2f}")
                if bm != dm:
                    print(f"  note: match counts differ (broker {bm}, wlmscpfs {dm})")
        finally:
            broker.send_signal(signal.SIGTERM)
            dcmtk.terminate()
            broker.wait(timeout=15)
            dcmtk.wait(timeout=15)


if __name__ == "__main__":
    main()
