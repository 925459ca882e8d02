"""Worklist policies over real associations: the calling AE decides what a C-FIND sees."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from app.db import session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource
from app.services import worklist_policies
from app.services.worklist_policies import PolicyData
from tests.support.scp import Scp, start_scp

MWL = ModalityWorklistInformationFind
ADMIN = Actor(AuditSource.CLI, "tests")


def add_items(scp: Scp) -> None:
    for n, (sps_id, station, modality) in enumerate(
        (("S-CT", "CT01", "CT"), ("S-MR", "MR01", "MR"), ("S-BOTH", ["CT01", "MR01"], "MR"))
    ):
        scp.add(
            sps_id=sps_id,
            station=station,
            modality=modality,
            study_uid=f"1.2.826.0.1.3680043.10.543.88.{n}",
            time_=f"09{n:02d}00",
        )


def set_policy(scp: Scp, calling_ae: str, policy: str, *stations: str) -> None:
    with session_scope(scp.factory) as session:
        worklist_policies.create_policy(
            session, data=PolicyData(calling_ae, policy, stations), actor=ADMIN
        )


def find_as(scp: Scp, calling_ae: str, station: str | None = None) -> list[tuple[str, str]]:
    """C-FIND as ``calling_ae``: (SPS ID, stations as returned) of each Pending response."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(MWL)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
    assert assoc.is_established
    identifier = Dataset()
    identifier.PatientID = ""
    step = Dataset()
    step.ScheduledProcedureStepID = ""
    if station is not None:
        step.ScheduledStationAETitle = station
    identifier.ScheduledProcedureStepSequence = [step]
    found: list[tuple[str, str]] = []
    final = None
    try:
        for status, ds in assoc.send_c_find(identifier, MWL):
            if status.Status in (0xFF00, 0xFF01):
                item = ds.ScheduledProcedureStepSequence[0]
                stations = item.get("ScheduledStationAETitle", "<absent>")
                found.append((item.ScheduledProcedureStepID, str(stations)))
            else:
                final = int(status.Status)
    finally:
        assoc.release()
    assert final == 0x0000
    return found


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path)
    add_items(server)
    yield server
    server.stop()


def test_without_policies_every_station_is_returned(scp: Scp) -> None:
    assert [sps for sps, _ in find_as(scp, "CT01")] == ["S-CT", "S-MR", "S-BOTH"]


def test_calling_ae_policy_gives_each_modality_its_own_list(
    scp: Scp, caplog: pytest.LogCaptureFixture
) -> None:
    set_policy(scp, "CT01", "calling_ae")
    set_policy(scp, "MR01", "calling_ae")
    with caplog.at_level(logging.INFO):
        ct = find_as(scp, "CT01")
    assert [sps for sps, _ in ct] == ["S-CT", "S-BOTH"]
    # Only the keys asked for: the station key was not requested, so it is not returned.
    assert {stations for _, stations in ct} == {"<absent>"}
    assert [sps for sps, _ in find_as(scp, "MR01")] == ["S-MR", "S-BOTH"]
    assert [sps for sps, _ in find_as(scp, "CT01", "MR01")] == ["S-MR", "S-BOTH"]  # named: kept
    assert [sps for sps, _ in find_as(scp, "US01")] == ["S-CT", "S-MR", "S-BOTH"]  # no policy
    assert "C-FIND from CT01: worklist policy calling_ae" in caplog.text


def test_requested_station_key_is_returned_with_the_stored_values(scp: Scp) -> None:
    set_policy(scp, "CT01", "calling_ae")
    found = dict(find_as(scp, "CT01", station=""))
    assert found == {"S-CT": "CT01", "S-BOTH": "['CT01', 'MR01']"}


def test_restrict_policy_answers_a_foreign_station_with_nothing(scp: Scp) -> None:
    set_policy(scp, "CT01", "restrict")
    assert find_as(scp, "CT01", "MR01") == []
    assert [sps for sps, _ in find_as(scp, "CT01", "*")] == ["S-CT", "S-BOTH"]
    assert [sps for sps, _ in find_as(scp, "MR01", "MR01")] == ["S-MR", "S-BOTH"]


def test_default_policy_setting(sqlite_url: str, tmp_path: Path) -> None:
    server = start_scp(sqlite_url, tmp_path, mwl_default_policy="restrict")
    try:
        add_items(server)
        set_policy(server, "WS1", "none")
        assert [sps for sps, _ in find_as(server, "MR01")] == ["S-MR", "S-BOTH"]
        assert find_as(server, "MR01", "CT01") == []
        assert len(find_as(server, "WS1")) == 3  # its own row wins over the default
        assert find_as(server, "NOSTATION") == []
    finally:
        server.stop()
