"""Status messages to the RIS: built from a StatusReport (``messages``), delivered over MLLP with
original-mode acknowledgement (``client``), driven by the outbox (``sender.hl7_sender``)."""

from hl7_ingest.outbound.client import DeliveryError, MllpClient
from hl7_ingest.outbound.messages import status_message
from hl7_ingest.outbound.sender import hl7_sender

__all__ = ["DeliveryError", "MllpClient", "hl7_sender", "status_message"]
