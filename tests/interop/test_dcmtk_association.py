"""DCMTK echoscu/findscu against ``mwl-broker serve``: association policy and failure statuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.broker import BROKER_AE, BrokerProcess, running_broker
from tests.support.tools import dimse_statuses, echo, findscu

pytestmark = pytest.mark.interop


def test_echo_with_the_brokers_called_ae_succeeds(broker: BrokerProcess) -> None:
    done = echo(broker.dicom_port, BROKER_AE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_echo_with_a_wrong_called_ae_is_rejected(broker: BrokerProcess) -> None:
    done = echo(broker.dicom_port, "WRONG")
    assert done.returncode != 0
    output = (done.stdout + done.stderr).lower()
    assert "reject" in output, output
    # the rejection is per association: the right called AE still gets through
    assert echo(broker.dicom_port, BROKER_AE).returncode == 0


def test_malformed_date_gets_a_failure_status_and_the_broker_keeps_serving(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    result = findscu(
        broker.dicom_port,
        BROKER_AE,
        tmp_path / "out",
        keys=[
            "PatientName",
            "(0040,0100)[0].(0040,0002)=2026-13-99",  # neither YYYYMMDD nor a range
        ],
        debug=True,
    )
    assert result.responses == []  # a failure carries no identifier
    assert dimse_statuses(result.output) == [0xA900], result.output
    # the status detail names the bad key (Offending Element, PS3.7 C.4.1.1.4)
    assert re.search(r"\(0000,0901\) AT \(0040,0002\)", result.output), result.output
    assert echo(broker.dicom_port, BROKER_AE).returncode == 0


def test_the_broker_process_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """Own broker (not the module's): start, serve one echo, SIGTERM, exit code 0."""
    instance = running_broker(tmp_path / "own")
    broker = next(instance)
    assert echo(broker.dicom_port, BROKER_AE).returncode == 0
    assert broker.stop() == 0
    assert broker.process is not None and broker.process.returncode == 0
    with pytest.raises(StopIteration):
        next(instance)  # the generator's own exit-code check runs here too
