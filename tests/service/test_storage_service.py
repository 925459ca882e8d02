"""Stored studies: indexing, duplicates, linking to orders, reconciliation, views, retention
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from app.config import DuplicatePolicy
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import NotFoundError
from app.domain.status import AuditSource
from app.filestore import FileStore
from app.models import AuditEvent, StorageCommitment, StoredInstance, StoredStudy, utcnow
from app.services import board, orders, retention, storage
from tests.support.storage import add_order, received

KEEP, REPLACE = DuplicatePolicy.KEEP, DuplicatePolicy.REPLACE
SCHEDULER = Actor(AuditSource.REST, "sam")


def _store(factory: SessionFactory, files: FileStore, *uids: str, **kw: object) -> None:
    for uid in uids:
        storage.receive(factory, files=files, instance=received(uid, **kw), duplicate=KEEP)  # type: ignore[arg-type]


def test_indexes_study_series_instances(session_factory: SessionFactory, tmp_path: Path) -> None:
    files = FileStore(tmp_path / "store")
    _store(session_factory, files, "9.1", "9.2")
    _store(session_factory, files, "9.3", series_uid="1.2.3.4.1.2", modality="MR")
    with session_scope(session_factory) as s:
        (study,) = storage.list_studies(s)
    assert study.study_instance_uid == "1.2.3.4.1" and study.instances == 3
    assert [(x.modality, x.instances) for x in study.series] == [("CT", 2), ("MR", 1)]
    assert (files.root / "1.2.3.4.1" / "1.2.3.4.1.1" / "9.1.dcm").read_bytes() == b"DICM-fake"


def test_duplicate_keep_and_replace(session_factory: SessionFactory, tmp_path: Path) -> None:
    files = FileStore(tmp_path / "store")
    first = storage.receive(
        session_factory, files=files, instance=received("9.1", data=b"one"), duplicate=KEEP
    )
    kept = storage.receive(
        session_factory, files=files, instance=received("9.1", data=b"two"), duplicate=KEEP
    )
    assert kept.result is storage.StoreResult.DUPLICATE_KEPT
    assert files.absolute(first.path).read_bytes() == b"one"
    replaced = storage.receive(
        session_factory, files=files, instance=received("9.1", data=b"three"), duplicate=REPLACE
    )
    assert replaced.result is storage.StoreResult.REPLACED
    assert files.absolute(first.path).read_bytes() == b"three"
    with session_scope(session_factory) as s:
        (row,) = s.exec(select(StoredInstance)).all()
        assert row.size_bytes == 5


def test_index_failure_removes_the_file(
    session_factory: SessionFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = FileStore(tmp_path / "store")

    def broken(*_args: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(storage, "_index", broken)
    with pytest.raises(storage.StorageFailedError):
        _store(session_factory, files, "9.1")
    assert [p for p in files.root.rglob("*") if p.is_file()] == []
    with session_scope(session_factory) as s:
        assert s.exec(select(StoredInstance)).all() == []


def test_links_by_study_uid(session_factory: SessionFactory, tmp_path: Path) -> None:
    step = add_order(session_factory, study_uid="1.2.3.4.1", accession="OTHER")
    _store(session_factory, FileStore(tmp_path), "9.1", accession="")
    with session_scope(session_factory) as s:
        details = orders.step_details(s, pk=step)
        (study,) = details.studies
        images = details.order.procedures[0].images
        actions = [e.action for e in details.history]
    assert study.procedure_pk == details.order.procedures[0].id
    assert images is not None and (images.studies, images.series, images.instances) == (1, 1, 1)
    assert "images_received" in actions


def test_links_by_accession_and_patient_id(session_factory: SessionFactory, tmp_path: Path) -> None:
    step = add_order(session_factory, study_uid="1.2.3.4.99", accession="ACC7", patient_id="P7")
    files = FileStore(tmp_path)
    _store(
        session_factory,
        files,
        "9.1",
        study_uid="5.5.1",
        series_uid="5.5.1.1",
        accession="ACC7",
        patient_id="P7",
    )
    _store(
        session_factory,
        files,
        "9.2",
        study_uid="5.5.2",
        series_uid="5.5.2.1",
        accession="ACC7",
        patient_id="P8",
    )
    with session_scope(session_factory) as s:
        linked = storage.list_studies(s, procedure_pk=s.get_one(StoredStudy, 1).procedure_pk)
        unlinked = storage.list_studies(s, unlinked=True)
        (row,) = board.day_board(s, day="20261201")
    assert [x.study_instance_uid for x in linked] == ["5.5.1"]
    assert [x.study_instance_uid for x in unlinked] == ["5.5.2"]
    assert row.step_id == step and row.images is not None and row.images.instances == 1


def test_unlinked_study_linked_by_hand(session_factory: SessionFactory, tmp_path: Path) -> None:
    step = add_order(session_factory, study_uid="1.2.3.4.99", accession="ACC7")
    _store(session_factory, FileStore(tmp_path), "9.1", study_uid="5.5.1", accession="NONE")
    with session_scope(session_factory) as s:
        (waiting,) = storage.list_studies(s, unlinked=True)
        with pytest.raises(NotFoundError):
            storage.link_study(s, pk=waiting.id, step_pk=999999, actor=SCHEDULER)
        linked = storage.link_study(s, pk=waiting.id, step_pk=step, actor=SCHEDULER)
    with session_scope(session_factory) as s:
        assert storage.list_studies(s, unlinked=True) == []
        audit = s.exec(select(AuditEvent).where(AuditEvent.entity == storage.ENTITY)).all()
        details = orders.step_details(s, pk=step)
    assert linked.procedure_pk == details.order.procedures[0].id
    link = next(e for e in audit if e.action == "link")
    assert link.actor == "sam" and link.detail["after"] == {"procedure_pk": linked.procedure_pk}
    assert [st.study_instance_uid for st in details.studies] == ["5.5.1"]


def _age(factory: SessionFactory, days: int) -> None:
    with session_scope(factory) as s:
        for row in s.exec(select(StoredInstance)):
            row.received_at = utcnow() - timedelta(days=days)
            s.add(row)


def test_retention_deletes_old_studies(session_factory: SessionFactory, tmp_path: Path) -> None:
    files = FileStore(tmp_path / "store")
    _store(session_factory, files, "9.1", "9.2")
    _age(session_factory, 10)
    _store(session_factory, files, "8.1", study_uid="7.7.7", series_uid="7.7.7.1")
    args = {"files": files, "retention_days": 5}
    assert retention.purge_studies(session_factory, retention_days=0, files=files) == []
    assert retention.purge_studies(session_factory, **args) == ["1.2.3.4.1"]  # type: ignore[arg-type]
    assert not (files.root / "1.2.3.4.1").exists()
    assert (files.root / "7.7.7" / "7.7.7.1" / "8.1.dcm").is_file()
    with session_scope(session_factory) as s:
        assert [x.study_instance_uid for x in storage.list_studies(s)] == ["7.7.7"]
        deleted = s.exec(select(AuditEvent).where(AuditEvent.action == "delete")).one()
        assert deleted.detail["study_instance_uid"] == "1.2.3.4.1"


def test_retention_waits_for_commitment(session_factory: SessionFactory, tmp_path: Path) -> None:
    files = FileStore(tmp_path / "store")
    _store(session_factory, files, "9.1", "9.2")
    _age(session_factory, 10)
    args = {"files": files, "retention_days": 5, "requires_commitment": True}
    with session_scope(session_factory) as s:
        refs = [{"class": "1.2.840.10008.5.1.4.1.1.2", "instance": u} for u in ("9.1", "9.2")]
        s.add(
            StorageCommitment(
                transaction_uid="3.3.1", requester_ae_title="CT01", state="checked", requested=refs
            )
        )
    assert retention.purge_studies(session_factory, **args) == []  # type: ignore[arg-type]
    with session_scope(session_factory) as s:
        row = s.exec(select(StorageCommitment)).one()
        row.state = "reported"
        row.result = {"committed": refs[:1], "failed": [{**refs[1], "reason": 0x0112}]}
        s.add(row)
    assert retention.purge_studies(session_factory, **args) == []  # type: ignore[arg-type]
    with session_scope(session_factory) as s:
        row = s.exec(select(StorageCommitment)).one()
        row.result = {"committed": refs, "failed": []}
        s.add(row)
    assert retention.purge_studies(session_factory, **args) == ["1.2.3.4.1"]  # type: ignore[arg-type]
