"""Storage Commitment Push Model rules (PS3.4 Annex J.3): the request, the per-instance verdict,
the result and the report the SCU receives. Pure: no I/O, no pydicom.

- A request names each SOP instance once (PS3.4 J.3.2.1.1.3) under a Transaction UID.
- Every requested instance ends up in exactly one of the committed or failed lists, failed
  ones with a Failure Reason (0008,1197) from PS3.3 C.14.1.1 (J.3.3.1.2).
- Event Type 1 when all were committed, 2 when any failed (PS3.4 Table J.3-2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from typing import Any, ClassVar

from app.domain.errors import ConflictError, ValidationError

SOP_CLASS_UID = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model (PS3.4 J.3.4)
WELL_KNOWN_INSTANCE_UID = "1.2.840.10008.1.20.1.1"  # PS3.4 J.3.5
REQUEST_STORAGE_COMMITMENT = 1  # Action Type ID (PS3.4 Table J.3-1)
REPORT_KIND = "stgcmt-report"  # outbox kind of a CommitmentReport payload

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_MAX = 64  # PS3.5 9.1


class EventType(IntEnum):
    """N-EVENT-REPORT Event Type ID (PS3.4 Table J.3-2)."""

    ALL_COMMITTED = 1  # Storage Commitment Request Successful
    FAILURES_EXIST = 2  # Storage Commitment Request Complete - Failures Exist


class FailureReason(IntEnum):
    """Failure Reason (0008,1197) values the SCP reports (PS3.3 C.14.1.1)."""

    PROCESSING_FAILURE = 0x0110  # known, but its file cannot be read back whole
    NO_SUCH_OBJECT_INSTANCE = 0x0112  # not stored here
    CLASS_INSTANCE_CONFLICT = 0x0119  # stored under another SOP Class
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    RESOURCE_LIMITATION = 0x0213
    DUPLICATE_TRANSACTION_UID = 0x0131


class CommitmentState(StrEnum):
    """``storage_commitment.state``."""

    PENDING = "pending"  # request recorded, instances not yet checked
    CHECKED = "checked"  # result known, report queued for a new association
    REPORTED = "reported"  # the requester accepted the N-EVENT-REPORT
    UNDELIVERABLE = "undeliverable"  # the requester is no known remote AE with service commit


class FileState(Enum):
    """What reading a stored instance's file back found."""

    OK = "ok"
    MISSING = "missing"
    UNREADABLE = "unreadable"
    SIZE_MISMATCH = "size mismatch"


class InvalidCommitmentRequestError(ValidationError):
    """An N-ACTION whose Action Information breaks Table J.3-1."""


class DuplicateTransactionError(ConflictError):
    """A Transaction UID used before for a different request (PS3.4 J.3.3.1.2: never reused)."""


def is_uid(value: str) -> bool:
    return 0 < len(value) <= UID_MAX and _UID.match(value) is not None


@dataclass(frozen=True, slots=True)
class Reference:
    """One item of the Referenced SOP Sequence (0008,1199)."""

    sop_class_uid: str
    sop_instance_uid: str

    def to_json(self) -> dict[str, str]:
        return {"class": self.sop_class_uid, "instance": self.sop_instance_uid}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        return cls(str(data.get("class") or ""), str(data.get("instance") or ""))


