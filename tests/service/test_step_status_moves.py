"""Step status moves are a compare and set (``write.move_status``, ``move_step_statuses``).

Between a service's read of a step and its UPDATE, another transaction may move the step (an HL7
cancel while an MPPS completes). Here that other change is made in the same transaction, behind
the ORM's back, which the UPDATE sees the same way as a change committed meanwhile under
PostgreSQL's READ COMMITTED.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select, update

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import InvalidTransitionError
from app.domain.items import item_from_json
from app.domain.status import AuditSource, SpsStatus
from app.models import AuditEvent, ScheduledProcedureStep
from app.services import worklist, write
from tests.support.items import mwl_item

STAFF = Actor(AuditSource.REST, "staff")


@pytest.fixture
def factory(session_factory: SessionFactory) -> SessionFactory:
    with session_scope(session_factory) as session:
        for index, sps in enumerate(("SPS1", "SPS2")):
            item = mwl_item(sps_id=sps, study_uid=f"1.2.3.4.{index + 1}", accession="A1")
            worklist.upsert_item(session, data=item_from_json(item), actor=STAFF)
    return session_factory


def _steps(session: Session) -> dict[str, ScheduledProcedureStep]:
    return {s.sps_id: s for s in session.exec(select(ScheduledProcedureStep))}


def _moved_meanwhile(session: Session, step: ScheduledProcedureStep, status: str) -> None:
    """Another change to the step's row that the loaded ``step`` object does not know of."""
    session.execute(
        update(ScheduledProcedureStep)
        .where(col(ScheduledProcedureStep.id) == step.id)
        .values(status=status)
        .execution_options(synchronize_session=False)  # the object keeps what it read
    )
    assert step.status != status


def _statuses(factory: SessionFactory) -> dict[str, str]:
    with session_scope(factory) as session:
        return {sps_id: s.status for sps_id, s in _steps(session).items()}


def test_many_steps_moved_meanwhile_are_judged_on_their_status_now(
    factory: SessionFactory,
) -> None:
    """The MPPS path: the cancelled step stays cancelled; the other one moves from ARRIVED,
    and the audit says so."""
    with session_scope(factory) as session:
        pk = {sps_id: s.id for sps_id, s in _steps(session).items()}
        session.expunge_all()
        for sps_id, now in (("SPS1", "DISCONTINUED"), ("SPS2", "ARRIVED")):
            session.execute(
                update(ScheduledProcedureStep)
                .where(col(ScheduledProcedureStep.id) == pk[sps_id])
                .values(status=now)
            )
        read = {pk["SPS1"]: "SCHEDULED", pk["SPS2"]: "SCHEDULED"}  # as read before
        entries = write.move_step_statuses(session, read, SpsStatus.STARTED, context="1.2.9.1")
    assert _statuses(factory) == {"SPS1": "DISCONTINUED", "SPS2": "STARTED"}
    assert [(e.entity_pk, e.before) for e in entries] == [(pk["SPS2"], {"status": "ARRIVED"})]


def test_a_step_completed_meanwhile_is_not_cancelled_over_it(factory: SessionFactory) -> None:
    """The HL7 and page path: the cancel is judged on COMPLETED and refused, not written."""
    with (
        pytest.raises(InvalidTransitionError, match="COMPLETED"),
        session_scope(factory) as session,
    ):
        step = _steps(session)["SPS1"]
        _moved_meanwhile(session, step, "COMPLETED")
        write.move_status(session, step, SpsStatus.DISCONTINUED, actor=STAFF)
    assert _statuses(factory)["SPS1"] == "SCHEDULED"  # the whole (test) transaction rolled back


def test_a_step_moved_meanwhile_moves_from_where_it_is(factory: SessionFactory) -> None:
    with session_scope(factory) as session:
        step = _steps(session)["SPS1"]
        _moved_meanwhile(session, step, "ARRIVED")
        write.move_status(session, step, SpsStatus.STARTED, actor=STAFF)
        assert step.status == "STARTED"
        assert step not in session.dirty, "the object knows its row: no second UPDATE"
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "status")  # type: ignore[arg-type]
        ).one()
    assert _statuses(factory)["SPS1"] == "STARTED"
    assert audited.detail["before"] == {"status": "ARRIVED"}
