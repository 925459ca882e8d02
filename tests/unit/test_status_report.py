"""StatusReport: the typed outbox payload of a status message to the RIS, and its JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.domain.mpps import MppsStatus
from app.domain.reports import (
    CodedReason,
    ReportedOrder,
    ReportedPatient,
    ReportedProcedure,
    StatusReport,
)

REPORT = StatusReport(
    mpps_uid="1.2.9.1",
    status=MppsStatus.DISCONTINUED,
    at="20261201090000",
    patient=ReportedPatient("P1", "HOSP", "DOE^JANE=山田^太郎", "19800101", "F"),
    order=ReportedOrder("ACC1", "PL1", "FI1"),
    procedures=(
        ReportedProcedure("RP1", "1.2.3.4.1", "SPS1", "CT"),
        ReportedProcedure("RP2", "1.2.3.4.2", "SPS2", "MR"),
    ),
    discontinuation_reason=CodedReason("110514", "DCM", "Incorrect worklist entry selected"),
)

# The shape outbox rows have had since the outbox exists (app/services/outbox.py docstring).
PAYLOAD: dict[str, Any] = {
    "mpps_uid": "1.2.9.1",
    "status": "DISCONTINUED",
    "at": "20261201090000",
    "patient": {
        "patient_id": "P1",
        "issuer_of_patient_id": "HOSP",
        "name": "DOE^JANE=山田^太郎",
        "birth_date": "19800101",
        "sex": "F",
    },
    "order": {
        "accession_number": "ACC1",
        "placer_order_number": "PL1",
        "filler_order_number": "FI1",
    },
    "procedures": [
        {
            "requested_procedure_id": "RP1",
            "study_instance_uid": "1.2.3.4.1",
            "sps_id": "SPS1",
            "modality": "CT",
        },
        {
            "requested_procedure_id": "RP2",
            "study_instance_uid": "1.2.3.4.2",
            "sps_id": "SPS2",
            "modality": "MR",
        },
    ],
    "discontinuation_reason": {
        "code_value": "110514",
        "coding_scheme": "DCM",
        "code_meaning": "Incorrect worklist entry selected",
    },
}


def test_payload_has_the_stored_shape() -> None:
    assert REPORT.to_payload() == PAYLOAD


def test_round_trip_through_json() -> None:
    stored = json.loads(json.dumps(REPORT.to_payload()))
    assert StatusReport.from_payload(stored) == REPORT


@pytest.mark.parametrize("status", list(MppsStatus))
def test_round_trip_without_reason_or_procedures(status: MppsStatus) -> None:
    report = StatusReport(mpps_uid="1.2", status=status)
    payload = report.to_payload()
    assert payload["discontinuation_reason"] is None and payload["procedures"] == []
    assert StatusReport.from_payload(payload) == report


def test_an_older_row_with_missing_or_null_keys_still_reads() -> None:
    old = {
        "status": "COMPLETED",
        "patient": {"patient_id": "P1", "name": None},
        "order": None,
        "discontinuation_reason": None,
    }
    report = StatusReport.from_payload(old)
    assert report.status is MppsStatus.COMPLETED
    assert report.patient == ReportedPatient(patient_id="P1")
    assert report.order == ReportedOrder()
    assert (report.mpps_uid, report.at, report.procedures) == ("", "", ())
    assert report.discontinuation_reason is None


@pytest.mark.parametrize("status", ["SCHEDULED", "", None])
def test_unknown_status_is_refused(status: Any) -> None:
    with pytest.raises(ValueError, match="unknown PPS status"):
        StatusReport.from_payload({**PAYLOAD, "status": status})


def test_kind() -> None:
    assert StatusReport.KIND == "mpps-status"
