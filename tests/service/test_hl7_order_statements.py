"""The SQL an ORM^O01 new order costs, counted: one transaction, one commit, a few statements.

HL7 intake throughput is bounded by the round trips and the commit of each message (the ACK
waits for the commit), so the statement list of a new order is pinned here: a change that adds
a statement fails this test and has to say why. A multi-row INSERT ... RETURNING is one
statement on both databases (its rows are matched back by their keys, not by their order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from app.config import Settings
from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.events import install_after_commit, install_pg_notify
from app.services import stations
from hl7_ingest.handler import Hl7Handler

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7"
# two ORC/OBR groups (CT and CR), a new patient, Study Instance UIDs in ZDS
NEW_ORDER = (DATA / "orm_o01_nw.hl7").read_bytes()


def another_order(control_id: str, suffix: str) -> bytes:
    """The same patient's next order: new control ID, accessions and Study Instance UIDs."""
    text = NEW_ORDER.replace(b"MSG00001", control_id.encode())
    for old in (b"ACC0001", b"ACC0002", b"2.55.3.1001", b"2.55.3.1002", b"PL100", b"FL200"):
        text = text.replace(old, old + suffix.encode())
    return text


@dataclass
class Statements:
    """The statements and commits an engine ran since the last ``clear``."""

    sql: list[str] = field(default_factory=list)
    commits: int = 0

    def clear(self) -> None:
        self.sql.clear()
        self.commits = 0

    def kinds(self) -> list[str]:
        """Each statement as its verb and table, e.g. ``INSERT audit_event``."""
        out = []
        for statement in self.sql:
            words = statement.split()
            if words[0] == "INSERT":
                out.append(f"INSERT {words[2]}")
            elif words[0] == "SELECT" and "pg_notify" in statement:
                out.append("SELECT pg_notify")
            else:
                out.append(f"{words[0]} {words[words.index('FROM') + 1]}")
        return out


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def counted(engine: Engine) -> Statements:
    seen = Statements()

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(*args: Any) -> None:
        seen.sql.append(args[2])

    @event.listens_for(engine, "commit")
    def _commit(_connection: Any) -> None:
        seen.commits += 1

    return seen


@pytest.fixture
def handler(settings: Settings, engine: Engine) -> Hl7Handler:
    """The handler with the after-commit hooks ``app.runtime`` installs (PostgreSQL: NOTIFY)."""
    factory = create_session_factory(engine)
    install_after_commit(factory, lambda _events: None)
    if engine.dialect.name == "postgresql":
        install_pg_notify(factory)
    with session_scope(factory) as session:
        for modality in ("CT", "CR"):
            stations.create_station(
                session,
                data=stations.StationData(modality, f"{modality}01"),
                actor=Actor(AuditSource.REST),
            )
    return Hl7Handler(settings.hl7, factory)


def _tail(engine: Engine) -> list[str]:
    """Two steps and their station titles, every audit row at once; PostgreSQL's NOTIFY."""
    return [
        "INSERT requested_procedure",
        "INSERT scheduled_procedure_step",
        "INSERT scheduled_station_ae_title",
        "INSERT audit_event",
        *(["SELECT pg_notify"] if engine.dialect.name == "postgresql" else []),
    ]


def test_a_new_patients_order_is_a_few_statements_and_one_commit(
    handler: Hl7Handler, counted: Statements, engine: Engine
) -> None:
    assert b"MSA|AA|" in handler.handle(NEW_ORDER)
    assert counted.commits == 1
    assert counted.kinds() == [
        "INSERT hl7_message",  # the log row: also the redelivery check (ON CONFLICT)
        "INSERT patient",  # ON CONFLICT DO NOTHING: new, so none of its orders exists
        "SELECT station",  # both groups' stations at once
        "INSERT imaging_service_request",  # both orders
        *_tail(engine),
    ]


def test_a_known_patients_new_order(
    handler: Hl7Handler, counted: Statements, engine: Engine
) -> None:
    handler.handle(NEW_ORDER)
    counted.clear()
    assert b"MSA|AA|" in handler.handle(another_order("MSG00002", "9"))
    assert counted.commits == 1
    assert counted.kinds() == [
        "INSERT hl7_message",
        "INSERT patient",  # it exists: nothing inserted
        "SELECT patient",
        "SELECT requested_procedure",  # none of the Study Instance UIDs is known
        "SELECT station",
        "SELECT imaging_service_request",  # the patient's orders with these accessions
        "INSERT imaging_service_request",  # both orders
        *_tail(engine),
    ]


def test_a_redelivered_order_is_two_statements(handler: Hl7Handler, counted: Statements) -> None:
    handler.handle(NEW_ORDER)
    counted.clear()
    assert b"MSA|AA|" in handler.handle(NEW_ORDER)
    assert counted.kinds() == ["INSERT hl7_message", "SELECT hl7_message"]
