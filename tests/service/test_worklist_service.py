"""Worklist service on real tables: SQLite and PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, text
from sqlmodel import select

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import ConflictError, InvalidTransitionError, NotFoundError
from app.domain.items import item_from_json
from app.domain.status import AuditSource, SpsStatus
from app.domain.worklist import parse_worklist_query
from app.models import (
    AuditEvent,
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    ScheduledStationAETitle,
)
from app.services import read, worklist
from tests.support.items import mwl_item

REST = AuditSource.REST


def put(factory: SessionFactory, **kwargs: Any) -> worklist.StoredItem:
    with session_scope(factory) as session:
        return worklist.upsert_item(
            session, data=item_from_json(mwl_item(**kwargs)), actor=Actor(REST)
        )


def find(factory: SessionFactory, keys: dict[str, str]) -> list[dict[str, Any]]:
    with session_scope(factory) as session:
        return list(worklist.find(session, query=parse_worklist_query(keys)))


def sps_ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["00400100"]["Value"][0]["00400009"]["Value"][0] for i in items]


def count(factory: SessionFactory, model: Any) -> int:
    with session_scope(factory) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


class TestUpsert:
    def test_create_then_update_by_study_and_sps(self, session_factory: SessionFactory) -> None:
        first = put(session_factory, station="CT01")
        second = put(session_factory, station="CT02", date="20261202")
        assert first.created and not second.created
        assert first.step_pk == second.step_pk
        assert count(session_factory, ScheduledProcedureStep) == 1
        assert sps_ids(find(session_factory, {"ScheduledStationAETitle": "CT02"})) == ["SPS1"]
        assert find(session_factory, {"ScheduledStationAETitle": "CT01"}) == []

    def test_patient_and_order_are_shared(self, session_factory: SessionFactory) -> None:
        put(session_factory, sps_id="S1")
        put(session_factory, sps_id="S2", study_uid="1.2.3.4.2")
        assert count(session_factory, Patient) == 1
        assert count(session_factory, ImagingServiceRequest) == 1  # same accession, same patient
        assert count(session_factory, RequestedProcedure) == 2

    def test_study_of_another_patient_is_a_conflict(self, session_factory: SessionFactory) -> None:
        put(session_factory)
        with pytest.raises(ConflictError):
            put(session_factory, patient_id="OTHER")

    def test_update_keeps_status_unless_given(self, session_factory: SessionFactory) -> None:
        put(session_factory)
        with session_scope(session_factory) as s:
            worklist.set_status(
                s, study_uid="1.2.3.4.1", sps_id="SPS1", status=SpsStatus.ARRIVED, actor=Actor(REST)
            )
        put(session_factory, modality="MR")
        with session_scope(session_factory) as s:
            item = worklist.get_item(s, study_uid="1.2.3.4.1", sps_id="SPS1")
        step = item["00400100"]["Value"][0]
        assert step["00400020"]["Value"] == ["ARRIVED"]
        assert step["00080060"]["Value"] == ["MR"]

    def test_every_change_is_audited(self, session_factory: SessionFactory) -> None:
        put(session_factory)
        put(session_factory, modality="MR")
        with session_scope(session_factory) as s:
            worklist.set_status(
                s,
                study_uid="1.2.3.4.1",
                sps_id="SPS1",
                status=SpsStatus.STARTED,
                actor=Actor(AuditSource.DICOM),
            )
            events = s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()  # type: ignore[arg-type]
            summary = [(e.source, e.action, e.entity) for e in events]
        assert ("REST", "create", "patient") in summary
        assert ("REST", "create", "scheduled_procedure_step") in summary
        assert ("REST", "update", "scheduled_procedure_step") in summary
        assert ("DICOM", "status", "scheduled_procedure_step") in summary

    def test_unicode_names_are_kept_exactly(self, session_factory: SessionFactory) -> None:
        name = {
            "Alphabetic": "Yamada^Tarou",
            "Ideographic": "山田^太郎",
            "Phonetic": "やまだ^たろう",
        }
        put(session_factory, name=name)
        item = find(session_factory, {"PatientName": "山田*"})[0]
        assert item["00100010"]["Value"] == [name]


class TestFind:
    def test_matches_agree_with_the_pure_matcher(self, session_factory: SessionFactory) -> None:
        """The SQL narrows, the domain decides: results equal a brute-force match of all items."""
        rows = [
            dict(
                sps_id="S1",
                patient_id="P1",
                name="DOE^JANE",
                station=["CT01", "CT02"],
                date="20261201",
                time_="080000",
                modality="CT",
                accession="A1",
            ),
            dict(
                sps_id="S2",
                patient_id="P2",
                name="doe^john",
                station="MR01",
                date="20261201",
                time_="120000",
                modality="MR",
                accession="A_2",
            ),
            dict(
                sps_id="S3",
                patient_id="P3",
                name="MÜLLER^JOSÉ",
                station="CT01",
                date="20261202",
                time_="235959",
                modality="CT",
                accession="A%3",
                sex="M",
            ),
            dict(
                sps_id="S4",
                patient_id="P4",
                name={"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"},
                station="US1",
                date="20261130",
                time_="000000",
                modality="US",
                accession="",
                birth_date="",
            ),
            dict(
                sps_id="S5",
                patient_id="P5",
                name="SMITH",
                station="CT02",
                date="20261203",
                time_="101010",
                modality="CT",
                accession="B1",
                status="COMPLETED",
            ),
        ]
        for index, row in enumerate(rows):
            put(session_factory, study_uid=f"1.2.9.{index}", **row)  # type: ignore[arg-type]
        queries: list[dict[str, str]] = [
            {},
            {"ScheduledStationAETitle": "CT02"},
            {"ScheduledStationAETitle": "CT*"},
            {"ScheduledStationAETitle": "ct01"},
            {"Modality": "CT"},
            {"Modality": "?R"},
            {"PatientName": "DOE*"},
            {"PatientName": "*j*"},
            {"PatientName": "müller^josé"},
            {"PatientName": "山田^太郎"},
            {"PatientName": "=山田*"},
            {"PatientName": "Y?mada*"},
            {"AccessionNumber": "A_2"},
            {"AccessionNumber": "A%*"},
            {"AccessionNumber": "a*"},
            {"AccessionNumber": "*"},
            {"PatientBirthDate": "-19900101"},
            {"ScheduledProcedureStepStartDate": "20261201"},
            {
                "ScheduledProcedureStepStartDate": "20261201-20261202",
                "ScheduledProcedureStepStartTime": "1000-2359",
            },
            {"ScheduledProcedureStepStartTime": "0000-1000"},
            {"ScheduledProcedureStepStatus": "COMPLETED"},
            {"ScheduledProcedureStepStatus": "*ED"},
            {"PatientSex": "M"},
            {"StudyInstanceUID": "1.2.9.0\\1.2.9.3"},
            {"PatientID": "P?"},
            {"ScheduledPerformingPhysicianName": "house*"},
        ]
        with session_scope(session_factory) as s:
            all_rows = [tuple(r) for r in s.execute(read.joined())]
            for keys in queries:
                query = parse_worklist_query(keys)
                expected = sorted(r[0].sps_id for r in all_rows if query.matches(read.record_of(r)))  # type: ignore[arg-type]
                got = sorted(sps_ids(list(worklist.find(s, query=query))))
                assert got == expected, keys

    def test_results_come_in_start_order(self, session_factory: SessionFactory) -> None:
        put(session_factory, sps_id="LATE", study_uid="1.2.1", time_="170000")
        put(session_factory, sps_id="EARLY", study_uid="1.2.2", time_="070000")
        assert sps_ids(find(session_factory, {})) == ["EARLY", "LATE"]

    def test_final_steps_are_hidden_unless_asked(self, session_factory: SessionFactory) -> None:
        for status in ("COMPLETED", "DISCONTINUED", "CANCELED"):
            put(session_factory, sps_id=status[:8], study_uid=f"1.2.{len(status)}", status=status)
        put(session_factory, sps_id="OPEN", study_uid="1.2.99")
        assert sps_ids(find(session_factory, {})) == ["OPEN"]
        assert sps_ids(find(session_factory, {"ScheduledProcedureStepStatus": "CANCELED"})) == [
            "CANCELED"
        ]


class TestStatusAndDelete:
    def test_final_step_cannot_restart(self, session_factory: SessionFactory) -> None:
        put(session_factory)
        with session_scope(session_factory) as s:
            worklist.set_status(
                s,
                study_uid="1.2.3.4.1",
                sps_id="SPS1",
                status=SpsStatus.COMPLETED,
                actor=Actor(REST),
            )
        with pytest.raises(InvalidTransitionError), session_scope(session_factory) as s:
            worklist.set_status(
                s, study_uid="1.2.3.4.1", sps_id="SPS1", status=SpsStatus.STARTED, actor=Actor(REST)
            )

    def test_delete_removes_empty_parents(self, session_factory: SessionFactory) -> None:
        put(session_factory)
        with session_scope(session_factory) as s:
            worklist.delete_item(s, study_uid="1.2.3.4.1", sps_id="SPS1", actor=Actor(REST))
        assert count(session_factory, ScheduledProcedureStep) == 0
        assert count(session_factory, ScheduledStationAETitle) == 0
        assert count(session_factory, RequestedProcedure) == 0
        assert count(session_factory, ImagingServiceRequest) == 0
        assert count(session_factory, Patient) == 1  # patients outlive their orders
        with pytest.raises(NotFoundError), session_scope(session_factory) as s:
            worklist.get_item(s, study_uid="1.2.3.4.1", sps_id="SPS1")


# ---------------------------------------------------------------------------------------------
# Index use: one station, one day, over 10,000 steps


def bulk_load(engine: Engine, steps: int = 10_000, stations: int = 20, days: int = 50) -> None:
    """Insert ``steps`` steps spread over stations and days, fast (no ORM)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Patient),
            [
                {
                    "id": i,
                    "patient_id": f"P{i}",
                    "issuer_of_patient_id": "",
                    "name": f"PAT^{i}",
                    "name_key": f"pat^{i}",
                    "birth_date": "19700101",
                    "sex": "O",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, 1001)
            ],
        )
        conn.execute(
            insert(ImagingServiceRequest),
            [
                {
                    "id": i,
                    "patient_pk": (i % 1000) + 1,
                    "accession_number": f"ACC{i}",
                    "placer_order_number": "",
                    "filler_order_number": "",
                    "requesting_physician": "",
                    "referring_physician_name": "",
                    "admission_id": "",
                    "current_patient_location": "",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, steps + 1)
            ],
        )
        conn.execute(
            insert(RequestedProcedure),
            [
                {
                    "id": i,
                    "order_pk": i,
                    "requested_procedure_id": f"RP{i}",
                    "study_instance_uid": f"1.2.840.9.{i}",
                    "description": "",
                    "priority": "",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, steps + 1)
            ],
        )
        conn.execute(
            insert(ScheduledProcedureStep),
            [
                {
                    "id": i,
                    "procedure_pk": i,
                    "sps_id": f"S{i}",
                    "station_ae_title": f"ST{i % stations}",
                    "start_datetime": f"202612{(i % days) % 28 + 1:02d}{8 + i % 10:02d}0000",
                    "modality": "CT",
                    "performing_physician": "",
                    "performing_physician_key": "",
                    "description": "",
                    "station_name": "",
                    "location": "",
                    "status": "SCHEDULED",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, steps + 1)
            ],
        )
        conn.execute(
            insert(ScheduledStationAETitle),
            [{"sps_pk": i, "ae_title": f"ST{i % stations}"} for i in range(1, steps + 1)],
        )


