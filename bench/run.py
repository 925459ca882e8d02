"""``make bench``: the broker's real services beside DCMTK wlmscpfs, in one run.

    .venv/bin/python -m bench.run [--sizes 1000,10000,100000] [--quick]

For every worklist size the same ``.wl`` files (bench/workload.py, fixed seed) are imported into
a fresh SQLite broker with ``mwl-broker import-wl`` (timed) and served by ``wlmscpfs``; a
modality-like raw-socket client (bench/dimse.py) times whole associations. At the table size
(10,000 steps) it also measures the broad query, 20 modalities at once, MPPS pairs and the REST
search; HL7 intake is measured on SQLite and PostgreSQL over one and four connections. It prints
one table and writes it with a chart of latency against worklist size to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import measure, report  # noqa: E402
from bench.servers import (  # noqa: E402
    BROKER_AE,
    WLMSCPFS_AE,
    Broker,
    peak_rss_mib,
    postgres_database,
    wlmscpfs,
)
from bench.workload import steps, worklist_folder  # noqa: E402


@dataclass
class Results:
    rows: list[report.Row] = field(default_factory=list)
    chart: dict[int, tuple[float, float]] = field(default_factory=dict)  # size -> p50 ms
    crowd_dcmtk: measure.Timing | None = None  # wlmscpfs's 20 modalities, for the ratio


def _find_rows(
    results: Results, size: int, broker: int, dcmtk: int, queries: int, table: bool
) -> None:
    dcmtk_queries = queries if size <= 20000 else max(3, queries // 10)
    station_b = measure.sequential_finds(broker, BROKER_AE, measure.station_query(), queries)
    station_d = measure.sequential_finds(dcmtk, WLMSCPFS_AE, measure.station_query(), dcmtk_queries)
    results.chart[size] = (station_b.p(50) * 1000, station_d.p(50) * 1000)
    results.rows.append(
        report.latency_row(f"station query, {size:,} steps", station_b, station_d, "25 ms")
    )
    if not table:
        return
    broad_b = measure.sequential_finds(broker, BROKER_AE, measure.broad_query(), queries)
    broad_d = measure.sequential_finds(dcmtk, WLMSCPFS_AE, measure.broad_query(), queries)
    results.rows.append(
        report.latency_row(f"broad query, {size:,} steps", broad_b, broad_d, "150 ms")
    )
    reference = measure.pynetdicom_finds(broker, BROKER_AE, measure.station_query(), queries)
    results.rows.append(
        report.latency_row("station query, pynetdicom SCU (reference)", reference, None, "")
    )
    crowd_b = _crowd(broker, queries)
    identifiers = [measure.station_query(station=n) for n in range(20)]
    crowd_d = measure.concurrent_finds(dcmtk, WLMSCPFS_AE, identifiers, 20, max(5, queries // 2))
    results.crowd_dcmtk = crowd_d
    results.rows.append(report.crowd_row("20 modalities at once", crowd_b, crowd_d))


def _crowd(port: int, queries: int) -> measure.Timing:
    """20 modalities at once, each on its own station, in steady state: a first round warms
    every process's caches (which process serves which station is the kernel's choice), the
    second is timed."""
    identifiers = [measure.station_query(station=n) for n in range(20)]
    measure.concurrent_finds(port, BROKER_AE, identifiers, 20, 3)
    return measure.concurrent_finds(port, BROKER_AE, identifiers, 20, max(5, queries))


def _per_size(results: Results, args: argparse.Namespace, size: int, work: Path) -> None:
    folder = worklist_folder(args.cache, size, args.seed)
    broker = Broker(work, f"sqlite:///{work / 'broker.db'}")
    broker.cli("db", "upgrade")
    seconds = report.timed(lambda: broker.cli("import-wl", str(folder)))
    results.rows.append(report.rate_row(f"import-wl of {size:,} files", size, seconds, ""))
    table = size == args.table_size
    with broker.serving() as process, wlmscpfs(folder.parent) as dcmtk:
        _find_rows(results, size, broker.ports["dicom"], dcmtk, args.queries, table)
        if table:
            _mpps_and_rest(results, broker, size, args)
        results.rows.append(
            report.value_row(
                f"broker peak memory, {size:,} steps", peak_rss_mib(process.pid), "MiB"
            )
        )
    if table:
        _crowd_with_workers(results, broker, args, workers=2)


def _crowd_with_workers(
    results: Results, broker: Broker, args: argparse.Namespace, workers: int
) -> None:
    """The 20 modalities again, against ``BROKER_DICOM_WORKERS=workers`` processes."""
    with broker.serving(dicom_workers=workers):
        crowd = _crowd(broker.ports["dicom"], args.queries)
    label = f"20 modalities at once, {workers} DICOM workers"
    assert results.crowd_dcmtk is not None
    results.rows.append(report.crowd_row(label, crowd, results.crowd_dcmtk))


def _mpps_and_rest(results: Results, broker: Broker, size: int, args: argparse.Namespace) -> None:
    _mpps(results, broker, size, args)
    token = _token(broker)
    path = "/api/mwlitems?ScheduledStationAETitle=ST4&ScheduledProcedureStepStartDate=20261206"
    rest = measure.rest_search(broker.ports["http"], token, path, args.queries * 3)
    results.rows.append(report.latency_row("REST search, keep-alive", rest, None, "10 ms"))


def _mpps(results: Results, broker: Broker, size: int, args: argparse.Namespace) -> None:
    """Distinct steps for the raw client and the pynetdicom reference: each pair moves its
    step SCHEDULED -> STARTED -> COMPLETED, as a modality's would."""
    count = args.mpps_pairs
    chosen = steps(size, args.seed)[: 2 * count]
    port = broker.ports["dicom"]
    pairs = measure.mpps_pairs(port, BROKER_AE, chosen[:count])
    results.rows.append(report.throughput_row("MPPS N-CREATE + N-SET pairs", pairs, "100/s"))
    reference = measure.pynetdicom_mpps_pairs(port, BROKER_AE, chosen[count:])
    label = "MPPS pairs, pynetdicom SCU (reference)"
    results.rows.append(report.throughput_row(label, reference, ""))


