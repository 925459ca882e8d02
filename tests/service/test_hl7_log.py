"""The HL7 message log: exactly-once lookup and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from app.db import SessionFactory, session_scope
from app.models import utcnow
from app.services import hl7_log


def record(factory: SessionFactory, control_id: str, outcome: str = "AA") -> int:
    with session_scope(factory) as session:
        return hl7_log.record(
            session,
            message=hl7_log.MessageRecord(
                "RIS", "HOSP", control_id, "ORM^O01", outcome, "MSH|...", f"ACK {control_id}"
            ),
        )


def test_accepted_ack_is_found_only_for_accepted(session_factory: SessionFactory) -> None:
    record(session_factory, "C1", "AE")
    record(session_factory, "C2", "AA")
    with session_scope(session_factory) as session:

        def lookup(control_id: str) -> str | None:
            return hl7_log.accepted_ack(
                session, sending_application="RIS", sending_facility="HOSP", control_id=control_id
            )

        assert lookup("C1") is None
        assert lookup("C2") == "ACK C2"


def test_an_accepted_message_is_unique(session_factory: SessionFactory) -> None:
    record(session_factory, "C1", "AE")
    record(session_factory, "C1", "AE")  # failures may repeat...
    record(session_factory, "C1", "AA")
    with pytest.raises(IntegrityError):  # ...an acceptance may not
        record(session_factory, "C1", "AA")


def test_retention(session_factory: SessionFactory) -> None:
    record(session_factory, "OLD")
    record(session_factory, "NEW")
    with session_scope(session_factory) as session:
        gone = hl7_log.purge(session, retention_days=30, now=utcnow() + timedelta(days=31))
        assert gone == 2
    record(session_factory, "NEWER")
    with session_scope(session_factory) as session:
        assert hl7_log.purge(session, retention_days=30) == 0
        assert [m.control_id for m in hl7_log.list_messages(session)] == ["NEWER"]
