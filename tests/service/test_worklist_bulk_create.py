"""``worklist.create_new_items``: many new items at once, the same rows as one by one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.items import WorklistItemData, item_from_json
from app.domain.status import AuditSource
from app.domain.worklist import parse_worklist_query
from app.migrations import upgrade
from app.models import AuditEvent, ImagingServiceRequest, Patient
from app.services import worklist
from tests.support.items import mwl_item

ACTOR = Actor(AuditSource.CLI, "import-wl")


def _batch() -> list[WorklistItemData]:
    """Shared patients, two procedures of one order, orders without accession, two stations."""
    items = [
        mwl_item(
            patient_id=f"P{(n // 2) % 3}",
            accession=f"A{n // 2}",
            study_uid=f"1.2.3.{n}",
            sps_id=f"S{n}",
            station=["CT01", "CT02"] if n % 4 == 0 else "CT01",
        )
        for n in range(12)
    ]
    items.append(mwl_item(patient_id="P9", accession="", study_uid="1.2.9.1", sps_id="S1"))
    items.append(mwl_item(patient_id="P9", accession="", study_uid="1.2.9.2", sps_id="S1"))
    return [item_from_json(i) for i in items]


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[SessionFactory]:
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    yield create_session_factory(engine)
    engine.dispose()


def _items(factory: SessionFactory) -> list[dict[str, Any]]:
    with factory() as session:
        found = worklist.find(session, query=parse_worklist_query({}))
        return sorted(found, key=lambda i: str(i["0020000D"]["Value"]))


def _shape(factory: SessionFactory) -> tuple[Counter[tuple[str, str]], int, int]:
    with factory() as session:
        audits = Counter((a.entity, a.action) for a in session.exec(select(AuditEvent)))
        patients = len(session.exec(select(Patient)).all())
        orders = len(session.exec(select(ImagingServiceRequest)).all())
    return audits, patients, orders


def test_new_items_are_written_as_one_by_one(
    session_factory: SessionFactory, reference: SessionFactory
) -> None:
    batch = _batch()
    with session_scope(session_factory) as session:
        chosen = worklist.create_new_items(session, batch, actor=ACTOR)
    for data in batch:
        with session_scope(reference) as session:
            worklist.upsert_item(session, data=data, actor=ACTOR)

    assert chosen == list(range(len(batch)))
    assert _items(session_factory) == _items(reference)
    assert _shape(session_factory) == _shape(reference)
    audits, patients, orders = _shape(session_factory)
    assert (patients, orders) == (4, 8)  # P0-P2 and P9; A0-A5 and two without accession
    assert audits[("scheduled_procedure_step", "create")] == len(batch)


def test_known_patients_and_orders_are_reused_and_updated(
    session_factory: SessionFactory, reference: SessionFactory
) -> None:
    first = item_from_json(mwl_item(patient_id="P0", accession="A0", study_uid="1.2.3.100"))
    renamed = item_from_json(
        mwl_item(patient_id="P0", name="DOE^JANE^MARIE", accession="A0", study_uid="1.2.3.101")
    )
    for factory in (session_factory, reference):
        with session_scope(factory) as session:
            worklist.upsert_item(session, data=first, actor=ACTOR)
    with session_scope(session_factory) as session:
        worklist.create_new_items(session, [renamed], actor=ACTOR)
    with session_scope(reference) as session:
        worklist.upsert_item(session, data=renamed, actor=ACTOR)

    assert _items(session_factory) == _items(reference)
    assert _shape(session_factory) == _shape(reference)
    assert _shape(session_factory)[1:] == (1, 1)


def test_known_and_repeated_study_uids_are_left_for_upsert(
    session_factory: SessionFactory,
) -> None:
    known = item_from_json(mwl_item(study_uid="1.2.3.1", sps_id="S1"))
    with session_scope(session_factory) as session:
        worklist.upsert_item(session, data=known, actor=ACTOR)
    batch = [
        item_from_json(mwl_item(study_uid="1.2.3.1", sps_id="S2")),  # known procedure
        item_from_json(mwl_item(study_uid="1.2.3.2", sps_id="S1")),  # new
        item_from_json(mwl_item(study_uid="1.2.3.3", sps_id="S1")),  # two steps of one
        item_from_json(mwl_item(study_uid="1.2.3.3", sps_id="S2")),  # new procedure
    ]
    with session_scope(session_factory) as session:
        chosen = worklist.create_new_items(session, batch, actor=ACTOR)

    assert chosen == [1]
    assert [i["0020000D"]["Value"][0] for i in _items(session_factory)] == ["1.2.3.1", "1.2.3.2"]


def test_orders_alike_but_for_their_attributes_keep_their_own(
    session_factory: SessionFactory, reference: SessionFactory
) -> None:
    """Orders have no unique key: new rows are matched back by all their values."""
    batch = [
        item_from_json(
            mwl_item(
                patient_id="P1",
                accession="",
                study_uid=f"1.2.5.{n}",
                sps_id="S1",
                extra={"00321033": {"vr": "LO", "Value": [f"SERVICE{n % 3}"]}},
            )
        )
        for n in range(9)
    ]
    with session_scope(session_factory) as session:
        assert worklist.create_new_items(session, batch, actor=ACTOR) == list(range(9))
    for data in batch:
        with session_scope(reference) as session:
            worklist.upsert_item(session, data=data, actor=ACTOR)

    assert _items(session_factory) == _items(reference)
    assert _shape(session_factory) == _shape(reference)


def _statements(factory: SessionFactory, batch: list[WorklistItemData]) -> int:
    with session_scope(factory) as session:
        engine = session.get_bind()
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            worklist.create_new_items(session, batch, actor=ACTOR)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_the_statements_do_not_grow_with_the_batch(session_factory: SessionFactory) -> None:
    def batch(first: int, size: int) -> list[WorklistItemData]:
        return [
            item_from_json(mwl_item(patient_id=f"P{n}", accession=f"A{n}", study_uid=f"1.2.6.{n}"))
            for n in range(first, first + size)
        ]

    assert _statements(session_factory, batch(0, 3)) == _statements(session_factory, batch(3, 60))
