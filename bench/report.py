"""The benchmark's table and chart, and small helpers of the run."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import Timing

DatabaseContext = AbstractContextManager[str]


@dataclass(frozen=True)
class Row:
    what: str
    broker: str
    wlmscpfs: str = ""
    ratio: str = ""
    target: str = ""


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _p50_p95(timing: Timing) -> str:
    return f"{_ms(timing.p(50))} / {_ms(timing.p(95))} ms"


def latency_row(what: str, broker: Timing, dcmtk: Timing | None, target: str) -> Row:
    """p50 / p95; the ratio is how many times faster the broker's median is."""
    label = f"{what} ({broker.matches} matches)" if broker.matches else what
    if dcmtk is None:
        return Row(label, _p50_p95(broker), target=f"≤ {target}" if target else "")
    ratio = dcmtk.p(50) / broker.p(50)
    note = "" if dcmtk.matches == broker.matches else f" (wlmscpfs {dcmtk.matches} matches)"
    return Row(label + note, _p50_p95(broker), _p50_p95(dcmtk), f"{ratio:.1f}×", f"≤ {target}")


def crowd_row(what: str, broker: Timing, dcmtk: Timing) -> Row:
    def cell(t: Timing) -> str:
        return f"{t.rate:.0f} queries/s, p50 {_ms(t.p(50))} ms, {t.refused} refused"

    return Row(what, cell(broker), cell(dcmtk), f"{broker.rate / dcmtk.rate:.1f}×", "≥ 100/s")


def throughput_row(what: str, timing: Timing, target: str) -> Row:
    refused = f", {timing.refused} refused" if timing.refused else ""
    return Row(what, f"{timing.rate:.0f}/s (p50 {_ms(timing.p(50))} ms{refused})", target=target)


def rate_row(what: str, count: int, seconds: float, target: str) -> Row:
    return Row(what, f"{seconds:.1f} s ({count / seconds:.0f} files/s)", target=target)


def value_row(what: str, value: float, unit: str) -> Row:
    return Row(what, f"{value:.0f} {unit}")


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@contextmanager
def sqlite_database(work: Path) -> Iterator[str]:
    yield f"sqlite:///{work / 'hl7.db'}"


def create_stations(url: str) -> None:
    """CT and CR stations, so the benchmark's orders route (HL7 carries no AE title)."""
    from app.db import create_db_engine, create_session_factory, session_scope
    from app.domain.actor import Actor
    from app.domain.status import AuditSource
    from app.services import stations

    engine = create_db_engine(url)
    actor = Actor(AuditSource.CLI, "bench")
    with session_scope(create_session_factory(engine)) as session:
        for modality in ("CT", "CR"):
            data = stations.StationData(modality, "BENCH")
            stations.create_station(session, data=data, actor=actor)
    engine.dispose()


def render(rows: list[Row], chart: dict[int, tuple[float, float]]) -> str:
    lines = [
        f"mwl-broker benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "",
        "| what | broker | wlmscpfs | broker vs wlmscpfs | target |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.what} | {r.broker} | {r.wlmscpfs} | {r.ratio} | {r.target} |" for r in rows]
    lines += ["", "Station query p50 by worklist size (ms):", ""]
    lines += ["| steps | broker | wlmscpfs |", "|---|---|---|"]
    lines += [f"| {size:,} | {b:.1f} | {d:.1f} |" for size, (b, d) in sorted(chart.items())]
    return "\n".join(lines) + "\n"


def chart(points: dict[int, tuple[float, float]], path: Path) -> None:
    """Station-query p50 against worklist size, both servers, log-log (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(points)
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    axes.plot(sizes, [points[s][0] for s in sizes], "o-", label="mwl-broker")
    axes.plot(sizes, [points[s][1] for s in sizes], "s--", label="DCMTK wlmscpfs")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("scheduled steps in the worklist")
    axes.set_ylabel("station query, whole association, p50 (ms)")
    axes.set_title("C-FIND latency against worklist size")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
