"""The Storage Commitment N-EVENT-REPORT on a new association (PS3.4 J.3.3.1.2-3): the outbox
sender of kind ``stgcmt-report`` (channel ``dicom``).

Each try looks the requester up again (``remote_ae`` with service ``commit``), so a corrected
host or port is used on the next retry. The broker requests the association as its own AE title
and proposes the Storage Commitment Push Model context with SCP/SCU Role Selection: SCU role
no, SCP role yes (PS3.7 D.3.3.4), as J.3.3.1.3 asks of an SCP that reports on an association it
opens. Only a Success (0x0000) response counts as delivered; then the commitment is marked
``reported``. Anything else raises :class:`ReportError` and the outbox retries with back-off.

TLS: a remote AE marked ``tls`` is reached over TLS with the broker's client context (PS3.15
B.9, ``app.tls.client_context``); without one it is never sent to in plain TCP: the try fails
with a clear error and stays queued.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from pynetdicom import AE, build_role

from app.config import DicomSettings
from app.db import SessionFactory, session_scope
from app.delivery import OutboxMessageView
from app.domain.commitment import SOP_CLASS_UID, CommitmentReport
from app.schemas import RemoteAeView
from app.services import commitment
from app.services.remote_aes import RemoteService, lookup
from dicom_scp.commitment import send_report
from dicom_scp.forward import tls_args

TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


class ReportError(Exception):
    """The requester could not be reached or did not take the report: retry later."""


def _peer(factory: SessionFactory, ae_title: str, client: ssl.SSLContext | None) -> RemoteAeView:
    with session_scope(factory) as session:
        peer = lookup(session, ae_title, RemoteService.COMMIT)
    if peer is None:
        raise ReportError(f"{ae_title} is no remote AE with service commit")
    if peer.tls and client is None:
        raise ReportError(f"{ae_title} needs TLS and this sender has no TLS client context")
    return peer


def _build_ae(settings: DicomSettings) -> AE:
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.add_requested_context(SOP_CLASS_UID, list(TRANSFER_SYNTAXES))
    return ae


def deliver(
    settings: DicomSettings,
    factory: SessionFactory,
    view: OutboxMessageView,
    client: ssl.SSLContext | None = None,
) -> None:
    """Send one report on a new association; raise unless the requester answered Success."""
    report = CommitmentReport.from_payload(view.payload)
    peer = _peer(factory, report.requester_ae_title, client)
    role = build_role(SOP_CLASS_UID, scu_role=False, scp_role=True)
    assoc = _build_ae(settings).associate(
        peer.host,
        peer.port,
        ae_title=peer.ae_title,
        ext_neg=[role],
        tls_args=tls_args(client if peer.tls else None, peer.host),
    )
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise ReportError(f"association to {peer.ae_title}@{peer.host}:{peer.port} {reason}")
    try:
        if not assoc.accepted_contexts:
            raise ReportError(f"{peer.ae_title} accepted no Storage Commitment context")
        status = send_report(assoc, report)
        if status == 0x0000:
            # Recorded before the release: a requester that drops the connection instead of
            # answering A-RELEASE-RQ would hold it back by the whole ACSE timeout.
            with session_scope(factory) as session:
                commitment.mark_reported(
                    session, transaction_uid=report.transaction_uid, via=commitment.NEW_ASSOCIATION
                )
    finally:
        if assoc.is_established:
            assoc.release()
    if status != 0x0000:
        answer = "no response" if status is None else f"0x{status:04X}"
        raise ReportError(f"{peer.ae_title} answered the N-EVENT-REPORT with {answer}")


def report_sender(
    settings: DicomSettings, factory: SessionFactory, client: ssl.SSLContext | None = None
) -> Callable[[OutboxMessageView], None]:
    """``client``: the TLS context for requesters marked ``tls`` (none: they are not sent to)."""

    def send(view: OutboxMessageView) -> None:
        deliver(settings, factory, view, client)

    return send
