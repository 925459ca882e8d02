"""Worklist policies with DCMTK ``findscu -W`` under two calling AE titles (``-aet``).

The queries carry no Scheduled Station AE Title, as many modalities send them. Policies are
changed over REST while the broker runs; each C-FIND reads the policy of its calling AE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.items import mwl_item
from tests.support.tools import findscu

pytestmark = pytest.mark.interop

ITEMS = [
    mwl_item(
        patient_id="POL-CT",
        accession="ACC-POL-CT",
        study_uid="1.2.826.0.1.3680043.10.543.99.1",
        sps_id="SPS-CT",
        station="CT01",
        modality="CT",
        time_="080000",
    ),
    mwl_item(
        patient_id="POL-MR",
        accession="ACC-POL-MR",
        study_uid="1.2.826.0.1.3680043.10.543.99.2",
        sps_id="SPS-MR",
        station="MR01",
        modality="MR",
        time_="090000",
    ),
    mwl_item(
        patient_id="POL-US",
        accession="ACC-POL-US",
        study_uid="1.2.826.0.1.3680043.10.543.99.3",
        sps_id="SPS-US",
        station="US01",
        modality="US",
        time_="100000",
    ),
]
EVERYTHING = ["SPS-CT", "SPS-MR", "SPS-US"]
KEYS = [
    "PatientID",
    "AccessionNumber",
    "(0040,0100)[0].ScheduledProcedureStepID",
    "(0040,0100)[0].Modality",
]


@pytest.fixture(scope="module")
def posted(broker: BrokerProcess) -> BrokerProcess:
    for item in ITEMS:
        response = httpx.post(
            f"{broker.base_url}/api/mwlitems",
            json=item,
            headers={**broker.headers, "content-type": "application/dicom+json"},
            timeout=10.0,
        )
        assert response.status_code == 201, response.text
    return broker


def put_policy(broker: BrokerProcess, body: dict[str, Any]) -> None:
    """Create or replace the policy of ``body['calling_ae_title']`` over REST."""
    url = f"{broker.base_url}/api/worklist-policies"
    existing = {
        p["calling_ae_title"]: p["id"]
        for p in httpx.get(url, headers=broker.headers, timeout=10.0).json()
    }
    pk = existing.get(body["calling_ae_title"])
    if pk is None:
        response = httpx.post(url, json=body, headers=broker.headers, timeout=10.0)
    else:
        response = httpx.put(f"{url}/{pk}", json=body, headers=broker.headers, timeout=10.0)
    assert response.status_code in (200, 201), response.text


def clear_policies(broker: BrokerProcess) -> None:
    url = f"{broker.base_url}/api/worklist-policies"
    for policy in httpx.get(url, headers=broker.headers, timeout=10.0).json():
        deleted = httpx.delete(f"{url}/{policy['id']}", headers=broker.headers, timeout=10.0)
        assert deleted.status_code == 204


def sps_ids(broker: BrokerProcess, tmp: Path, calling_ae: str, *extra: str) -> list[str]:
    """``findscu -W -aet calling_ae``: the SPS IDs of the responses, in order (exit code 0)."""
    result = findscu(
        broker.dicom_port,
        BROKER_AE,
        tmp / f"{calling_ae}-{len(list(tmp.iterdir()))}",
        keys=[*KEYS, *extra],
        calling_ae=calling_ae,
    )
    assert result.returncode == 0, result.output
    asked_station = any("ScheduledStationAETitle" in key for key in extra)
    for response in result.responses:
        step = response.ScheduledProcedureStepSequence[0]
        # The policy changes what matches, never which keys come back.
        assert ("ScheduledStationAETitle" in step) == asked_station
    return [r.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for r in result.responses]


@pytest.fixture
def broker_without_policies(posted: BrokerProcess) -> BrokerProcess:
    clear_policies(posted)
    return posted


def test_without_a_policy_every_ae_gets_everything(
    broker_without_policies: BrokerProcess, tmp_path: Path
) -> None:
    broker = broker_without_policies
    assert sps_ids(broker, tmp_path, "CT01") == EVERYTHING
    assert sps_ids(broker, tmp_path, "MR01") == EVERYTHING


def test_calling_ae_policy_gives_each_ae_its_own_station(
    broker_without_policies: BrokerProcess, tmp_path: Path
) -> None:
    broker = broker_without_policies
    put_policy(broker, {"calling_ae_title": "CT01", "policy": "calling_ae"})
    put_policy(broker, {"calling_ae_title": "MR01", "policy": "calling_ae"})
    assert sps_ids(broker, tmp_path, "CT01") == ["SPS-CT"]
    assert sps_ids(broker, tmp_path, "MR01") == ["SPS-MR"]
    # A query that names a station keeps it; an AE without a policy still gets everything.
    station_us = "(0040,0100)[0].ScheduledStationAETitle=US01"
    assert sps_ids(broker, tmp_path, "CT01", station_us) == ["SPS-US"]
    assert sps_ids(broker, tmp_path, "FINDSCU") == EVERYTHING
    assert "worklist policy calling_ae" in broker.log()


def test_restrict_policy_gives_nothing_for_another_station(
    broker_without_policies: BrokerProcess, tmp_path: Path
) -> None:
    broker = broker_without_policies
    put_policy(broker, {"calling_ae_title": "CT01", "policy": "restrict"})
    put_policy(
        broker, {"calling_ae_title": "MR01", "policy": "restrict", "modalities": ["MR", "US"]}
    )
    station_mr = "(0040,0100)[0].ScheduledStationAETitle=MR01"
    assert sps_ids(broker, tmp_path, "CT01", station_mr) == []
    assert sps_ids(broker, tmp_path, "CT01") == ["SPS-CT"]
    assert sps_ids(broker, tmp_path, "MR01") == ["SPS-MR", "SPS-US"]
    assert sps_ids(broker, tmp_path, "MR01", "(0040,0100)[0].Modality=CT") == []
    # Back to no policy: the same queries get everything again, without a restart.
    clear_policies(broker)
    assert sps_ids(broker, tmp_path, "CT01", station_mr) == ["SPS-MR"]
    assert sps_ids(broker, tmp_path, "CT01") == EVERYTHING
