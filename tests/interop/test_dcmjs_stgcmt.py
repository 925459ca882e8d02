"""An independent Storage Commitment SCU (the npm package dcmjs-dimse) against the broker as
users run it (PS3.4 J.3).

``dcmjs/stgcmt_scu.mjs`` sends the N-ACTION and waits for the N-EVENT-REPORT: on its own
association when it keeps it open, else on a new one the broker opens to the requester's
listener (a remote AE with service ``commit``), proposing the SCP role. The instances are put
in place as the Storage SCP will (rows and Part 10 files, ``tests/support/commitment.py``).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx
import pytest

from app.db import create_db_engine, create_session_factory
from tests.support.broker import BROKER_AE, BrokerProcess
from tests.support.commitment import CT, MR, register_requester, store_instance
from tests.support.dcmjs import DCMJS_DIR, require_dcmjs
from tests.support.net import free_port, wait_until

pytestmark = pytest.mark.interop

SCRIPT = DCMJS_DIR / "stgcmt_scu.mjs"
NODE_TIMEOUT = 90.0  # the script gives up after 60 s itself


def new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def prepare(broker: BrokerProcess, ae_title: str, listen: int, stored: list[str]) -> None:
    engine = create_db_engine(broker.database_url)
    try:
        factory = create_session_factory(engine)
        for instance in stored:
            store_instance(factory, broker.workdir / "storage", sop_class=CT, sop_instance=instance)
        if listen:
            register_requester(factory, ae_title, listen)
    finally:
        engine.dispose()


def run_scu(
    broker: BrokerProcess, calling: str, tx: str, refs: list[tuple[str, str]], *args: str
) -> dict[str, Any]:
    command = [require_dcmjs(), str(SCRIPT), "--port", str(broker.dicom_port)]
    command += ["--called", BROKER_AE, "--calling", calling, "--tx", tx, *args]
    for sop_class, instance in refs:
        command += ["--ref", f"{sop_class}:{instance}"]
    done = subprocess.run(
        command, cwd=DCMJS_DIR, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False
    )
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nbroker log:\n{broker.log()}"
    assert done.returncode == 0, f"stgcmt_scu.mjs exited with {done.returncode}\n{report}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout\n{report}"
    result: dict[str, Any] = json.loads(lines[0])
    return result


def commitment_state(broker: BrokerProcess, tx: str) -> dict[str, Any]:
    response = httpx.get(
        f"{broker.base_url}/api/storage-commitments/{tx}", headers=broker.headers, timeout=10.0
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_report_on_a_new_association_with_failures(broker: BrokerProcess) -> None:
    port = free_port()
    stored, missing, conflict = new_uid(), new_uid(), new_uid()
    prepare(broker, "DCMJSNEW", port, [stored, conflict])
    tx = new_uid()
    refs = [(CT, stored), (CT, missing), (MR, conflict)]

    result = run_scu(broker, "DCMJSNEW", tx, refs, "--listen", str(port))

    assert result["action_status"] == 0x0000, result
    [report] = result["reports"]
    assert report["via"] == "new" and report["event_type"] == 2, report
    assert report["transaction_uid"] == tx and report["retrieve_ae_title"] == BROKER_AE
    assert report["referenced"] == [[CT, stored]]
    assert report["failed"] == [[CT, missing, 0x0112], [MR, conflict, 0x0119]]
    # dcmjs-dimse answers the broker's Role Selection item as proposed: SCU 0, SCP 1
    assert (report["scu_role"], report["scp_role"]) == (False, True), report
    wait_until(lambda: commitment_state(broker, tx)["state"] == "reported", what="reported")
    assert commitment_state(broker, tx)["reported_via"] == "new association"


def test_report_on_the_same_association(broker: BrokerProcess) -> None:
    stored = new_uid()
    prepare(broker, "DCMJSSAME", 0, [stored])
    tx = new_uid()

    result = run_scu(broker, "DCMJSSAME", tx, [(CT, stored)], "--linger", "8000")

    assert result["action_status"] == 0x0000, result
    [report] = result["reports"]
    assert report["via"] == "same" and report["event_type"] == 1, report
    assert report["referenced"] == [[CT, stored]] and report["failed"] == []
    state = commitment_state(broker, tx)
    assert state["state"] == "reported" and state["reported_via"] == "same association"


def test_malformed_request_is_refused(broker: BrokerProcess) -> None:
    result = run_scu(broker, "DCMJSBAD", "not-a-uid", [(CT, new_uid())])
    assert result["action_status"] == 0x0115 and result["reports"] == []
