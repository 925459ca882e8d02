"""The dcmjs-dimse interop scripts: node and the package installed next to them."""

from __future__ import annotations

import pytest

from tests.support.ci import IN_CI
from tests.support.paths import TESTS_DIR
from tests.support.tools import require_tool

DCMJS_DIR = TESTS_DIR / "interop" / "dcmjs"


def require_dcmjs() -> str:
    """The node binary, once dcmjs-dimse is installed next to the scripts."""
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
