"""Worklist policies on real tables (SQLite and PostgreSQL): CRUD, audit, and C-FIND matching."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from sqlmodel import col, select

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import ConflictError, MissingValueError, NotFoundError, ValidationError
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.domain.worklist import parse_worklist_query
from app.domain.worklist_policy import PolicyKind, WorklistPolicy, apply_policy
from app.models import AuditEvent
from app.services import read, worklist, worklist_policies
from app.services.worklist_policies import PolicyData
from tests.support.items import mwl_item

ADMIN = Actor(AuditSource.WEB, "alice")
NONE, CALLING_AE, RESTRICT = PolicyKind.NONE, PolicyKind.CALLING_AE, PolicyKind.RESTRICT

# sps_id -> (stations, modality)
ITEMS: dict[str, tuple[list[str], str]] = {
    "S-CT1": (["CT01"], "CT"),
    "S-CT2": (["CT01"], "CT"),
    "S-MR1": (["MR01"], "MR"),
    "S-BOTH": (["CT01", "MR01"], "MR"),
    "S-US": (["US01"], "US"),
}


@pytest.fixture
def items(session_factory: SessionFactory) -> SessionFactory:
    with session_scope(session_factory) as session:
        for n, (sps_id, (stations, modality)) in enumerate(ITEMS.items()):
            data = mwl_item(
                sps_id=sps_id,
                station=stations,
                modality=modality,
                study_uid=f"1.2.826.0.1.3680043.10.543.77.{n}",
                time_=f"08{n:02d}00",
            )
            worklist.upsert_item(session, data=item_from_json(data), actor=ADMIN)
    return session_factory


def create(factory: SessionFactory, ae: str, policy: str, **lists: Any) -> int:
    data = PolicyData(ae, policy, *(tuple(lists.get(k, ())) for k in ("stations", "modalities")))
    with session_scope(factory) as session:
        return worklist_policies.create_policy(session, data=data, actor=ADMIN).id


def found(
    factory: SessionFactory, calling_ae: str, default: PolicyKind = NONE, **keys: str
) -> list[str]:
    with session_scope(factory) as session:
        results = worklist_policies.find(
            session, query=parse_worklist_query(keys), calling_ae=calling_ae, default=default
        )
        return [item["00400100"]["Value"][0]["00400009"]["Value"][0] for item in results]


def audit_rows(factory: SessionFactory) -> list[AuditEvent]:
    with session_scope(factory) as session:
        rows = session.exec(
            select(AuditEvent)
            .where(AuditEvent.entity == worklist_policies.ENTITY)
            .order_by(col(AuditEvent.id))
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


class TestCrud:
    def test_create_read_update_delete_with_audit(self, session_factory: SessionFactory) -> None:
        pk = create(session_factory, " CT01 ", "restrict", modalities=["ct", "CT", "MR"])
        with session_scope(session_factory) as session:
            view = worklist_policies.get_policy(session, pk=pk)
        assert view.calling_ae_title == "CT01"  # spaces are not significant in AE
        assert view.modalities == ("CT", "MR")  # upper-cased, duplicates dropped
        with pytest.raises((FrozenInstanceError, ValueError, TypeError)):
            view.policy = "none"  # type: ignore[misc]
        with session_scope(session_factory) as session:
            updated = worklist_policies.update_policy(
                session, pk=pk, data=PolicyData("CT01", "calling_ae"), actor=ADMIN
            )
        assert updated.policy == "calling_ae" and updated.modalities == ()
        with session_scope(session_factory) as session:
            assert [v.id for v in worklist_policies.list_policies(session)] == [pk]
            worklist_policies.delete_policy(session, pk=pk, actor=ADMIN)
        with session_scope(session_factory) as session, pytest.raises(NotFoundError):
            worklist_policies.get_policy(session, pk=pk)
        trail = audit_rows(session_factory)
        assert [(e.action, e.source, e.actor, e.entity_pk) for e in trail] == [
            ("create", "WEB", "alice", pk),
            ("update", "WEB", "alice", pk),
            ("delete", "WEB", "alice", pk),
        ]
        assert trail[0].detail["after"]["modalities"] == ["CT", "MR"]
        assert trail[1].detail["before"] == {"policy": "restrict", "modalities": ["CT", "MR"]}
        assert trail[1].detail["after"] == {"policy": "calling_ae", "modalities": []}
        assert trail[2].detail["before"]["calling_ae_title"] == "CT01"

    def test_an_unchanged_update_writes_no_audit_row(self, session_factory: SessionFactory) -> None:
        pk = create(session_factory, "CT01", "none")
        with session_scope(session_factory) as session:
            worklist_policies.update_policy(
                session, pk=pk, data=PolicyData("CT01", "none"), actor=ADMIN
            )
        assert [e.action for e in audit_rows(session_factory)] == ["create"]

    def test_one_policy_per_calling_ae(self, session_factory: SessionFactory) -> None:
        create(session_factory, "CT01", "none")
        other = create(session_factory, "MR01", "none")
        with pytest.raises(ConflictError) as info:
            create(session_factory, "CT01", "calling_ae")
        assert info.value.field == "calling_ae_title"
        with pytest.raises(ConflictError), session_scope(session_factory) as session:
            worklist_policies.update_policy(
                session, pk=other, data=PolicyData("CT01", "none"), actor=ADMIN
            )

    @pytest.mark.parametrize(
        ("data", "error", "field"),
        [
            (PolicyData("", "none"), MissingValueError, "calling_ae_title"),
            (PolicyData("A" * 17, "none"), ValidationError, "calling_ae_title"),
            (PolicyData("CT\\01", "none"), ValidationError, "calling_ae_title"),
            (PolicyData("CT01", "station"), ValidationError, "policy"),
            (PolicyData("CT01", "restrict", ("B\\AD",)), ValidationError, "station_ae_titles"),
            (PolicyData("CT01", "restrict", (), ("C-T",)), ValidationError, "modalities"),
            (PolicyData("CT01", "calling_ae", ("CT01",)), ValidationError, "station_ae_titles"),
            (PolicyData("CT01", "none", (), ("CT",)), ValidationError, "modalities"),
        ],
    )
    def test_validation(
        self,
        session_factory: SessionFactory,
        data: PolicyData,
        error: type[Exception],
        field: str,
    ) -> None:
        with pytest.raises(error) as info, session_scope(session_factory) as session:
            worklist_policies.create_policy(session, data=data, actor=ADMIN)
        assert getattr(info.value, "field", None) == field
        assert "ScheduledStationAETitle" not in str(info.value)
        assert audit_rows(session_factory) == []

    def test_missing_rows_are_not_found(self, session_factory: SessionFactory) -> None:
        with session_scope(session_factory) as session:
            with pytest.raises(NotFoundError):
                worklist_policies.update_policy(
                    session, pk=999, data=PolicyData("CT01", "none"), actor=ADMIN
                )
            with pytest.raises(NotFoundError):
                worklist_policies.delete_policy(session, pk=999, actor=ADMIN)


class TestPolicyFor:
    def test_row_or_default(self, session_factory: SessionFactory) -> None:
        create(session_factory, "CT01", "restrict", stations=["CT01", "CT02"])
        with session_scope(session_factory) as session:
            row = worklist_policies.policy_for(session, calling_ae="CT01 ", default=CALLING_AE)
            other = worklist_policies.policy_for(session, calling_ae="ct01", default=CALLING_AE)
        assert row == WorklistPolicy(RESTRICT, ("CT01", "CT02"))
        assert other == WorklistPolicy(CALLING_AE)  # AE titles are compared exactly


class TestFind:
    def test_no_policy_returns_everything(self, items: SessionFactory) -> None:
        assert sorted(found(items, "CT01")) == sorted(ITEMS)

    def test_calling_ae_gives_each_ae_its_own_items(self, items: SessionFactory) -> None:
        create(items, "CT01", "calling_ae")
        create(items, "MR01", "calling_ae")
        assert found(items, "CT01") == ["S-CT1", "S-CT2", "S-BOTH"]
        assert found(items, "MR01") == ["S-MR1", "S-BOTH"]
        assert found(items, "CT01", ScheduledStationAETitle="US01") == ["S-US"]  # named: kept
        assert found(items, "US01") == list(ITEMS)  # no row, default none

    def test_default_policy_applies_to_aes_without_a_row(self, items: SessionFactory) -> None:
        create(items, "CT01", "none")
        assert found(items, "US01", CALLING_AE) == ["S-US"]
        assert found(items, "US01", RESTRICT, ScheduledStationAETitle="CT01") == []
        assert found(items, "CT01", RESTRICT) == list(ITEMS)  # its row says none

    def test_restrict_to_stations_and_modalities(self, items: SessionFactory) -> None:
        create(items, "CT01", "restrict")
        create(items, "WS1", "restrict", stations=["CT01", "MR01"], modalities=["MR"])
        create(items, "MRVIEW", "restrict", modalities=["MR"])
        assert found(items, "CT01") == ["S-CT1", "S-CT2", "S-BOTH"]
        assert found(items, "CT01", ScheduledStationAETitle="MR01") == []
        assert found(items, "CT01", ScheduledStationAETitle="*") == ["S-CT1", "S-CT2", "S-BOTH"]
        assert found(items, "WS1") == ["S-MR1", "S-BOTH"]
        assert found(items, "WS1", Modality="CT") == []
        assert found(items, "MRVIEW", ScheduledStationAETitle="MR*") == ["S-MR1", "S-BOTH"]

    @pytest.mark.parametrize(
        ("policy", "keys", "matches"),
        [
            (WorklistPolicy(RESTRICT), {}, 3),
            (WorklistPolicy(RESTRICT), {"ScheduledStationAETitle": "MR01"}, 0),
            (WorklistPolicy(RESTRICT, ("CT01", "MR01")), {"ScheduledStationAETitle": "?R*"}, 2),
            (WorklistPolicy(RESTRICT, (), ("MR", "US")), {"Modality": "M*"}, 2),
            (WorklistPolicy(RESTRICT, ("MR01", "US01"), ("MR",)), {}, 2),
            (WorklistPolicy(CALLING_AE), {}, 3),
        ],
    )
    def test_sql_agrees_with_the_pure_matcher(
        self,
        items: SessionFactory,
        policy: WorklistPolicy,
        keys: dict[str, str],
        matches: int,
    ) -> None:
        """The SQL narrows, the domain decides: equal to a brute-force match of every item."""
        applied = apply_policy(parse_worklist_query(keys), policy, "CT01")
        with session_scope(items) as session:
            everything = [
                tuple(row) for row in session.execute(read.find_statement(parse_worklist_query({})))
            ]
            expected = [
                row[0].sps_id
                for row in everything
                if applied.matches(read.record_of(row))  # type: ignore[arg-type]
            ]
            got = [
                item["00400100"]["Value"][0]["00400009"]["Value"][0]
                for item in worklist.find(session, query=applied)
            ]
        assert got == expected
        assert len(expected) == matches
