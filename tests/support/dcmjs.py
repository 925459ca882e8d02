"""dcmjs-dimse (npm), an independent DICOM peer: where its scripts live and the node binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ci import IN_CI
from tests.support.tools import require_tool

DCMJS_DIR = Path(__file__).resolve().parents[1] / "interop" / "dcmjs"


def require_dcmjs() -> str:
    """The node binary, once dcmjs-dimse is installed (``.ci/install-test-deps``); skips
    locally and fails under ``CI=true`` without it."""
    node = require_tool("node")
    if not (DCMJS_DIR / "node_modules" / "dcmjs-dimse" / "package.json").is_file():
        message = (
            "dcmjs-dimse is not installed: run .ci/install-test-deps "
            "(npm ci --prefix tests/interop/dcmjs)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return node
