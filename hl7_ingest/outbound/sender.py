"""The outbox sender of channel ``hl7``: a StatusReport as an HL7 message, over MLLP."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from app.config import Hl7Settings, parse_endpoint
from app.delivery import OutboxMessageView
from app.domain.reports import StatusReport
from hl7_ingest.outbound.client import ACK_TIMEOUT, MllpClient
from hl7_ingest.outbound.messages import status_message


def hl7_sender(
    settings: Hl7Settings,
    message_type: str,
    *,
    client: MllpClient | None = None,
    timeout: float = ACK_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> Callable[[OutboxMessageView], None]:
    """The outbox sender of channel ``hl7``: status message (``message_type`` ORM, ORU or OMI)
    to ``view.destination`` (host:port), over TLS when ``ssl_context`` is given.

    MSH-10 is ``MWL<outbox id>``: a resend after a lost ACK carries the same control ID, so the
    RIS can recognise the duplicate.
    """
    mllp = client or MllpClient(ssl_context=ssl_context)

    def send(view: OutboxMessageView) -> None:
        if view.kind != StatusReport.KIND:
            raise ValueError(f"the hl7 channel does not send '{view.kind}'")
        host, port = parse_endpoint(view.destination)
        message = status_message(
            StatusReport.from_payload(view.payload),
            message_type=message_type,
            settings=settings,
            control_id=f"MWL{view.id}",
        )
        mllp.send(host, port, message, timeout=timeout)

    return send