def explain(engine: Engine, statement: Any) -> str:
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            return "\n".join(str(r[-1]) for r in rows)
        conn.execute(text("ANALYZE"))
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar_one()
        return json.dumps(plan)


def test_station_and_day_query_uses_indexes(database_url: str) -> None:
    from app.db import create_db_engine

    engine = create_db_engine(database_url)
    try:
        bulk_load(engine)
        query = parse_worklist_query(
            {
                "ScheduledStationAETitle": "ST4",
                "ScheduledProcedureStepStartDate": "20261215",
            }
        )
        candidates, params = read.candidates_statement(query)  # the C-FIND hot path
        for statement in (read.find_statement(query), candidates.params(params)):
            plan = explain(engine, statement)
            big_tables = ("scheduled_procedure_step", "scheduled_station_ae_title")
            if engine.dialect.name == "sqlite":
                scans = [
                    line
                    for line in plan.splitlines()
                    if line.startswith("SCAN") and any(t in line for t in big_tables)
                ]
            else:
                nodes = json.loads(plan)
                scans = [
                    n
                    for n in _pg_nodes(nodes)
                    if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") in big_tables
                ]
            assert not scans, f"table scan in plan:\n{plan}"
        factory = _factory(engine)
        with session_scope(factory) as s:
            found = list(worklist.find(s, query=query))
        assert found and all(
            i["00400100"]["Value"][0]["00400002"]["Value"] == ["20261215"] for i in found
        )
    finally:
        engine.dispose()


def _factory(engine: Engine) -> SessionFactory:
    from app.db import create_session_factory

    return create_session_factory(engine)


def _pg_nodes(plan: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = [p["Plan"] for p in plan] if isinstance(plan, list) else [plan]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.get("Plans", []))
    return out


def test_deleting_the_last_step_audits_the_procedure_and_order_it_takes_along(
    session_factory: SessionFactory,
) -> None:
    put(session_factory)
    with session_scope(session_factory) as s:
        worklist.delete_item(s, study_uid="1.2.3.4.1", sps_id="SPS1", actor=Actor(REST, "desk"))
    with session_scope(session_factory) as s:
        deletes = s.exec(select(AuditEvent).where(AuditEvent.action == "delete")).all()
        assert sorted(e.entity for e in deletes) == [
            "order",
            "requested_procedure",
            "scheduled_procedure_step",
        ]
        assert {e.actor for e in deletes} == {"desk"}
        order = next(e for e in deletes if e.entity == "order")
        assert order.detail["before"] == {"accession_number": "A1"}
