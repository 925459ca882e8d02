"""The outbox sender of channel ``dicom``: MPPS forwards and storage commitment reports."""

from __future__ import annotations

from collections.abc import Callable

from app.config import DicomSettings
from app.db import SessionFactory
from app.delivery import OutboxMessageView
from app.domain.commitment import REPORT_KIND
from dicom_scp.commitment_report import report_sender
from dicom_scp.forward import mpps_forwarder


def dicom_sender(
    settings: DicomSettings, factory: SessionFactory
) -> Callable[[OutboxMessageView], None]:
    forward = mpps_forwarder(settings)
    report = report_sender(settings, factory)

    def send(view: OutboxMessageView) -> None:
        (report if view.kind == REPORT_KIND else forward)(view)

    return send
