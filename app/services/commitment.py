"""Storage Commitment Push Model SCP (PS3.4 J.3): record a request, check its instances, queue
the report, and read the results back.

The DICOM adapter records the N-ACTION (``record``), answers it, then runs ``check`` and either
delivers the report on the requester's open association (``mark_reported``) or hands it to the
outbox (``queue_report``): a new association to the requester AE (a ``remote_ae`` row with
service ``commit``), retried with back-off until it is taken.

Results are kept (no purge): ``GET /api/storage-commitments`` reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, col, select

from app.db import SessionFactory, session_scope
from app.domain.commitment import (
    REPORT_KIND,
    CommitmentReport,
    CommitmentRequest,
    CommitmentResult,
    CommitmentState,
    DuplicateTransactionError,
    FailureReason,
    FileState,
    Reference,
    StoredFacts,
    ordering_key,
    verdict,
)
from app.domain.errors import ConflictError, NotFoundError
from app.models import OutboxMessage, StorageCommitment, StoredInstance, utcnow
from app.schemas import (
    CommitmentDeliveryView,
    CommittedInstanceView,
    FailedInstanceView,
    StorageCommitmentSummary,
    StorageCommitmentView,
)
from app.services import outbox
from app.services.remote_aes import RemoteService, lookup

LOG = logging.getLogger(__name__)

SAME_ASSOCIATION = "same association"
NEW_ASSOCIATION = "new association"
READ_CHUNK = 1 << 20
IN_CHUNK = 500  # UIDs per IN (...) list: well below SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A stored instance row as the check needs it."""

    sop_class_uid: str
    path: str
    size_bytes: int


# --- N-ACTION ---------------------------------------------------------------------------------


def record(session: Session, *, requester: str, request: CommitmentRequest) -> bool:
    """Keep the request (state ``pending``); True when it is new and is to be processed.

    A repeated N-ACTION (same Transaction UID, requester and references: the SCU lost our
    response) is the same request, already in hand: False, nothing is written. Any other reuse
    of a Transaction UID is refused (PS3.4 J.3.3.1.2: UIDs are never reused)."""
    row = _find(session, request.transaction_uid)
    if row is not None:
        if row.requester_ae_title == requester and row.requested == request.requested_json():
            return False
        raise DuplicateTransactionError(
            f"Transaction UID {request.transaction_uid} was used for another request",
            field="TransactionUID",
        )
    session.add(
        StorageCommitment(
            transaction_uid=request.transaction_uid,
            requester_ae_title=requester,
            requested=request.requested_json(),
        )
    )
    session.flush()
    return True


def unfinished(session: Session, *, received_before: datetime) -> list[str]:
    """Transaction UIDs still ``pending`` that arrived before ``received_before``: a broker
    stopped between the N-ACTION and its report; they are checked again after a restart."""
    rows = session.exec(
        select(StorageCommitment.transaction_uid)
        .where(StorageCommitment.state == CommitmentState.PENDING.value)
        .where(col(StorageCommitment.received_at) < received_before)
        .order_by(col(StorageCommitment.id))
    )
    return list(rows)


# --- the check --------------------------------------------------------------------------------


def check(
    factory: SessionFactory, *, transaction_uid: str, storage_dir: Path, retrieve_ae_title: str
) -> CommitmentReport:
    """Check every referenced instance and keep the result (the state stays ``pending`` until
    the report is delivered on the same association or queued).

    Each instance must be stored (a row), under the SOP Class the request names, and its file
    must read back whole (exists, readable, the size stored). The files are read with no
    transaction open: a large request holds no database connection while the disk works.
    """
    with session_scope(factory) as session:
        row = _get(session, transaction_uid)
        references = [Reference.from_json(r) for r in row.requested]
        stored = stored_files(session, [r.sop_instance_uid for r in references])
    verdicts = [verdict(r, _facts(stored.get(r.sop_instance_uid), storage_dir)) for r in references]
    result = CommitmentResult.of(references, verdicts)
    with session_scope(factory) as session:
        row = _get(session, transaction_uid)
        row.result = result.to_json()
        session.add(row)
        report = CommitmentReport(
            transaction_uid, row.requester_ae_title, retrieve_ae_title, result
        )
    LOG.info(
        "storage commitment %s from %s: %d committed, %d failed",
        transaction_uid,
        report.requester_ae_title,
        len(result.committed),
        len(result.failed),
    )
    return report


def stored_files(session: Session, uids: Sequence[str]) -> dict[str, StoredFile]:
    found: dict[str, StoredFile] = {}
    for start in range(0, len(uids), IN_CHUNK):
        chunk = list(uids[start : start + IN_CHUNK])
        rows = session.exec(
            select(StoredInstance).where(col(StoredInstance.sop_instance_uid).in_(chunk))
        )
        for row in rows:
            found[row.sop_instance_uid] = StoredFile(row.sop_class_uid, row.path, row.size_bytes)
    return found


def read_back(storage_dir: Path, stored: StoredFile) -> FileState:
    """Read the whole file: it must exist under the storage folder and have the stored size."""
    root = storage_dir.resolve()
    path = (root / stored.path).resolve()
    if not path.is_relative_to(root):
        return FileState.UNREADABLE
    try:
        size = 0
        with path.open("rb") as f:
            while chunk := f.read(READ_CHUNK):
                size += len(chunk)
    except FileNotFoundError:
        return FileState.MISSING
    except OSError:
        return FileState.UNREADABLE
    return FileState.OK if size == stored.size_bytes else FileState.SIZE_MISMATCH


