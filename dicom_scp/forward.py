"""Forwarding MPPS to downstream SCPs (IHE RAD-6/RAD-7: the PPS Manager forwards N-CREATE and
N-SET to the Image Manager / Order Filler; SPEC_DIGEST 2.6).

The outbox sender of channel ``dicom`` opens one association per message, as the broker's AE
title, to ``AE@host:port``, requesting Modality Performed Procedure Step
(1.2.840.10008.3.1.2.3.3, PS3.4 F.7.3), and sends the stored N-CREATE data set or N-SET
modification list with the same SOP Instance UID the modality used. Success (0x0000) and
warnings (0x0001, 0x0107, 0x0116, 0xBxxx; PS3.7 Annex C) count as delivered; a refused or
aborted association, no response or a failure status raises :class:`ForwardError` and the
outbox retries later.

TLS per destination: ``tls_for(called AE title)`` gives the SSL context to connect with (PS3.15
B.9; the composition root answers from the ``remote_ae`` table's ``tls`` flag), or ``None`` for
plain TCP. :func:`tls_args` is the one way to hand a context to pynetdicom's ``associate``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom import AE, Association, _config
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from app.config import DicomSettings, parse_endpoint
from app.delivery import OutboxMessageView
from app.domain.reports import MPPS_CREATE, ForwardedMpps
from dicom_scp.tcp import HANDLERS as TCP_HANDLERS

MPPS_UID = str(ModalityPerformedProcedureStep)
WARNINGS = frozenset({0x0001, 0x0107, 0x0116})

# The data sets carry patient data: pynetdicom must not print them.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


TlsFor = Callable[[str], ssl.SSLContext | None]


def no_tls(ae_title: str) -> ssl.SSLContext | None:
    return None


def tls_args(context: ssl.SSLContext | None, host: str) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``associate(..., tls_args=...)``: the context and the name to check."""
    return None if context is None else (context, host)


class ForwardError(Exception):
    """The downstream SCP could not be reached or refused the message: retry later."""


def parse_target(destination: str) -> tuple[str, str, int]:
    """``AE@host:port`` -> (called AE title, host, port)."""
    ae_title, sep, address = destination.partition("@")
    if not sep or not ae_title:
        raise ValueError(f"'{destination}' is not AE@host:port")
    host, port = parse_endpoint(address)
    return ae_title, host, port


DUPLICATE_SOP_INSTANCE = 0x0111


def delivered(status: int, kind: str = "") -> bool:
    """Success or a warning (PS3.7 Annex C): the SCP took the message.

    A re-sent N-CREATE (our "sent" mark was lost after a successful send) is answered 0x0111
    Duplicate SOP Instance: the SCP has it already, so that counts as delivered too.
    """
    if kind == MPPS_CREATE and status == DUPLICATE_SOP_INSTANCE:
        return True
    return status == 0x0000 or status in WARNINGS or 0xB000 <= status <= 0xBFFF


def _build_ae(settings: DicomSettings) -> AE:
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.add_requested_context(MPPS_UID)
    return ae


def _request(assoc: Association, view: OutboxMessageView) -> Dataset:
    """Send the N-CREATE or N-SET of ``view``; return the response status data set."""
    forwarded = ForwardedMpps.from_payload(view.payload)
    dataset = Dataset.from_json(forwarded.dataset)
    if view.kind == MPPS_CREATE:
        status, _ = assoc.send_n_create(dataset, MPPS_UID, forwarded.sop_instance_uid)
    else:
        status, _ = assoc.send_n_set(dataset, MPPS_UID, forwarded.sop_instance_uid)
    return status


def _check(status: Dataset, view: OutboxMessageView) -> None:
    if "Status" not in status:
        raise ForwardError(f"no {view.kind} response from {view.destination}")
    code = int(status.Status)
    if not delivered(code, view.kind):
        comment = str(status.get("ErrorComment", "") or "")
        detail = f": {comment}" if comment else ""
        raise ForwardError(f"{view.destination} answered {view.kind} with 0x{code:04X}{detail}")


def forward(settings: DicomSettings, view: OutboxMessageView, tls_for: TlsFor = no_tls) -> None:
    """Deliver one outbox message of channel ``dicom``; raise unless the SCP took it."""
    if view.kind not in ForwardedMpps.KINDS:
        raise ValueError(f"the dicom channel does not send '{view.kind}'")
    called, host, port = parse_target(view.destination)
    tls = tls_args(tls_for(called), host)
    assoc = _build_ae(settings).associate(
        host, port, ae_title=called, tls_args=tls, evt_handlers=list(TCP_HANDLERS)
    )
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise ForwardError(f"association to {view.destination} {reason}")
    try:
        status = _request(assoc, view)
    finally:
        if assoc.is_established:
            assoc.release()
    _check(status, view)


def mpps_forwarder(
    settings: DicomSettings, tls_for: TlsFor = no_tls
) -> Callable[[OutboxMessageView], None]:
    """The outbox sender of channel ``dicom``."""

    def send(view: OutboxMessageView) -> None:
        forward(settings, view, tls_for)

    return send
