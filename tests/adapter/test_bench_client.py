"""The benchmark's raw-socket C-FIND client counts what the server sends, like a real SCU.

``make bench`` times the broker with ``bench.dimse.FindClient``; if it miscounted matches or
missed a final status, every figure it reports would be wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from bench.dimse import AssociationError, FindClient
from bench.measure import station_query
from bench.workload import day
from tests.support.scp import Scp, start_scp


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path)
    yield server
    server.stop()


def _pynetdicom_count(port: int) -> int:
    ae = AE(ae_title="CHECK")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    found = assoc.send_c_find(station_query(), ModalityWorklistInformationFind)
    count = sum(1 for _status, ds in found if ds is not None)
    assoc.release()
    return count


def test_matches_and_final_status_agree_with_pynetdicom(scp: Scp) -> None:
    for n in range(7):
        scp.add(study_uid=f"1.2.3.{n}", sps_id=f"S{n}", station="ST4", date=day(5))
    scp.add(study_uid="1.2.3.99", sps_id="S99", station="ST5", date=day(5))
    client = FindClient("127.0.0.1", scp.port, "MWLBROKER", station_query())

    first, second = client.find(), client.find()  # one whole association each

    assert (first.matches, first.status) == (7, 0x0000)
    assert second == first
    assert _pynetdicom_count(scp.port) == 7


def test_a_rejected_association_is_an_error(scp: Scp) -> None:
    client = FindClient("127.0.0.1", scp.port, "NOT-THE-BROKER", station_query())
    with pytest.raises(AssociationError, match="not accepted"):
        client.find()
