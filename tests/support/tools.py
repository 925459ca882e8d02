"""Independent peers the interop tests drive: DCMTK tools and ``mllp_send``.

A missing tool skips the test locally and fails it in CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.support.ci import IN_CI

TOOL_TIMEOUT = 60.0


def require_tool(name: str) -> str:
    """The path of a DCMTK (or other) binary; skip without it, or fail when ``CI=true``."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (DCMTK is needed for the interop tests)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def mllp_send_executable() -> Path:
    candidate = Path(sys.executable).parent / "mllp_send"
    if not candidate.is_file():
        message = "mllp_send is missing: install the dev extra (the PyPI package hl7)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return candidate


def run_tool(args: Sequence[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )


def openssl_exchange(args: Sequence[str], data: bytes, *, until: bytes) -> bytes:
    """Run ``openssl s_client`` (``args`` after it), send ``data`` and return what came back
    up to and including ``until``, then end it (``-quiet`` keeps it open after input ends)."""
    command = [require_tool("openssl"), "s_client", "-quiet", *args]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    received = b""
    deadline = time.monotonic() + TOOL_TIMEOUT
    try:
        process.stdin.write(data)
        process.stdin.flush()
        while until not in received and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                received += chunk
    finally:
        process.kill()
        _, errors = process.communicate()
    assert until in received, f"openssl s_client got {received!r}; stderr: {errors!r}"
    return received


def echo(port: int, called_ae: str, *, tls: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """``echoscu``; ``tls`` are DCMTK's TLS options (e.g. ``+tls key cert +cf ca``)."""
    args = [require_tool("echoscu"), *tls, "-aec", called_ae, "127.0.0.1", str(port)]
    return run_tool(args)


@dataclass
class FindResult:
    returncode: int
    output: str  # stdout + stderr of findscu
    responses: list[Dataset]


def findscu(
    port: int,
    called_ae: str,
    out_dir: Path,
    *,
    keys: Sequence[str] = (),
    query_file: Path | None = None,
    debug: bool = False,
    calling_ae: str | None = None,
    model: str = "-W",
    tls: Sequence[str] = (),
) -> FindResult:
    """Run ``findscu -W -X`` and read the extracted responses (``rsp0001.dcm``...) in order.

    ``model`` ``-S`` or ``-P`` queries the Study or Patient Root Q/R model instead of ``-W``;
    ``debug`` (``-d``) makes findscu print every response's DIMSE status and status detail;
    ``calling_ae`` is findscu's own AE title (``-aet``; DCMTK's default is FINDSCU); ``tls``
    are DCMTK's TLS options.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [require_tool("findscu"), "-d" if debug else "-v", model, "-X", "-od", str(out_dir)]
    args += [*tls, "-aec", called_ae]
    if calling_ae is not None:
        args += ["-aet", calling_ae]
    for key in keys:
        args += ["-k", key]
    args += ["127.0.0.1", str(port)]
    if query_file is not None:
        args.append(str(query_file))
    done = run_tool(args)
    responses: list[Dataset] = [dcmread(p) for p in sorted(out_dir.glob("rsp*.dcm"))]
    return FindResult(done.returncode, done.stdout + done.stderr, responses)


def dimse_statuses(output: str) -> list[int]:
    """The DIMSE status of each C-FIND response in ``findscu -d`` output."""
    return [int(code, 16) for code in re.findall(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", output)]


def dump2dcm(dump: Path, target: Path) -> Path:
    done = run_tool([require_tool("dump2dcm"), str(dump), str(target)])
    assert done.returncode == 0, done.stderr
    return target
