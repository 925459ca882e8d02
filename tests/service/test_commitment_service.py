"""Storage commitment service on real tables (SQLite and PostgreSQL): record, check against the
stored instances and their files, queue or mark the report, read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from app.db import SessionFactory, session_scope
from app.domain.commitment import CommitmentReport, CommitmentRequest, DuplicateTransactionError
from app.domain.errors import NotFoundError
from app.models import StoredInstance
from app.services import commitment, outbox
from tests.support.commitment import CT, MR, register_requester, store_instance

UID = "1.2.826.0.1.3680043.8.498.8"


def _record(
    factory: SessionFactory, tx: str, refs: list[tuple[str, str]], ae: str = "MOD1"
) -> bool:
    with session_scope(factory) as session:
        return commitment.record(session, requester=ae, request=CommitmentRequest.parse(tx, refs))


def _check(factory: SessionFactory, tx: str, storage: Path) -> CommitmentReport:
    return commitment.check(
        factory, transaction_uid=tx, storage_dir=storage, retrieve_ae_title="MWLBROKER"
    )


def test_each_instance_gets_its_verdict(session_factory: SessionFactory, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    for n in (1, 3, 4, 5, 6):
        store_instance(session_factory, storage, sop_class=CT, sop_instance=f"{UID}.{n}")
    (storage / Path(_path(session_factory, f"{UID}.4"))).unlink()  # file gone
    five = storage / _path(session_factory, f"{UID}.5")
    five.write_bytes(five.read_bytes()[:-10])  # truncated
    six = storage / _path(session_factory, f"{UID}.6")
    six.unlink()
    six.mkdir()  # cannot be read as a file
    refs = [(CT, f"{UID}.{n}") for n in (1, 2, 4, 5, 6)] + [(MR, f"{UID}.3")]
    tx = f"{UID}.100"
    assert _record(session_factory, tx, refs)

    report = _check(session_factory, tx, storage)

    assert [r.sop_instance_uid for r in report.result.committed] == [f"{UID}.1"]
    assert {f.reference.sop_instance_uid: int(f.reason) for f in report.result.failed} == {
        f"{UID}.2": 0x0112,
        f"{UID}.3": 0x0119,
        f"{UID}.4": 0x0110,
        f"{UID}.5": 0x0110,
        f"{UID}.6": 0x0110,
    }
    assert int(report.event_type) == 2
    with session_scope(session_factory) as session:
        view = commitment.get(session, transaction_uid=tx)
    assert view.state == "pending" and view.event_type == 2
    assert (view.requested_count, view.committed_count, view.failed_count) == (6, 1, 5)
    assert view.failed[0].failure_meaning == "No such object instance"


def test_a_path_outside_the_storage_folder_is_not_committed(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    store_instance(session_factory, tmp_path / "elsewhere", sop_class=CT, sop_instance=f"{UID}.1")
    with session_scope(session_factory) as session:
        row = session.exec(select(StoredInstance)).one()
        row.path = f"../elsewhere/{row.path}"
        session.add(row)
    _record(session_factory, f"{UID}.100", [(CT, f"{UID}.1")])
    report = _check(session_factory, f"{UID}.100", storage)
    assert [int(f.reason) for f in report.result.failed] == [0x0110]


def test_repeat_is_the_same_request_and_reuse_is_refused(
    session_factory: SessionFactory,
) -> None:
    tx, refs = f"{UID}.100", [(CT, f"{UID}.1")]
    assert _record(session_factory, tx, refs) is True
    assert _record(session_factory, tx, refs) is False  # the same request, already in hand
    with pytest.raises(DuplicateTransactionError):
        _record(session_factory, tx, [(CT, f"{UID}.2")])
    with pytest.raises(DuplicateTransactionError):
        _record(session_factory, tx, refs, ae="OTHER")


def test_report_is_queued_for_a_known_requester_else_undeliverable(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    register_requester(session_factory, "MOD1", 4242)
    register_requester(session_factory, "MOD2", 4243, services=("store",))
    for tx, ae in ((f"{UID}.101", "MOD1"), (f"{UID}.102", "MOD2"), (f"{UID}.103", "MOD3")):
        _record(session_factory, tx, [(CT, f"{UID}.1")], ae=ae)
        report = _check(session_factory, tx, tmp_path)
        with session_scope(session_factory) as session:
            commitment.queue_report(session, report=report)

    with session_scope(session_factory) as session:
        states = {
            c.transaction_uid: c.state for c in commitment.list_commitments(session, limit=10)
        }
        messages = outbox.list_messages(session, channel="dicom")
        queued = commitment.get(session, transaction_uid=f"{UID}.101")
    assert states == {
        f"{UID}.101": "checked",
        f"{UID}.102": "undeliverable",  # known, but not for commitment
        f"{UID}.103": "undeliverable",
    }
    assert [(m.destination, m.kind, m.ordering_key) for m in messages] == [
        ("MOD1@127.0.0.1:4242", "stgcmt-report", f"stgcmt:{UID}.101")
    ]
    assert queued.delivery is not None and queued.delivery.outbox_id == messages[0].id


def test_mark_reported(session_factory: SessionFactory, tmp_path: Path) -> None:
    tx = f"{UID}.100"
    _record(session_factory, tx, [(CT, f"{UID}.1")])
    _check(session_factory, tx, tmp_path)
    with session_scope(session_factory) as session:
        commitment.mark_reported(session, transaction_uid=tx, via=commitment.SAME_ASSOCIATION)
    with session_scope(session_factory) as session:
        view = commitment.get(session, transaction_uid=tx)
    assert view.state == "reported" and view.reported_at is not None
    assert view.reported_via == "same association" and view.failed[0].failure_reason == 0x0112


def test_list_filters_and_pages_newest_first(session_factory: SessionFactory) -> None:
    for n, ae in ((1, "MOD1"), (2, "MOD2"), (3, "MOD1")):
        _record(session_factory, f"{UID}.10{n}", [(CT, f"{UID}.{n}")], ae=ae)
    with session_scope(session_factory) as session:
        mod1 = commitment.list_commitments(session, requester="MOD1")
        page = commitment.list_commitments(session, limit=1, offset=1)
        none = commitment.list_commitments(session, state="reported")
        with pytest.raises(NotFoundError):
            commitment.get(session, transaction_uid="1.2.3")
    assert [c.transaction_uid for c in mod1] == [f"{UID}.103", f"{UID}.101"]
    assert [c.transaction_uid for c in page] == [f"{UID}.102"]
    assert none == []


def _path(factory: SessionFactory, uid: str) -> str:
    with session_scope(factory) as session:
        found = commitment.stored_files(session, [uid])
    return found[uid].path
