"""Where the tests run: in CI a missing dependency fails the run instead of skipping."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() == "true"
