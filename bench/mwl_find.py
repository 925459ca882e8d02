"""C-FIND side by side: mwl-broker (as users run it) against DCMTK wlmscpfs, same worklist.

    .venv/bin/python bench/mwl_find.py --items 2000 --queries 50
    .venv/bin/python bench/mwl_find.py --items 10000 --broker-only --db /tmp/b10k.db
    .venv/bin/python bench/mwl_find.py --items 10000 --broker-only --db /tmp/b10k.db \
        --source /tmp/old-checkout      # the same database served by another source tree

Loads ``--items`` steps into a fresh SQLite broker and the same items as ``*.wl`` files for
wlmscpfs, then times a broad query (one station, one day) and a patient query over one
association per server, and prints median latencies and the broker/wlmscpfs ratio. Needs DCMTK.
Only loopback traffic; every loop is bounded. ``--broker-only`` skips wlmscpfs (and its files);
``--db`` keeps the loaded database for the next run (loaded only when missing); ``--source``
runs the broker of another source tree (``python -m app.cli`` there), for before/after runs.
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
from app.domain.actor import Actor  # noqa: E402
from app.domain.items import item_from_json  # noqa: E402
from app.domain.status import AuditSource  # noqa: E402
from app.migrations import upgrade  # noqa: E402
from app.services import worklist  # noqa: E402
from dicom_scp.tcp import HANDLERS as NODELAY  # noqa: E402

STATIONS = 20
DAYS = 28
MODALITIES = ("CT", "MR", "US", "CR", "DX", "NM")


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
                    "00080060": el("CS", MODALITIES[index % len(MODALITIES)]),
                    "00400009": el("SH", f"S{index}"),
                    "00400007": el("LO", "CT HEAD"),
                }
            ],
        },
    }


def load(url: str, wl_dir: Path | None, count: int) -> None:
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    actor = Actor(AuditSource.CLI, "bench")
    with session_scope(factory) as session:
        for index in range(count):
            data = item_from_json(item(index))
            stored = worklist.upsert_item(session, data=data, actor=actor)
            if wl_dir is not None:
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

    def modality_week() -> Dataset:
        ds = Dataset()
        ds.PatientName = ""
        ds.PatientID = ""
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.AccessionNumber = ""
        ds.StudyInstanceUID = ""
        ds.RequestedProcedureID = ""
        ds.RequestedProcedureDescription = ""
        step = Dataset()
        step.ScheduledStationAETitle = ""
        step.ScheduledProcedureStepStartDate = "20261201-20261207"
        step.ScheduledProcedureStepStartTime = ""
        step.Modality = "MR"
        step.ScheduledProcedureStepID = ""
        step.ScheduledProcedureStepDescription = ""
        ds.ScheduledProcedureStepSequence = [step]
        return ds

    def nothing() -> Dataset:
        ds = patient()
        ds.PatientID = "NOBODY"
        return ds

    return {
        "station+day": broad,
        "patient ID": patient,
        "modality+week": modality_week,
        "no match": nothing,
    }


def time_queries(port: int, called: str, identifier: Dataset, repeat: int) -> tuple[float, int]:
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(ModalityWorklistInformationFind)
    # The client side without Nagle too (as DCMTK's findscu): the request's second PDU must
    # not wait on the server's delayed ACK, or every query measures that wait.
    assoc = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=list(NODELAY))
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


def time_findscu(port: int, called: str, identifier: Dataset, repeat: int) -> tuple[float, int]:
    """Per query over one association with DCMTK's findscu (``--repeat``), whose client side
    costs far less per response than pynetdicom's: (run with repeat+1 - run with 1) / repeat,
    so process start and association set-up drop out. Quiet runs are timed (findscu prints
    every response otherwise); one verbose run counts the matches."""
    with tempfile.TemporaryDirectory() as tmp:
        query = Path(tmp) / "query.dcm"
        write_wl(identifier.to_json_dict(), query)

        def run(times: int, *flags: str) -> tuple[float, str]:
            start = time.perf_counter()
            done = subprocess.run(
                [
                    "findscu",
                    "-W",
                    *flags,
                    "--repeat",
                    str(times),
                    "-aec",
                    called,
                    "127.0.0.1",
                    str(port),
                    str(query),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            return time.perf_counter() - start, done.stdout + done.stderr

        matches = run(1, "-v")[1].count("(Pending)")
        once = min(run(1, "-q")[0] for _ in range(3))
        many = run(repeat + 1, "-q")[0]
        return max(many - once, 0.0) / repeat, matches


def start_broker(url: str, port: int, source: Path | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BROKER_DATABASE_URL": url,
        "BROKER_DICOM_PORT": str(port),
        "BROKER_BIND_HOST": "127.0.0.1",
        "BROKER_LOG_LEVEL": "WARNING",
    }
    if source is None:
        command = [str(Path(sys.executable).parent / "mwl-broker")]
    else:
        env["PYTHONPATH"] = str(source)
        command = [sys.executable, "-m", "app.cli"]
    return subprocess.Popen([*command, "serve", "--only", "dicom"], env=env, cwd=source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--broker-only", action="store_true", help="no wlmscpfs column")
    parser.add_argument("--db", type=Path, help="SQLite file to keep (loaded when missing)")
    parser.add_argument("--source", type=Path, help="run the broker of this source tree")
    parser.add_argument(
        "--client",
        choices=("pynetdicom", "findscu"),
        default="pynetdicom",
        help="the SCU that times the queries (findscu: DCMTK, --repeat on one association)",
    )
    args = parser.parse_args()
    if not args.broker_only and not shutil.which("wlmscpfs"):
        raise SystemExit("wlmscpfs not found: install Debian's dcmtk (make test-deps)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wl_dir = None if args.broker_only else work / "wl" / "BENCH"
        if wl_dir is not None:
            wl_dir.mkdir(parents=True)
            (wl_dir / "lockfile").touch()
        db = args.db or work / "broker.db"
        url = f"sqlite:///{db}"
        if wl_dir is not None or not db.exists():
            load(url, wl_dir, args.items)
        broker_port, dcmtk_port = free_port(), free_port()
        broker = start_broker(url, broker_port, args.source)
        dcmtk = None
        if wl_dir is not None:
            dcmtk = subprocess.Popen(
                ["wlmscpfs", "-dfp", str(work / "wl"), str(dcmtk_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            wait_echo(broker_port, "MWLBROKER")
            if dcmtk is not None:
                wait_echo(dcmtk_port, "BENCH")
            print(f"{args.items} items, median of {args.queries} queries per row")
            print(f"{'query':<14}{'matches':>8}{'broker ms':>12}{'wlmscpfs ms':>13}{'ratio':>8}")
            for name, build in queries().items():
                timer = time_findscu if args.client == "findscu" else time_queries
                b, bm = timer(broker_port, "MWLBROKER", build(), args.queries)
                if dcmtk is None:
                    print(f"{name:<14}{bm:>8}{b * 1000:>12.2f}")
                    continue
                d, dm = timer(dcmtk_port, "BENCH", build(), args.queries)
                print(f"{name:<14}{bm:>8}{b * 1000:>12.2f}{d * 1000:>13.2f}{b / d:>8.2f}")
                if bm != dm:
                    print(f"  note: match counts differ (broker {bm}, wlmscpfs {dm})")
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=15)
            if dcmtk is not None:
                dcmtk.terminate()
                dcmtk.wait(timeout=15)


if __name__ == "__main__":
    main()
