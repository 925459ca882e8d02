"""MPPS pairs of two broker source trees, measured in turns under the same load.

    .venv/bin/python -m bench.compare_mpps --before /tmp/old-tree --after . [--rounds 8]

On a shared machine one run of each, minutes apart, compares the load more than the code. Here
both brokers (each its own source tree on ``PYTHONPATH``, each its own SQLite database with the
same 10,000 imported steps) are up at once and take turns, run by run, on fresh steps, with the
raw-socket client; each run also reports the broker's CPU time per pair (``/proc``), which
depends on the code much more than on the load. A tree is a checkout, e.g.
``git archive <commit> | tar -x -C /tmp/old-tree``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.servers import BROKER_AE, Broker  # noqa: E402
from bench.workload import steps, worklist_folder  # noqa: E402

PAIRS = 200


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args(argv)
    if args.size < PAIRS * (args.rounds + 1):
        parser.error("--size too small for that many rounds")
    folder = worklist_folder(args.cache, args.size, args.seed)
    every = steps(args.size, args.seed)
    rows: dict[str, list[tuple[float, float, float, int]]] = {"before": [], "after": []}
    with ExitStack() as stack:
        brokers = {}
        for name, tree in (("before", args.before), ("after", args.after)):
            work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            broker = Broker(work, f"sqlite:///{work / 'broker.db'}")
            broker.env["PYTHONPATH"] = str(tree.resolve())
            broker.cli("db", "upgrade")
            broker.cli("import-wl", str(folder))
            process = stack.enter_context(broker.serving("dicom"))
            measure.mpps_pairs(broker.ports["dicom"], BROKER_AE, every[:20])  # warm-up
            brokers[name] = (broker.ports["dicom"], process.pid)
        for turn in range(args.rounds):
            chosen = every[PAIRS * (turn + 1) : PAIRS * (turn + 2)]
            order = ("before", "after") if turn % 2 == 0 else ("after", "before")
            for name in order:
                port, pid = brokers[name]
                used = cpu_seconds(pid)
                timing = measure.mpps_pairs(port, BROKER_AE, chosen)
                per_pair = (cpu_seconds(pid) - used) / len(chosen) * 1000
                rows[name].append((timing.rate, timing.p(50) * 1000, per_pair, timing.refused))
    for name, runs in rows.items():
        rates = " ".join(f"{rate:.0f}" for rate, *_ in runs)
        cpus = " ".join(f"{c:.1f}" for _, _, c, _ in runs)
        median_rate = statistics.median(r[0] for r in runs)
        median_cpu = statistics.median(r[2] for r in runs)
        print(f"{name}: pairs/s {rates} (median {median_rate:.0f})")
        print(f"  broker CPU ms/pair {cpus} (median {median_cpu:.1f})")
        print(f"  p50 ms {' '.join(f'{p:.1f}' for _, p, _, _ in runs)}")
        print(f"  refused {sum(r[3] for r in runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
