"""An independent SCU (the npm package dcmjs-dimse) runs a modality's full MPPS cycle.

``dcmjs/mpps_cycle.mjs`` C-FINDs the worklist for its station, N-CREATEs an MPPS "IN PROGRESS"
for the step it found, N-SETs it COMPLETED or DISCONTINUED, then tries one more N-SET, which a
finished step must refuse (0x0110 Processing Failure, Error ID 0xA710). The broker's REST shows
the step's new status and the MPPS linked to it, and the worklist no longer offers the step.

Node and ``tests/interop/dcmjs/node_modules`` come from ``.ci/install-test-deps``; without them
the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx
import pytest

from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.dcmjs import DCMJS_DIR, require_dcmjs
from tests.support.items import mwl_item

pytestmark = pytest.mark.interop

SCRIPT = DCMJS_DIR / "mpps_cycle.mjs"
CALLING_AE = "MODALITY1"
# The script bounds every association (30 s) and itself (100 s); this only backs that up.
NODE_TIMEOUT = 120.0
HTTP_TIMEOUT = 10.0

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
PENDING = (0xFF00, 0xFF01)
ERROR_ID_NOT_IN_PROGRESS = 0xA710  # "Performed Procedure Step Object may no longer be updated"


def run_scu(broker: BrokerProcess, station: str, *args: str) -> dict[str, Any]:
    """Run the dcmjs-dimse script against the broker; return its one JSON result line."""
    command = [require_dcmjs(), str(SCRIPT), "--host", "127.0.0.1"]
    command += ["--port", str(broker.dicom_port), "--called", BROKER_AE]
    command += ["--calling", CALLING_AE, "--station", station, *args]
    done = subprocess.run(
        command,
        cwd=DCMJS_DIR,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nbroker log:\n{broker.log()}"
    assert done.returncode == 0, f"mpps_cycle.mjs exited with {done.returncode}\n{report}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout\n{report}"
    result: dict[str, Any] = json.loads(lines[0])
    return result


def new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def post_item(broker: BrokerProcess, item: dict[str, Any]) -> None:
    response = httpx.post(
        f"{broker.base_url}/api/mwlitems",
        content=json.dumps(item),
        headers={**broker.headers, "Content-Type": "application/dicom+json"},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 201, response.text


def step_status(broker: BrokerProcess, study_uid: str, sps_id: str) -> str:
    response = httpx.get(
        f"{broker.base_url}/api/mwlitems/{study_uid}/{sps_id}",
        headers=broker.headers,
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    step = response.json()["00400100"]["Value"][0]
    return str(step["00400020"]["Value"][0])


@pytest.mark.parametrize(
    ("station", "final"),
    [("CT01", "COMPLETED"), ("CT02", "DISCONTINUED")],
)
def test_worklist_and_mpps_cycle(broker: BrokerProcess, station: str, final: str) -> None:
    study_uid = new_uid()
    sps_id = f"SPS-{final[:4]}"
    accession = f"ACC-{station}"
    post_item(
        broker,
        mwl_item(
            patient_id=f"DCMJS-{station}",
            name="DCMJS^PATIENT",
            accession=accession,
            study_uid=study_uid,
            sps_id=sps_id,
            station=station,
        ),
    )
    assert step_status(broker, study_uid, sps_id) == "SCHEDULED"
    mpps_uid = new_uid()

    result = run_scu(broker, station, "--final", final, "--mpps-uid", mpps_uid)

    # The worklist query found exactly the posted step (pending responses, then success).
    assert result["matches"] == 1, result
    assert result["find_status"][-1] == SUCCESS, result
    assert all(s in PENDING for s in result["find_status"][:-1]), result
    assert (result["study_uid"], result["sps_id"], result["accession"]) == (
        study_uid,
        sps_id,
        accession,
    )
    # N-CREATE and the final N-SET succeed; an N-SET after the final one is refused.
    assert result["create_status"] == SUCCESS, result
    assert result["set_status"] == SUCCESS, result
    assert result["second_set_status"] == PROCESSING_FAILURE, result
    assert result["second_set_error_id"] == ERROR_ID_NOT_IN_PROGRESS, result

    # The worklist step followed the MPPS.
    assert step_status(broker, study_uid, sps_id) == final

    # The MPPS is stored with its final status and linked to the step.
    response = httpx.get(
        f"{broker.base_url}/api/mpps/{mpps_uid}", headers=broker.headers, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200, response.text
    mpps = response.json()
    assert mpps["status"] == final, mpps
    linked = [(s["study_instance_uid"], s["sps_id"], s["status"]) for s in mpps["linked_steps"]]
    assert linked == [(study_uid, sps_id, final)], mpps

    # A finished step is no longer offered to the modality.
    again = run_scu(broker, station, "--find-only")
    assert again["matches"] == 0, again
    assert again["find_status"] == [SUCCESS], again
