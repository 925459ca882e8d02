"""Cached worklist items and encoded answers never outlive a change, whoever makes it.

The cache key is the version read with each match (primary keys and ``updated_at`` of step,
procedure, order and patient), so a change committed through another engine (another broker on
the same database) shows in the next C-FIND without any event reaching this listener. Both
databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, Association
from pynetdicom.sop_class import ModalityWorklistInformationFind

from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource, SpsStatus
from app.services import worklist
from dicom_scp.server import DicomServer
from tests.support.items import mwl_item
from tests.support.scp import Scp, start_scp

MWL = ModalityWorklistInformationFind
OTHER_BROKER = Actor(AuditSource.CLI, "other-broker")


@pytest.fixture
def scp(database_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(database_url, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def assoc(scp: Scp) -> Iterator[Association]:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(MWL)
    association = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
    assert association.is_established
    yield association
    association.release()


def _identifier() -> Dataset:
    ds = Dataset()
    ds.PatientName = ""
    ds.AccessionNumber = ""
    step = Dataset()
    step.ScheduledStationAETitle = "CT01"
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProcedureStepStatus = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _find(assoc: Association) -> list[Dataset]:
    out = []
    for status, ds in assoc.send_c_find(_identifier(), MWL):
        if status.Status in (0xFF00, 0xFF01):
            out.append(ds)
        else:
            assert status.Status == 0x0000
    return out


def _other_broker_writes(url: str, **item: Any) -> None:
    """A change through another engine: nothing in this process hears of it."""
    engine = create_db_engine(url)
    try:
        with session_scope(create_session_factory(engine)) as s:
            worklist.upsert_item(s, data=item_from_json(mwl_item(**item)), actor=OTHER_BROKER)
    finally:
        engine.dispose()


def test_changes_by_another_broker_show_in_the_next_find(
    scp: Scp, assoc: Association, database_url: str
) -> None:
    scp.add(name="DOE^JANE", accession="A1")
    (first,) = _find(assoc)
    (again,) = _find(assoc)  # answered from the caches
    assert str(again.PatientName) == str(first.PatientName) == "DOE^JANE"

    _other_broker_writes(database_url, name="DOE^JOAN", accession="A1")  # the patient row
    (renamed,) = _find(assoc)
    assert str(renamed.PatientName) == "DOE^JOAN"

    _other_broker_writes(
        database_url,
        name="DOE^JOAN",
        accession="A1",
        step_extra={"00400007": {"vr": "LO", "Value": ["CT CHEST"]}},
    )  # the step row
    (described,) = _find(assoc)
    assert described.ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription == (
        "CT CHEST"
    )


def test_status_change_shows_and_final_steps_leave_the_list(
    scp: Scp, assoc: Association, database_url: str
) -> None:
    scp.add()
    assert _find(assoc)[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == (
        "SCHEDULED"
    )
    engine = create_db_engine(database_url)
    try:
        factory = create_session_factory(engine)
        with session_scope(factory) as s:
            worklist.set_status(
                s,
                study_uid="1.2.3.4.1",
                sps_id="SPS1",
                status=SpsStatus.STARTED,
                actor=OTHER_BROKER,
            )
        (started,) = _find(assoc)
        assert started.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"
        with session_scope(factory) as s:
            worklist.delete_item(s, study_uid="1.2.3.4.1", sps_id="SPS1", actor=OTHER_BROKER)
        assert _find(assoc) == []
    finally:
        engine.dispose()


def test_the_listener_keeps_items_and_answers_between_queries(scp: Scp, assoc: Association) -> None:
    for n in range(3):
        scp.add(sps_id=f"SPS{n}", study_uid=f"1.2.3.{n}")
    assert len(_find(assoc)) == 3
    server: DicomServer = scp.server
    assert server.context is not None
    assert len(server.context.items) == 3
    assert len(_find(assoc)) == 3
    assert len(server.context.items) == 3  # the same versions: nothing added
