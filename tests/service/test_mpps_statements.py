"""How many SQL statements one MPPS N-CREATE and one N-SET cost (SQLite).

Every statement is a round trip inside the write transaction, and the modality waits for the
whole transaction: the counts are pinned exactly so that an added query (an ORM flush, a
re-read for the answer, a lazy load) fails here instead of slowing every exam unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from app.db import SessionFactory, create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.mpps import StartPerformedStep, UpdatePerformedStep
from app.domain.status import AuditSource
from app.models import AuditEvent, OutboxMessage, ScheduledProcedureStep
from app.services import mpps, worklist
from tests.support.items import mwl_item
from tests.support.mpps import as_json, n_create, n_set, ssas_item

MODALITY = Actor(AuditSource.DICOM, "CT01")
RIS = mpps.Delivery(ris_endpoint="127.0.0.1:2576", forward=("PACS@127.0.0.1:11113",))
NONE = mpps.Delivery()


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[SessionFactory]:
    engine = create_db_engine(sqlite_url)
    made = create_session_factory(engine)
    with session_scope(made) as session:
        item = mwl_item(sps_id="SPS1", study_uid="1.2.3.4.1", accession="A1")
        worklist.upsert_item(session, data=item_from_json(item), actor=Actor(AuditSource.REST))
    yield made
    engine.dispose()


_STATEMENT = r"\s*(SELECT)\b.*?\bFROM (\w+)|\s*(INSERT) INTO (\w+)|\s*(UPDATE) (\w+)"


def _what(statement: str) -> str:
    """``SELECT performed_procedure_step``, ``INSERT audit_event``...: verb and (first) table."""
    found = re.match(_STATEMENT, statement, re.S)
    assert found is not None, statement
    verb, table = [part for part in found.groups() if part]
    return f"{verb} {table}"


@contextmanager
def counted(factory: SessionFactory) -> Iterator[list[str]]:
    """The statements the block sends (SQLite: BEGIN and COMMIT are not cursor statements)."""
    statements: list[str] = []
    engine = factory.kw["bind"]

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(_what(statement))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _create(factory: SessionFactory, delivery: mpps.Delivery, *items: Any) -> mpps.MppsView:
    with session_scope(factory) as session:
        command = StartPerformedStep.from_json("1.2.9.1", as_json(n_create(*items)))
        return mpps.create(session, command=command, delivery=delivery, actor=MODALITY)


def _update(factory: SessionFactory, delivery: mpps.Delivery) -> mpps.MppsView:
    with session_scope(factory) as session:
        command = UpdatePerformedStep("1.2.9.1", as_json(n_set()))
        return mpps.update(session, command=command, delivery=delivery, actor=MODALITY)


CREATE = [
    "INSERT performed_procedure_step",  # ON CONFLICT DO NOTHING: no SELECT for a duplicate
    "SELECT scheduled_procedure_step",  # the named steps, with order and patient
    "INSERT performed_step_link",
    "UPDATE scheduled_procedure_step",  # SCHEDULED -> STARTED
    "INSERT audit_event",  # the MPPS's and the steps' rows at once
    "SELECT remote_ae",  # downstream MPPS SCPs
]
SET = [
    "SELECT performed_procedure_step",  # with its linked steps
    "UPDATE performed_procedure_step",
    "UPDATE scheduled_procedure_step",  # STARTED -> COMPLETED
    "INSERT audit_event",
    "SELECT remote_ae",
]


def test_a_pair_costs_six_and_five_statements(factory: SessionFactory) -> None:
    with counted(factory) as create_statements:
        created = _create(factory, NONE)
    with counted(factory) as set_statements:
        done = _update(factory, NONE)

    assert create_statements == CREATE
    assert set_statements == SET
    # what was written, and the answers built without reading it again
    assert [s.status for s in created.linked_steps] == ["STARTED"]
    assert [s.status for s in done.linked_steps] == ["COMPLETED"]
    assert done.status == "COMPLETED" and done.end_datetime == "20261201090000"
    with session_scope(factory) as session:
        assert mpps.get(session, uid="1.2.9.1") == done
        assert [s.status for s in session.exec(select(ScheduledProcedureStep))] == ["COMPLETED"]
        actions = [(a.entity, a.action) for a in session.exec(select(AuditEvent))][-4:]
    assert actions == [
        ("mpps", "create"),
        ("scheduled_procedure_step", "status"),
        ("mpps", "update"),
        ("scheduled_procedure_step", "status"),
    ]


def test_the_ris_and_a_forward_add_one_insert_each(factory: SessionFactory) -> None:
    with counted(factory) as create_statements:
        _create(factory, RIS)
    with counted(factory) as set_statements:
        _update(factory, RIS)

    outbox = ["INSERT outbox_message"]
    assert create_statements == CREATE[:-1] + outbox + CREATE[-1:] + outbox
    assert set_statements == SET[:-1] + outbox + SET[-1:] + outbox
    with session_scope(factory) as session:
        kinds = [(m.channel, m.kind) for m in session.exec(select(OutboxMessage))]
    assert kinds == [
        ("hl7", "mpps-status"),
        ("dicom", "mpps-create"),
        ("hl7", "mpps-status"),
        ("dicom", "mpps-set"),
    ]


def test_statements_do_not_grow_with_the_steps_of_a_grouped_case(
    factory: SessionFactory,
) -> None:
    with session_scope(factory) as session:
        item = mwl_item(sps_id="SPS2", study_uid="1.2.3.4.2", accession="A1")
        worklist.upsert_item(session, data=item_from_json(item), actor=Actor(AuditSource.REST))
    both = (
        ssas_item("1.2.3.4.1", "A1", "RP1", "SPS1"),
        ssas_item("1.2.3.4.2", "A1", "RP1", "SPS2"),
    )

    with counted(factory) as create_statements:
        created = _create(factory, NONE, *both)
    with counted(factory) as set_statements:
        done = _update(factory, NONE)

    assert create_statements == CREATE[:1] + CREATE[1:2] * 2 + CREATE[2:]  # a query per item
    assert set_statements == SET
    assert [s.sps_id for s in created.linked_steps] == ["SPS1", "SPS2"]
    assert [s.status for s in done.linked_steps] == ["COMPLETED", "COMPLETED"]
