"""The Storage SCP over real sockets (pynetdicom SCU): statuses, files, rows, duplicates and
failures that must leave nothing behind (SQLite and PostgreSQL)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
from sqlmodel import select

from app.db import session_scope
from app.models import StoredInstance, StoredSeries, StoredStudy
from app.services import storage
from tests.support.storescp import StorageScp, c_store, start_storage_scp
from tests.support.studies import dataset_bytes, write_instance, write_study

OUT_OF_RESOURCES = 0xA700


@pytest.fixture
def scp(database_url: str, tmp_path: Path) -> Iterator[StorageScp]:
    server = start_storage_scp(database_url, tmp_path)
    yield server
    server.stop()


def _rows(scp: StorageScp) -> tuple[int, int, list[StoredInstance]]:
    with session_scope(scp.factory) as s:
        return (
            len(s.exec(select(StoredStudy)).all()),
            len(s.exec(select(StoredSeries)).all()),
            list(s.exec(select(StoredInstance))),
        )


def test_study_in_every_syntax_stored_as_sent(scp: StorageScp, tmp_path: Path) -> None:
    sent = write_study(tmp_path / "sent")
    deflated = write_instance(
        tmp_path / "sent",
        study_uid=sent[0].study_uid,
        series_uid=generate_uid(),
        transfer_syntax=DeflatedExplicitVRLittleEndian,
        number=501,
    )
    sent.append(deflated)
    assert c_store(scp.port, *(s.path for s in sent)) == [0] * len(sent)
    studies, series, instances = _rows(scp)
    assert (studies, series, len(instances)) == (1, 5, len(sent))
    by_uid = {i.sop_instance_uid: i for i in instances}
    for item in sent:
        row = by_uid[item.sop_uid]
        assert row.transfer_syntax_uid == item.transfer_syntax
        assert row.sop_class_uid == item.sop_class_uid and row.calling_ae_title == "STORESCU"
        stored = scp.root / row.path
        assert row.path == f"{item.study_uid}/{item.series_uid}/{item.sop_uid}.dcm"
        assert dataset_bytes(stored) == dataset_bytes(item.path)
        assert row.size_bytes == stored.stat().st_size


@pytest.mark.parametrize("policy", ["keep", "replace"])
def test_duplicate_policy(database_url: str, tmp_path: Path, policy: str) -> None:
    server = start_storage_scp(database_url, tmp_path, storage_duplicate=policy)
    try:
        uid, study, series = generate_uid(), generate_uid(), generate_uid()
        first = write_instance(
            tmp_path / "a", study_uid=study, series_uid=series, sop_uid=uid, number=101
        )
        second = write_instance(
            tmp_path / "b", study_uid=study, series_uid=series, sop_uid=uid, number=102
        )
        assert c_store(server.port, first.path) == [0]
        assert c_store(server.port, second.path) == [0]
        (stored,) = server.stored_files()
        winner = first if policy == "keep" else second
        assert dataset_bytes(stored) == dataset_bytes(winner.path)
        _, _, (row,) = _rows(server)
        assert row.instance_number == ("1" if policy == "keep" else "2")
    finally:
        server.stop()


def test_full_disk_answers_out_of_resources_and_leaves_nothing(
    scp: StorageScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (item,) = write_study(tmp_path / "sent", series=((ExplicitVRLittleEndian, 1),))

    def no_space(_fd: int, _data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("app.filestore.os.write", no_space)
    assert c_store(scp.port, item.path) == [OUT_OF_RESOURCES]
    assert scp.stored_files() == []
    assert _rows(scp) == (0, 0, [])


def test_failing_fsync_answers_out_of_resources(
    scp: StorageScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (item,) = write_study(tmp_path / "sent", series=((ExplicitVRLittleEndian, 1),))

    def io_error(_fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("app.filestore.os.fsync", io_error)
    assert c_store(scp.port, item.path) == [OUT_OF_RESOURCES]
    assert scp.stored_files() == []
    assert _rows(scp) == (0, 0, [])


def test_index_failure_removes_the_written_file(
    scp: StorageScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (item,) = write_study(tmp_path / "sent", series=((ExplicitVRLittleEndian, 1),))

    def db_down(*_args: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(storage, "_index", db_down)
    assert c_store(scp.port, item.path) == [OUT_OF_RESOURCES]
    assert scp.stored_files() == []
    assert _rows(scp) == (0, 0, [])


def test_concurrent_associations_create_one_study(scp: StorageScp, tmp_path: Path) -> None:
    """Two modalities send instances of the same new study and series at once: the study and
    series rows are created once (a lost insert race is retried), every instance is kept."""
    study, series = generate_uid(), generate_uid()
    batches = [
        [
            write_instance(
                tmp_path / f"sent{b}", study_uid=study, series_uid=series, number=101 + i
            ).path
            for i in range(6)
        ]
        for b in range(2)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda paths: c_store(scp.port, *paths), batches))
    assert results == [[0] * 6, [0] * 6]
    studies, series_count, instances = _rows(scp)
    assert (studies, series_count, len(instances)) == (1, 1, 12)
    assert len(scp.stored_files()) == 12
