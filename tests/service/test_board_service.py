"""The board read service on real tables (SQLite and PostgreSQL): day, filters, search, order."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from app.db import SessionFactory, session_scope
from app.domain.errors import ValidationError
from app.domain.matching import person_name_key
from app.domain.status import SpsStatus
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    ScheduledStationAETitle,
)
from app.schemas import BoardRow
from app.services.board import day_board


def add(
    session: Session,
    *,
    pid: str,
    name: str,
    accession: str,
    start: str,
    stations: tuple[str, ...] = ("CT01",),
    modality: str = "CT",
    status: SpsStatus = SpsStatus.SCHEDULED,
) -> int:
    patient = Patient(patient_id=pid, name=name, name_key=person_name_key(name), sex="F")
    session.add(patient)
    session.flush()
    assert patient.id is not None
    order = ImagingServiceRequest(patient_pk=patient.id, accession_number=accession)
    session.add(order)
    session.flush()
    assert order.id is not None
    procedure = RequestedProcedure(
        order_pk=order.id,
        requested_procedure_id="RP" + accession,
        study_instance_uid="1.2.3." + accession.removeprefix("A"),
        description="CT HEAD",
    )
    session.add(procedure)
    session.flush()
    assert procedure.id is not None
    step = ScheduledProcedureStep(
        procedure_pk=procedure.id,
        sps_id="SPS" + accession,
        station_ae_title="\\".join(stations),
        start_datetime=start,
        modality=modality,
        description="head",
        status=status.value,
    )
    session.add(step)
    session.flush()
    assert step.id is not None
    for title in stations:
        session.add(ScheduledStationAETitle(sps_pk=step.id, ae_title=title))
    return step.id


@pytest.fixture
def day(session_factory: SessionFactory) -> SessionFactory:
    with session_scope(session_factory) as s:
        add(s, pid="P1", name="DOE^JANE", accession="A1", start="20261201083000")
        add(
            s,
            pid="P2",
            name="MÜLLER^ANNA",
            accession="A2",
            start="20261201073000",
            stations=("MR01",),
            modality="MR",
            status=SpsStatus.STARTED,
        )
        add(
            s,
            pid="P3",
            name="SMITH^JOHN",
            accession="A3",
            start="20261201120000",
            stations=("CT01", "CT02"),
        )
        add(s, pid="P4", name="DOE^JOHN", accession="A4", start="20261202080000")
        add(s, pid="P5", name="ROE^RITA", accession="A5", start="20261130235959")
    return session_factory


def board(factory: SessionFactory, **filters: str) -> list[BoardRow]:
    with session_scope(factory) as s:
        return day_board(s, **filters)


def test_one_day_in_start_order_with_patient_and_order(day: SessionFactory) -> None:
    rows = board(day, day="20261201")
    assert [r.accession_number for r in rows] == ["A2", "A1", "A3"]
    first = rows[0]
    assert first.patient_name == "MÜLLER^ANNA" and first.patient_id == "P2"
    assert first.station_ae_titles == ("MR01",) and first.modality == "MR"
    assert first.start_date == "20261201" and first.start_time == "073000"
    assert first.status is SpsStatus.STARTED
    assert first.procedure_description == "CT HEAD" and first.study_instance_uid == "1.2.3.2"
    assert rows[2].station_ae_titles == ("CT01", "CT02")


def test_filters_modality_and_station(day: SessionFactory) -> None:
    assert [r.accession_number for r in board(day, day="20261201", modality="CT")] == ["A1", "A3"]
    assert [r.accession_number for r in board(day, day="20261201", station="CT02")] == ["A3"]
    assert board(day, day="20261201", station="MR01", modality="CT") == []


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("doe", ["A1"]),
        ("Doe, Jane", ["A1"]),
        ("müller", ["A2"]),
        ("P3", ["A3"]),
        ("A2", ["A2"]),
        ("john", ["A3"]),
        ("nobody", []),
        ("100%", []),
    ],
)
def test_search_name_id_accession(day: SessionFactory, q: str, expected: list[str]) -> None:
    assert [r.accession_number for r in board(day, day="20261201", q=q)] == expected


def test_bad_day_is_a_validation_error(day: SessionFactory) -> None:
    for bad in ("2026-12-01", "20261301", ""):
        with pytest.raises(ValidationError):
            board(day, day=bad)
