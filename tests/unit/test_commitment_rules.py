"""Storage commitment rules (PS3.4 J.3): request validation, verdicts, event type, the outbox
payload and the N-EVENT-REPORT data set built from it."""

from __future__ import annotations

import pytest

from app.domain.commitment import (
    CommitmentReport,
    CommitmentRequest,
    CommitmentResult,
    EventType,
    FailureReason,
    FileState,
    InvalidCommitmentRequestError,
    Reference,
    StoredFacts,
    verdict,
)
from dicom_scp.commitment import event_information

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
A, B = "1.2.3.4.1", "1.2.3.4.2"


def test_request_is_trimmed_and_kept_in_order() -> None:
    request = CommitmentRequest.parse(" 1.2.3 ", [(CT, A), (MR + " ", B)])
    assert request.transaction_uid == "1.2.3"
    assert request.references == (Reference(CT, A), Reference(MR, B))
    assert request.requested_json() == [
        {"class": CT, "instance": A},
        {"class": MR, "instance": B},
    ]


@pytest.mark.parametrize(
    ("tx", "refs", "field"),
    [
        ("", [(CT, A)], "TransactionUID"),
        ("1.02.3", [(CT, A)], "TransactionUID"),  # leading zero: not a UID
        ("1." + "2" * 70, [(CT, A)], "TransactionUID"),  # longer than 64
        ("1.2.3", [], "ReferencedSOPSequence"),
        ("1.2.3", [("", A)], "ReferencedSOPSequence"),
        ("1.2.3", [(CT, "x")], "ReferencedSOPSequence"),
        ("1.2.3", [(CT, A), (MR, A)], "ReferencedSOPSequence"),  # J.3.2.1.1.3
    ],
)
def test_malformed_requests_are_refused(tx: str, refs: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(InvalidCommitmentRequestError) as caught:
        CommitmentRequest.parse(tx, refs)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, FailureReason.NO_SUCH_OBJECT_INSTANCE),
        (StoredFacts(MR, FileState.OK), FailureReason.CLASS_INSTANCE_CONFLICT),
        (StoredFacts(CT, FileState.MISSING), FailureReason.PROCESSING_FAILURE),
        (StoredFacts(CT, FileState.UNREADABLE), FailureReason.PROCESSING_FAILURE),
        (StoredFacts(CT, FileState.SIZE_MISMATCH), FailureReason.PROCESSING_FAILURE),
        (StoredFacts(CT, FileState.OK), None),
    ],
)
def test_verdict(stored: StoredFacts | None, expected: FailureReason | None) -> None:
    assert verdict(Reference(CT, A), stored) == expected


def test_failure_reason_values_are_those_of_ps3_3_c_14_1_1() -> None:
    assert int(FailureReason.PROCESSING_FAILURE) == 0x0110
    assert int(FailureReason.NO_SUCH_OBJECT_INSTANCE) == 0x0112
    assert int(FailureReason.CLASS_INSTANCE_CONFLICT) == 0x0119
    assert int(FailureReason.REFERENCED_SOP_CLASS_NOT_SUPPORTED) == 0x0122


def test_event_type_and_payload_round_trip() -> None:
    refs = [Reference(CT, A), Reference(CT, B)]
    all_ok = CommitmentResult.of(refs, [None, None])
    some_failed = CommitmentResult.of(refs, [None, FailureReason.NO_SUCH_OBJECT_INSTANCE])
    assert all_ok.event_type is EventType.ALL_COMMITTED
    assert some_failed.event_type is EventType.FAILURES_EXIST
    report = CommitmentReport("1.2.3", "MOD1", "MWLBROKER", some_failed)
    assert CommitmentReport.from_payload(report.to_payload()) == report
    with pytest.raises(ValueError):
        CommitmentReport.from_payload({"transaction_uid": "1.2.3"})


def test_event_information_all_committed() -> None:
    result = CommitmentResult.of([Reference(CT, A)], [None])
    ds = event_information(CommitmentReport("1.2.3", "MOD1", "MWLBROKER", result))
    assert ds.TransactionUID == "1.2.3" and ds.RetrieveAETitle == "MWLBROKER"
    assert [
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in ds.ReferencedSOPSequence
    ] == [(CT, A)]
    assert "FailedSOPSequence" not in ds


def test_event_information_with_failures_only() -> None:
    result = CommitmentResult.of([Reference(MR, B)], [FailureReason.CLASS_INSTANCE_CONFLICT])
    ds = event_information(CommitmentReport("1.2.3", "MOD1", "MWLBROKER", result))
    assert "ReferencedSOPSequence" not in ds  # 1C: only when some were committed
    [item] = ds.FailedSOPSequence
    assert (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) == (MR, B)
    assert item.FailureReason == 0x0119
