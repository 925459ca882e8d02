"""DCMTK ``storescu`` sends a generated multi-series study to the broker's Storage SCP.

Each transfer syntax goes on its own association, proposed as the file has it (uncompressed
by default; ``-xy`` JPEG Baseline, ``-xr`` RLE Lossless), so storescu sends every data set
unchanged: the stored file must hold the same data set bytes, and the index the same UIDs.
The tmpfs test fills a tiny file system: the broker answers 0xA700 and keeps nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, generate_uid
from sqlmodel import select

from app.db import session_scope
from app.models import StoredInstance, StoredSeries, StoredStudy
from tests.support.ci import IN_CI
from tests.support.storage import add_order
from tests.support.storescp import StorageScp, start_storage_scp
from tests.support.studies import SentInstance, dataset_bytes, write_instance, write_study
from tests.support.tools import require_tool, run_tool

pytestmark = pytest.mark.interop

PROPOSE = {JPEGBaseline8Bit: ["-xy"], RLELossless: ["-xr"]}


def storescu(
    port: int, files: list[SentInstance], *extra: str
) -> list[subprocess.CompletedProcess[str]]:
    """One storescu run per transfer syntax, proposing exactly that syntax's contexts."""
    runs = []
    for syntax in dict.fromkeys(f.transfer_syntax for f in files):
        paths = [str(f.path) for f in files if f.transfer_syntax == syntax]
        args = [require_tool("storescu"), "-aet", "MODALITY1", "-aec", "MWLBROKER", *extra]
        runs.append(run_tool([*args, *PROPOSE.get(syntax, []), "127.0.0.1", str(port), *paths]))
    return runs


@pytest.fixture
def scp(database_url: str, tmp_path: Path) -> Iterator[StorageScp]:
    server = start_storage_scp(database_url, tmp_path)
    yield server
    server.stop()


def test_storescu_study_stored_byte_identical(scp: StorageScp, tmp_path: Path) -> None:
    step = add_order(scp.factory, study_uid="1.2.3.4.1", accession="A1", patient_id="P1")
    sent = write_study(tmp_path / "sent", study_uid="1.2.3.4.1", accession="A1", patient_id="P1")
    for run in storescu(scp.port, sent):
        assert run.returncode == 0, run.stdout + run.stderr
    with session_scope(scp.factory) as s:
        (study,) = s.exec(select(StoredStudy)).all()
        series = s.exec(select(StoredSeries)).all()
        instances = {i.sop_instance_uid: i for i in s.exec(select(StoredInstance))}
    assert study.patient_id == "P1" and study.accession_number == "A1"
    assert study.procedure_pk is not None and step > 0
    assert {x.series_instance_uid for x in series} == {f.series_uid for f in sent}
    assert set(instances) == {f.sop_uid for f in sent}
    for item in sent:
        row = instances[item.sop_uid]
        assert (row.transfer_syntax_uid, row.calling_ae_title) == (
            item.transfer_syntax,
            "MODALITY1",
        )
        assert dataset_bytes(scp.root / row.path) == dataset_bytes(item.path), item


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs; skipped where mounting is not allowed (no root, no CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}"
        if IN_CI:  # CI runs as root: a full disk must really be tried there
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_file_system_answers_out_of_resources(
    database_url: str, tmp_path: Path, tiny_fs: Path
) -> None:
    server = start_storage_scp(database_url, tmp_path, storage_dir=tiny_fs)
    try:
        study, series = generate_uid(), generate_uid()
        small = write_instance(tmp_path / "sent", study_uid=study, series_uid=series)
        big = write_instance(
            tmp_path / "sent", study_uid=study, series_uid=series, number=102, pixel_bytes=600_000
        )
        (ok,) = storescu(server.port, [small])
        assert ok.returncode == 0, ok.stdout + ok.stderr
        (full,) = storescu(server.port, [big], "-v")
        # DCMTK names every 0xA7xx status "Refused: OutOfResources" (PS3.4 Table B.2-1).
        assert "Refused: OutOfResources" in full.stderr, full.stdout + full.stderr
        assert [p.name for p in tiny_fs.rglob("*") if p.is_file()] == [f"{small.sop_uid}.dcm"]
        with session_scope(server.factory) as s:
            assert [i.sop_instance_uid for i in s.exec(select(StoredInstance))] == [small.sop_uid]
    finally:
        server.stop()


def test_explicit_little_endian_via_default_proposal(scp: StorageScp, tmp_path: Path) -> None:
    (item,) = write_study(tmp_path / "sent", series=((ExplicitVRLittleEndian, 1),))
    (run,) = storescu(scp.port, [item])
    assert run.returncode == 0, run.stdout + run.stderr
    assert dataset_bytes(next(scp.root.rglob("*.dcm"))) == dataset_bytes(item.path)


def test_stored_by_storescu_retrieved_by_getscu_unchanged(scp: StorageScp, tmp_path: Path) -> None:
    """The write path meets Query/Retrieve: what storescu stored, getscu gets back byte for
    byte (the files are Explicit VR Little Endian, the syntax getscu's contexts are accepted in)."""
    sent = write_study(tmp_path / "sent", series=((ExplicitVRLittleEndian, 2),))
    (stored,) = storescu(scp.port, sent)
    assert stored.returncode == 0, stored.stdout + stored.stderr
    out = tmp_path / "got"
    out.mkdir()
    got = run_tool(
        [require_tool("getscu"), "-S", "-aec", "MWLBROKER", "-od", str(out),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={sent[0].study_uid}",
         "127.0.0.1", str(scp.port)]
    )  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    received = {dcmread(p).SOPInstanceUID: p for p in out.iterdir()}
    assert set(received) == {s.sop_uid for s in sent}
    for item in sent:
        assert dataset_bytes(received[item.sop_uid]) == dataset_bytes(item.path)
