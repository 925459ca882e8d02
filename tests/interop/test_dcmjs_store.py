"""An independent SCU (the npm package dcmjs-dimse) stores a generated study with C-STORE.

``dcmjs/store_files.mjs`` sends the files on one association; the broker answers Success for
each, indexes every instance under its study and series and keeps a readable Part 10 file.
Node and ``tests/interop/dcmjs/node_modules`` come from ``.ci/install-test-deps``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlmodel import select

from app.db import session_scope
from app.models import StoredInstance
from tests.support.dcmjs import DCMJS_DIR, require_dcmjs
from tests.support.storescp import StorageScp, start_storage_scp
from tests.support.studies import write_study

pytestmark = pytest.mark.interop

NODE_TIMEOUT = 90.0


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[StorageScp]:
    server = start_storage_scp(sqlite_url, tmp_path)
    yield server
    server.stop()


def test_dcmjs_dimse_c_store(scp: StorageScp, tmp_path: Path) -> None:
    sent = write_study(
        tmp_path / "sent", series=((ExplicitVRLittleEndian, 2), (ImplicitVRLittleEndian, 1))
    )
    command = [require_dcmjs(), str(DCMJS_DIR / "store_files.mjs"), "--port", str(scp.port)]
    done = subprocess.run(
        [*command, *(str(s.path) for s in sent)],
        cwd=DCMJS_DIR,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"statuses": [0, 0, 0]}
    with session_scope(scp.factory) as s:
        rows = {r.sop_instance_uid: r for r in s.exec(select(StoredInstance))}
    assert set(rows) == {x.sop_uid for x in sent}
    for item in sent:
        stored = dcmread(scp.root / rows[item.sop_uid].path)
        assert (stored.SOPInstanceUID, stored.SeriesInstanceUID) == (item.sop_uid, item.series_uid)
        assert stored.PixelData == dcmread(item.path).PixelData