def _facts(stored: StoredFile | None, storage_dir: Path) -> StoredFacts | None:
    if stored is None:
        return None
    return StoredFacts(stored.sop_class_uid, read_back(storage_dir, stored))


# --- the report -------------------------------------------------------------------------------


def mark_reported(session: Session, *, transaction_uid: str, via: str) -> None:
    """The requester accepted the N-EVENT-REPORT."""
    row = _get(session, transaction_uid)
    row.state = CommitmentState.REPORTED.value
    row.reported_at = utcnow()
    row.result = {**row.result, "reported_via": via}
    session.add(row)
    LOG.info("storage commitment %s reported on the %s", transaction_uid, via)


def queue_report(session: Session, *, report: CommitmentReport) -> CommitmentState:
    """Queue the report for a new association to the requester, if the broker knows where it
    is (a remote AE with service ``commit``); else it stays ``undeliverable``, visible in REST."""
    row = _get(session, report.transaction_uid)
    peer = lookup(session, report.requester_ae_title, RemoteService.COMMIT)
    if peer is None:
        row.state = CommitmentState.UNDELIVERABLE.value
        LOG.warning(
            "storage commitment %s: %s is no remote AE with service commit; result kept, "
            "not reported",
            report.transaction_uid,
            report.requester_ae_title,
        )
    else:
        outbox.enqueue(
            session,
            channel=outbox.DICOM,
            destination=f"{peer.ae_title}@{peer.host}:{peer.port}",
            ordering_key=ordering_key(report.transaction_uid),
            kind=REPORT_KIND,
            payload=report.to_payload(),
        )
        row.state = CommitmentState.CHECKED.value
    session.add(row)
    return CommitmentState(row.state)


def report_again(
    session: Session, *, transaction_uid: str, retrieve_ae_title: str
) -> StorageCommitmentView:
    """Queue the report of an ``undeliverable`` result again (its requester has been added as
    a remote AE with service ``commit`` since); still unknown, it stays ``undeliverable``."""
    row = _get(session, transaction_uid)
    if row.state != CommitmentState.UNDELIVERABLE.value:
        raise ConflictError(
            f"storage commitment {transaction_uid} is {row.state}, not undeliverable",
            field="state",
        )
    report = CommitmentReport(
        transaction_uid,
        row.requester_ae_title,
        retrieve_ae_title,
        CommitmentResult.from_json(row.result),
    )
    queue_report(session, report=report)
    session.flush()
    return get(session, transaction_uid=transaction_uid)


# --- reading ----------------------------------------------------------------------------------


def get(session: Session, *, transaction_uid: str) -> StorageCommitmentView:
    row = _get(session, transaction_uid)
    result = CommitmentResult.from_json(row.result) if row.result.get("event_type") else None
    return StorageCommitmentView(
        **_summary(row).model_dump(),
        event_type=int(result.event_type) if result else None,
        reported_via=str(row.result.get("reported_via") or ""),
        requested=tuple(_instance(Reference.from_json(r)) for r in row.requested),
        committed=tuple(_instance(r) for r in result.committed) if result else (),
        failed=tuple(
            FailedInstanceView(
                **_instance(f.reference).model_dump(),
                failure_reason=int(f.reason),
                failure_meaning=_meaning(f.reason),
            )
            for f in (result.failed if result else ())
        ),
        delivery=_delivery(session, transaction_uid),
    )


def list_commitments(
    session: Session,
    *,
    requester: str = "",
    state: str = "",
    limit: int = 100,
    offset: int = 0,
) -> list[StorageCommitmentSummary]:
    """Newest first."""
    statement = select(StorageCommitment)
    if requester:
        statement = statement.where(StorageCommitment.requester_ae_title == requester.strip())
    if state:
        statement = statement.where(StorageCommitment.state == state)
    statement = statement.order_by(col(StorageCommitment.id).desc()).offset(offset).limit(limit)
    return [_summary(row) for row in session.exec(statement)]


def _summary(row: StorageCommitment) -> StorageCommitmentSummary:
    return StorageCommitmentSummary(
        transaction_uid=row.transaction_uid,
        requester_ae_title=row.requester_ae_title,
        state=row.state,
        received_at=row.received_at,
        reported_at=row.reported_at,
        requested_count=len(row.requested),
        committed_count=len(row.result.get("committed") or ()),
        failed_count=len(row.result.get("failed") or ()),
    )


def _instance(ref: Reference) -> CommittedInstanceView:
    return CommittedInstanceView(
        sop_class_uid=ref.sop_class_uid, sop_instance_uid=ref.sop_instance_uid
    )


def _meaning(reason: FailureReason) -> str:
    return reason.name.replace("_", " ").capitalize()


def _delivery(session: Session, transaction_uid: str) -> CommitmentDeliveryView | None:
    message = session.exec(
        select(OutboxMessage)
        .where(OutboxMessage.ordering_key == ordering_key(transaction_uid))
        .order_by(col(OutboxMessage.id).desc())
    ).first()
    if message is None:
        return None
    assert message.id is not None
    return CommitmentDeliveryView(
        outbox_id=message.id,
        state=message.state,
        attempts=message.attempts,
        last_error=message.last_error,
        next_attempt_at=message.next_attempt_at,
        sent_at=message.sent_at,
    )


def _find(session: Session, transaction_uid: str) -> StorageCommitment | None:
    return session.exec(
        select(StorageCommitment).where(StorageCommitment.transaction_uid == transaction_uid)
    ).first()


def _get(session: Session, transaction_uid: str) -> StorageCommitment:
    row = _find(session, transaction_uid)
    if row is None:
        raise NotFoundError(f"no storage commitment {transaction_uid}")
    return row
