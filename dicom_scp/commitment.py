"""Storage Commitment Push Model SCP (PS3.4 J.3): the N-ACTION handler and the report.

The N-ACTION (Action Type 1, on the well-known instance 1.2.840.10008.1.20.1.1) is checked,
recorded and answered Success at once: Success only says the request was received
(J.3.2.1.3). A worker thread then checks the instances and sends the N-EVENT-REPORT:

- on the requester's association when it is still open ``stgcmt_report_delay`` seconds after
  the N-ACTION response (the requester had that long to release it; pynetdicom sends our
  request only once its reactor is idle, so always after the N-ACTION response);
- otherwise, or when the requester did not take it there, through the outbox on a new
  association to the requester AE with the SCP role proposed (J.3.3.1.2, PS3.7 D.3.3.4; see
  :mod:`dicom_scp.commitment_report`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association

from app.db import SessionFactory, session_scope
from app.domain.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    SOP_CLASS_UID,
    WELL_KNOWN_INSTANCE_UID,
    CommitmentReport,
    CommitmentRequest,
    DuplicateTransactionError,
    InvalidCommitmentRequestError,
)
from app.domain.errors import DomainError, lookup
from app.services import commitment
from dicom_scp.status import NStatus, status_dataset

LOG = logging.getLogger(__name__)

Result = tuple[int | Dataset, Dataset | None]
POLL = 0.05  # seconds between looks at whether the requester released its association

ACTION_ERROR_STATUS: dict[type[DomainError], NStatus] = {
    InvalidCommitmentRequestError: NStatus.INVALID_ARGUMENT_VALUE,
    DuplicateTransactionError: NStatus.PROCESSING_FAILURE,
}


@dataclass(frozen=True)
class CommitmentContext:
    session_factory: SessionFactory
    storage_dir: Path
    ae_title: str  # the broker's: Retrieve AE Title of the committed instances
    report_delay: float  # seconds the requester has to release before a same-association report


def _peer(event: evt.Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def parse_action(ds: Dataset) -> CommitmentRequest:
    """Action Information (Table J.3-1) -> a validated request (``DomainError`` if malformed)."""
    items = []
    for item in ds.get("ReferencedSOPSequence") or ():
        items.append(
            (
                str(item.get("ReferencedSOPClassUID", "") or ""),
                str(item.get("ReferencedSOPInstanceUID", "") or ""),
            )
        )
    return CommitmentRequest.parse(str(ds.get("TransactionUID", "") or ""), items)


def handle_n_action(event: evt.Event, ctx: CommitmentContext) -> Result:
    """N-ACTION Request Storage Commitment (PS3.4 J.3.2.1)."""
    action_type = getattr(event.request, "ActionTypeID", None)
    if action_type != REQUEST_STORAGE_COMMITMENT:
        return status_dataset(
            NStatus.NO_SUCH_ACTION, f"Action Type ID {action_type} is not supported"
        ), None
    if str(getattr(event.request, "RequestedSOPInstanceUID", "")) != WELL_KNOWN_INSTANCE_UID:
        return status_dataset(
            NStatus.NO_SUCH_SOP_INSTANCE,
            f"Requested SOP Instance must be {WELL_KNOWN_INSTANCE_UID}",
        ), None
    try:
        parsed = parse_action(event.action_information)
    except DomainError as exc:
        LOG.info("storage commitment N-ACTION from %s refused: %s", _peer(event), exc.message)
        return _failure(exc), None
    except Exception:
        LOG.exception("storage commitment N-ACTION from %s could not be decoded", _peer(event))
        return status_dataset(NStatus.PROCESSING_FAILURE, "Action Information unreadable"), None
    return _record(event, ctx, parsed)


def _failure(error: DomainError) -> Dataset:
    return status_dataset(
        lookup(ACTION_ERROR_STATUS, error, NStatus.PROCESSING_FAILURE), error.message
    )


def _record(event: evt.Event, ctx: CommitmentContext, parsed: CommitmentRequest) -> Result:
    requester = _peer(event)
    try:
        with session_scope(ctx.session_factory) as session:
            new = commitment.record(session, requester=requester, request=parsed)
    except DomainError as exc:
        LOG.info("storage commitment %s refused: %s", parsed.transaction_uid, exc.message)
        return _failure(exc), None
    except Exception:
        LOG.exception("storage commitment %s could not be recorded", parsed.transaction_uid)
        return status_dataset(NStatus.PROCESSING_FAILURE, "request not recorded; see the log"), None
    LOG.info(
        "storage commitment %s from %s: %d instances",
        parsed.transaction_uid,
        requester,
        len(parsed.references),
    )
    if new:
        worker = threading.Thread(
            target=process,
            args=(ctx, parsed.transaction_uid, event.assoc, time.monotonic() + ctx.report_delay),
            name=f"stgcmt-{parsed.transaction_uid}"[:64],
            daemon=True,
        )
        worker.start()
    return int(NStatus.SUCCESS), None


def process(
    ctx: CommitmentContext, transaction_uid: str, assoc: Association | None, deadline: float
) -> None:
    """Check the instances, then report on ``assoc`` if it is still open, else queue the report."""
    try:
        report = commitment.check(
            ctx.session_factory,
            transaction_uid=transaction_uid,
            storage_dir=ctx.storage_dir,
            retrieve_ae_title=ctx.ae_title,
        )
        if assoc is not None and _still_open(assoc, deadline) and report_on(assoc, report):
            with session_scope(ctx.session_factory) as session:
                commitment.mark_reported(
                    session, transaction_uid=transaction_uid, via=commitment.SAME_ASSOCIATION
                )
            return
        with session_scope(ctx.session_factory) as session:
            commitment.queue_report(session, report=report)
    except Exception:
        LOG.exception("storage commitment %s could not be processed", transaction_uid)


RESUME_AGE = 60.0  # seconds: younger pending requests may still be in another broker's hands


def resume(ctx: CommitmentContext) -> int:
    """Finish the requests a stopped broker left ``pending`` (their requesters' associations
    are gone: the reports go on new associations). Returns how many were taken up."""
    cutoff = datetime.now(UTC) - timedelta(seconds=RESUME_AGE)
    try:
        with session_scope(ctx.session_factory) as session:
            uids = commitment.unfinished(session, received_before=cutoff)
    except Exception:
        LOG.exception("storage commitment: unfinished requests could not be read")
        return 0
    for uid in uids:
        LOG.info("storage commitment %s: taken up again after a restart", uid)
        process(ctx, uid, None, 0.0)
    return len(uids)


def _still_open(assoc: Association, deadline: float) -> bool:
    """Open at ``deadline``: the requester kept it (it may release it any time before)."""
    while assoc.is_established and time.monotonic() < deadline:
        threading.Event().wait(POLL)
    return bool(assoc.is_established)


def event_information(report: CommitmentReport) -> Dataset:
    """The N-EVENT-REPORT Event Information (PS3.4 Table J.3-2)."""
    ds = Dataset()
    ds.TransactionUID = report.transaction_uid
    if report.retrieve_ae_title:
        ds.RetrieveAETitle = report.retrieve_ae_title
    result = report.result
    if result.committed:
        ds.ReferencedSOPSequence = [
            _item(r.sop_class_uid, r.sop_instance_uid) for r in result.committed
        ]
    if result.failed:
        failed = []
        for f in result.failed:
            item = _item(f.reference.sop_class_uid, f.reference.sop_instance_uid)
            item.FailureReason = int(f.reason)
            failed.append(item)
        ds.FailedSOPSequence = failed
    return ds


def _item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def send_report(assoc: Association, report: CommitmentReport) -> int | None:
    """Send the N-EVENT-REPORT on ``assoc``; the response status, None without one."""
    status, _ = assoc.send_n_event_report(
        event_information(report),
        int(report.event_type),
        SOP_CLASS_UID,
        WELL_KNOWN_INSTANCE_UID,
    )
    return int(status.Status) if "Status" in status else None


HOLD_TIMEOUT = 10.0  # seconds to wait for the reactor to finish the message it is serving


def _hold(assoc: Association) -> bool:
    """Pause the acceptor's reactor between two messages, as ``send_n_event_report`` does
    itself, but give up when the association ends meanwhile: pynetdicom's own wait for the
    pause never returns if the reactor has exited (a release handled just before). True when
    paused with the association still open; then nothing else reads from it until released.
    """
    checkpoint = assoc._reactor_checkpoint
    checkpoint.clear()
    deadline = time.monotonic() + HOLD_TIMEOUT
    while not assoc._is_paused:
        if not assoc.is_established or time.monotonic() > deadline:
            checkpoint.set()
            return False
        threading.Event().wait(0.001)
    if not assoc.is_established:
        checkpoint.set()
        return False
    return True


def report_on(assoc: Association, report: CommitmentReport) -> bool:
    """True when the requester took the report on its own association."""
    if not _hold(assoc):
        return False
    try:
        status = send_report(assoc, report)
    except Exception as exc:  # released meanwhile, or no context for it: a new association
        LOG.info(
            "storage commitment %s: not reported on the same association (%s)",
            report.transaction_uid,
            type(exc).__name__,
        )
        return False
    finally:
        assoc._reactor_checkpoint.set()  # never leave the requester's association stalled
    if status != 0x0000:
        LOG.info(
            "storage commitment %s: the requester answered %s on the same association",
            report.transaction_uid,
            "nothing" if status is None else f"0x{status:04X}",
        )
        return False
    return True