@dataclass(frozen=True, slots=True)
class Failure:
    """One item of the Failed SOP Sequence (0008,1198)."""

    reference: Reference
    reason: FailureReason

    def to_json(self) -> dict[str, Any]:
        return {**self.reference.to_json(), "reason": int(self.reason)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Failure:
        return cls(Reference.from_json(data), FailureReason(int(data.get("reason") or 0x0110)))


@dataclass(frozen=True, slots=True)
class CommitmentRequest:
    """A validated N-ACTION Request Storage Commitment (PS3.4 Table J.3-1)."""

    transaction_uid: str
    references: tuple[Reference, ...]

    @classmethod
    def parse(cls, transaction_uid: str, items: Sequence[tuple[str, str]]) -> CommitmentRequest:
        """``items`` are the (class, instance) pairs of the Referenced SOP Sequence."""
        uid = transaction_uid.strip()
        if not is_uid(uid):
            raise InvalidCommitmentRequestError(
                "Transaction UID is missing or not a UID", field="TransactionUID"
            )
        if not items:
            raise InvalidCommitmentRequestError(
                "Referenced SOP Sequence is missing or empty", field="ReferencedSOPSequence"
            )
        references = tuple(Reference(c.strip(), i.strip()) for c, i in items)
        for n, ref in enumerate(references, 1):
            if not is_uid(ref.sop_class_uid) or not is_uid(ref.sop_instance_uid):
                raise InvalidCommitmentRequestError(
                    f"Referenced SOP Sequence item {n} needs a Referenced SOP Class UID and "
                    "Instance UID",
                    field="ReferencedSOPSequence",
                )
        if len({r.sop_instance_uid for r in references}) != len(references):
            raise InvalidCommitmentRequestError(
                "an instance is referenced more than once (PS3.4 J.3.2.1.1.3)",
                field="ReferencedSOPSequence",
            )
        return cls(uid, references)

    def requested_json(self) -> list[dict[str, str]]:
        return [r.to_json() for r in self.references]


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What the broker knows of a stored instance: its SOP Class and how its file read back."""

    sop_class_uid: str
    file_state: FileState


def verdict(reference: Reference, stored: StoredFacts | None) -> FailureReason | None:
    """None when the instance is committed, else why not (PS3.4 J.3.3.1.2)."""
    if stored is None:
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if stored.sop_class_uid != reference.sop_class_uid:
        return FailureReason.CLASS_INSTANCE_CONFLICT
    if stored.file_state is not FileState.OK:
        return FailureReason.PROCESSING_FAILURE
    return None


@dataclass(frozen=True, slots=True)
class CommitmentResult:
    """Every requested instance, either committed or failed with its reason."""

    committed: tuple[Reference, ...]
    failed: tuple[Failure, ...]

    @classmethod
    def of(
        cls, references: Sequence[Reference], verdicts: Sequence[FailureReason | None]
    ) -> CommitmentResult:
        committed = tuple(r for r, v in zip(references, verdicts, strict=True) if v is None)
        failed = tuple(
            Failure(r, v) for r, v in zip(references, verdicts, strict=True) if v is not None
        )
        return cls(committed, failed)

    @property
    def event_type(self) -> EventType:
        return EventType.FAILURES_EXIST if self.failed else EventType.ALL_COMMITTED

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": int(self.event_type),
            "committed": [r.to_json() for r in self.committed],
            "failed": [f.to_json() for f in self.failed],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CommitmentResult:
        return cls(
            tuple(Reference.from_json(r) for r in data.get("committed") or ()),
            tuple(Failure.from_json(f) for f in data.get("failed") or ()),
        )


@dataclass(frozen=True, slots=True)
class CommitmentReport:
    """The N-EVENT-REPORT for one transaction, as the outbox keeps it (kind ``stgcmt-report``).

    ``retrieve_ae_title`` is the broker's AE title: where the committed instances can be
    retrieved from (Retrieve AE Title (0008,0054), Table J.3-2)."""

    KIND: ClassVar[str] = REPORT_KIND

    transaction_uid: str
    requester_ae_title: str
    retrieve_ae_title: str
    result: CommitmentResult

    @property
    def event_type(self) -> EventType:
        return self.result.event_type

    def to_payload(self) -> dict[str, Any]:
        return {
            "transaction_uid": self.transaction_uid,
            "requester_ae_title": self.requester_ae_title,
            "retrieve_ae_title": self.retrieve_ae_title,
            "result": self.result.to_json(),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CommitmentReport:
        """``ValueError`` when the payload lacks the Transaction UID or the result."""
        uid = str(payload.get("transaction_uid") or "")
        result = payload.get("result")
        if not uid or not isinstance(result, Mapping):
            raise ValueError("a commitment report payload needs transaction_uid and result")
        return cls(
            uid,
            str(payload.get("requester_ae_title") or ""),
            str(payload.get("retrieve_ae_title") or ""),
            CommitmentResult.from_json(result),
        )


def ordering_key(transaction_uid: str) -> str:
    """The outbox ordering key of a transaction's report (also how its delivery is found)."""
    return f"stgcmt:{transaction_uid}"
