"""The benchmark's raw-socket MPPS client really performs steps, like a modality.

``make bench`` reports MPPS pairs per second from ``bench.dimse.MppsClient``; if its requests
were refused or changed nothing, the figure would time error answers. Here it runs against the
broker's real DICOM listener and the database says what happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from app.db import session_scope
from app.models import AuditEvent, PerformedProcedureStep, ScheduledProcedureStep
from bench.dimse import AssociationError, MppsClient
from bench.measure import _n_create, _n_set, mpps_pairs, mpps_uid
from bench.workload import Step, day
from tests.support.scp import Scp, start_scp

STEPS = [Step(index=n, patient=n, station=4, day=5, time="090000") for n in range(3)]


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path)
    for step in STEPS:
        server.add(
            patient_id=f"P{step.patient}",
            accession=f"ACC{step.index}",
            study_uid=step.study_uid,
            sps_id=step.sps_id,
            station=step.station_ae,
            date=day(step.day),
            modality=step.modality,
            extra={"00401001": {"vr": "SH", "Value": [f"RP{step.index}"]}},  # as the bench's
        )
    yield server
    server.stop()


def _step_statuses(scp: Scp) -> list[str]:
    with session_scope(scp.factory) as s:
        rows = s.exec(select(ScheduledProcedureStep).order_by(col(ScheduledProcedureStep.id)))
        return [row.status for row in rows]


def _mpps_statuses(scp: Scp) -> dict[str, str]:
    with session_scope(scp.factory) as s:
        return {row.sop_instance_uid: row.status for row in s.exec(select(PerformedProcedureStep))}


def _status_audits(scp: Scp) -> list[str]:
    with session_scope(scp.factory) as s:
        rows = s.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "status", AuditEvent.entity == "scheduled_procedure_step")
            .order_by(col(AuditEvent.id))
        )
        return [row.detail["after"]["status"] for row in rows]


def test_create_then_set_move_the_step_and_are_recorded(scp: Scp) -> None:
    step = STEPS[0]
    with MppsClient("127.0.0.1", scp.port, "MWLBROKER") as client:
        pair = client.encode(mpps_uid(step), _n_create(step), _n_set(step))

        assert client.send(pair.create) == 0x0000
        assert _step_statuses(scp)[0] == "STARTED"
        assert _mpps_statuses(scp) == {pair.uid: "IN PROGRESS"}

        assert client.send(pair.set) == 0x0000
        assert _step_statuses(scp)[0] == "COMPLETED"
        assert _mpps_statuses(scp) == {pair.uid: "COMPLETED"}

        # a repeated N-CREATE is refused (0x0111 Duplicate SOP Instance): statuses are read
        assert client.send(pair.create) == 0x0111
    assert _status_audits(scp) == ["STARTED", "COMPLETED"]


def test_the_bench_measure_counts_only_successful_pairs(scp: Scp) -> None:
    timing = mpps_pairs(scp.port, "MWLBROKER", STEPS)

    assert (len(timing.samples), timing.refused) == (3, 0)
    assert _step_statuses(scp) == ["COMPLETED"] * 3
    assert set(_mpps_statuses(scp).values()) == {"COMPLETED"}
    assert len(_status_audits(scp)) == 6

    again = mpps_pairs(scp.port, "MWLBROKER", STEPS)  # same UIDs: every N-CREATE refused
    assert (len(again.samples), again.refused) == (0, 3)


def test_a_rejected_association_is_an_error(scp: Scp) -> None:
    with (
        pytest.raises(AssociationError, match="not accepted"),
        MppsClient("127.0.0.1", scp.port, "NOT-THE-BROKER"),
    ):
        pass
