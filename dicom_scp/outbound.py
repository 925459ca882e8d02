"""The outbox sender of channel ``dicom``: MPPS forwards and storage commitment reports."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from app.config import DicomSettings
from app.db import SessionFactory
from app.delivery import OutboxMessageView
from app.domain.commitment import REPORT_KIND
from dicom_scp import reactor
from dicom_scp.commitment_report import report_sender
from dicom_scp.forward import TlsFor, mpps_forwarder, no_tls


def dicom_sender(
    settings: DicomSettings,
    factory: SessionFactory,
    tls_for: TlsFor = no_tls,
    client: ssl.SSLContext | None = None,
) -> Callable[[OutboxMessageView], None]:
    """``tls_for`` (called AE title -> SSL context or None) decides TLS for MPPS forwards;
    ``client`` is the TLS context of reports to requesters marked ``tls``."""
    reactor.install()  # the associations it requests: pynetdicom's race (dicom_scp/reactor.py)
    forward = mpps_forwarder(settings, tls_for)
    report = report_sender(settings, factory, client)

    def send(view: OutboxMessageView) -> None:
        (report if view.kind == REPORT_KIND else forward)(view)

    return send