def _mpps_only(args: argparse.Namespace) -> Results:
    """``--mpps-only``: the MPPS rows alone, ``--mpps-runs`` times on fresh steps of one broker
    (SQLite, ``--table-size`` steps): a quick before/after of the MPPS path."""
    results = Results()
    size = args.table_size
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work, f"sqlite:///{work / 'broker.db'}")
        broker.cli("db", "upgrade")
        broker.cli("import-wl", str(worklist_folder(args.cache, size, args.seed)))
        count = args.mpps_pairs
        every = steps(size, args.seed)
        with broker.serving("dicom"):
            port = broker.ports["dicom"]
            for run in range(args.mpps_runs):
                chosen = every[run * count : (run + 1) * count]
                pairs = measure.mpps_pairs(port, BROKER_AE, chosen)
                label = f"MPPS N-CREATE + N-SET pairs, run {run + 1}"
                results.rows.append(report.throughput_row(label, pairs, "100/s"))
            chosen = every[args.mpps_runs * count : (args.mpps_runs + 1) * count]
            reference = measure.pynetdicom_mpps_pairs(port, BROKER_AE, chosen)
            label = "MPPS pairs, pynetdicom SCU (reference)"
            results.rows.append(report.throughput_row(label, reference, ""))
    return results


def _token(broker: Broker) -> str:
    done = broker.cli("token", "add", "bench", "--role", "viewer")
    return done.stdout.strip().splitlines()[-1].strip()


def _hl7(results: Results, args: argparse.Namespace) -> None:
    messages = [measure.hl7_order(n) for n in range(args.hl7_messages)]
    targets = {"SQLite": "500/s", "PostgreSQL": "300/s"}
    for name in ("SQLite", "PostgreSQL"):
        for connections in (1, 4):
            with tempfile.TemporaryDirectory() as tmp, _database(name, Path(tmp)) as url:
                broker = Broker(Path(tmp), url)
                broker.cli("db", "upgrade")
                report.create_stations(url)
                with broker.serving("hl7"):
                    timing = measure.hl7_intake(broker.ports["hl7"], messages, connections)
                label = f"HL7 ORM^O01, {name}, {connections} connection(s)"
                results.rows.append(report.throughput_row(label, timing, targets[name]))


def _database(name: str, work: Path) -> report.DatabaseContext:
    if name == "SQLite":
        return report.sqlite_database(work)
    return postgres_database()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--table-size", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--hl7-messages", type=int, default=1000)
    parser.add_argument("--mpps-pairs", type=int, default=200)
    parser.add_argument("--mpps-only", action="store_true", help="only the MPPS rows (no table)")
    parser.add_argument("--mpps-runs", type=int, default=3, help="with --mpps-only")
    parser.add_argument("--hl7-only", action="store_true", help="only the HL7 rows (no table)")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.table_size, args.queries = "200,1000", 1000, 5
        args.hl7_messages, args.mpps_pairs = 50, 10
    if args.mpps_only:
        for row in _mpps_only(args).rows:
            print(f"{row.what}: {row.broker}")
        return 0
    if args.hl7_only:
        results = Results()
        _hl7(results, args)
        for row in results.rows:
            print(f"{row.what}: {row.broker}")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results = Results()
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            _per_size(results, args, size, Path(tmp))
        print(f"done: {size:,} steps", file=sys.stderr)
    _hl7(results, args)
    text = report.render(results.rows, results.chart)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text, encoding="utf-8")
    report.chart(results.chart, args.out / "latency-by-size.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
