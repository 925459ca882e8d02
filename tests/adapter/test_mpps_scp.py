"""The MPPS SCP over real associations (pynetdicom as the modality): every status it answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityPerformedProcedureStepRetrieve,
)

from tests.support.mpps import n_create, n_set
from tests.support.scp import Scp, start_scp

MPPS = ModalityPerformedProcedureStep
UID = "1.2.826.0.1.3680043.10.543.1"


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path)
    server.add()  # SPS1 of study 1.2.3.4.1, accession A1
    yield server
    server.stop()


@pytest.fixture
def assoc(scp: Scp) -> Iterator[Association]:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(MPPS)
    ae.add_requested_context(ModalityPerformedProcedureStepRetrieve)
    association = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
    assert association.is_established
    yield association
    association.release()


def create(assoc: Association, ds: Dataset, uid: str = UID) -> tuple[Dataset, Dataset | None]:
    status, attributes = assoc.send_n_create(ds, MPPS, uid)
    return status, attributes


def set_(assoc: Association, ds: Dataset, uid: str = UID) -> tuple[Dataset, Dataset | None]:
    status, attributes = assoc.send_n_set(ds, MPPS, uid)
    return status, attributes


def step_status(scp: Scp) -> str:
    from app.db import session_scope
    from app.services import worklist

    with session_scope(scp.factory) as s:
        item = worklist.get_item(s, study_uid="1.2.3.4.1", sps_id="SPS1")
    return str(item["00400100"]["Value"][0]["00400020"]["Value"][0])


def test_cycle_and_final_refusal(scp: Scp, assoc: Association) -> None:
    status, answer = create(assoc, n_create())
    assert status.Status == 0x0000
    assert answer is not None and answer.PerformedProcedureStepStatus == "IN PROGRESS"
    assert step_status(scp) == "STARTED"
    status, _ = set_(assoc, n_set("COMPLETED"))
    assert status.Status == 0x0000
    assert step_status(scp) == "COMPLETED"
    status, answer = set_(assoc, n_set("DISCONTINUED"))
    assert status.Status == 0x0110
    assert status.ErrorID == 0xA710
    assert status.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    assert answer is None


def test_answers_carry_the_whole_stored_data_set(scp: Scp, assoc: Association) -> None:
    """N-CREATE answers with the request's data set as stored (re-encoded from its own bytes),
    N-SET with the data set after the modifications: each as N-GET then reads it."""
    sent = n_create()
    _, created = create(assoc, sent)
    _, stored = assoc.send_n_get([], ModalityPerformedProcedureStepRetrieve, UID)
    assert created is not None and stored is not None
    assert created.to_json_dict() == stored.to_json_dict() == sent.to_json_dict()

    _, done = set_(assoc, n_set("COMPLETED"))
    _, stored = assoc.send_n_get([], ModalityPerformedProcedureStepRetrieve, UID)
    assert done is not None and stored is not None
    assert done.to_json_dict() == stored.to_json_dict()
    assert done.PerformedProcedureStepStatus == "COMPLETED"
    assert done.PatientName == "DOE^JANE"  # kept from the N-CREATE


def test_n_get_returns_the_stored_attributes(scp: Scp, assoc: Association) -> None:
    create(assoc, n_create())
    status, ds = assoc.send_n_get(
        [0x00400252, 0x00400241], ModalityPerformedProcedureStepRetrieve, UID
    )
    assert status.Status == 0x0000
    assert ds is not None
    assert ds.PerformedProcedureStepStatus == "IN PROGRESS"
    assert ds.PerformedStationAETitle == "CT01"
    assert "PatientName" not in ds  # only what was asked


@pytest.mark.parametrize(
    ("overrides", "code", "keyword"),
    [
        ({"PerformedProcedureStepStatus": "COMPLETED"}, 0x0106, "PerformedProcedureStepStatus"),
        ({"PerformedStationAETitle": None}, 0x0120, "PerformedStationAETitle"),
        ({"PerformedProcedureStepStartDate": ""}, 0x0121, "PerformedProcedureStepStartDate"),
    ],
)
def test_create_failures(
    scp: Scp, assoc: Association, overrides: dict[str, object], code: int, keyword: str
) -> None:
    status, _ = create(assoc, n_create(**overrides))
    assert status.Status == code
    assert keyword in status.ErrorComment  # N-CREATE-RSP has no Attribute Identifier List
    assert step_status(scp) == "SCHEDULED"


def test_duplicate_and_unknown_instances(assoc: Association) -> None:
    assert create(assoc, n_create())[0].Status == 0x0000
    assert create(assoc, n_create())[0].Status == 0x0111
    assert set_(assoc, n_set(), uid="1.2.3.999")[0].Status == 0x0112


def test_not_settable_attribute(assoc: Association) -> None:
    create(assoc, n_create())
    change = Dataset()
    change.PatientID = "OTHER"
    status, _ = set_(assoc, change)
    assert status.Status == 0x0106
    assert status.AttributeIdentifierList == 0x00100020
