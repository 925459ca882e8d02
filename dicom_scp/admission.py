"""Who may associate, how many at once, and which services each Calling AE may use.

Pure rules over plain values (no sockets): ``dicom_scp.transport`` asks them when an
A-ASSOCIATE-RQ has been read, and ``dicom_scp.conformance`` describes them.

Rejections (PS3.8 9.3.4, Table 9-21), checked in this order, the first failing one decides:
permanent ones first, so a configuration error is never reported as "try again later":

1. Calling AE not in ``BROKER_ALLOWED_CALLING_AES`` (when set): 1/1/3.
2. Called AE is not the broker's (``BROKER_REQUIRE_CALLED_AE``): 1/1/7.
3. ``BROKER_MAX_ASSOCIATIONS`` established associations: 2/3/2 (local limit exceeded).
4. ``BROKER_MAX_ASSOCIATIONS_PER_AE`` established associations of this Calling AE: 2/3/2.

Per-AE services are enforced at negotiation: a presentation context whose SOP Class belongs to a
service the Calling AE may not use is answered "abstract syntax not supported" (result 3,
PS3.8 9.3.3.2), so an SCU learns it at association time, before it sends any request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydicom.uid import UID
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

VERIFICATION = "1.2.840.10008.1.1"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
MPPS_CLASSES = frozenset(
    {
        "1.2.840.10008.3.1.2.3.3",  # Modality Performed Procedure Step
        "1.2.840.10008.3.1.2.3.4",  # ... Retrieve
        "1.2.840.10008.3.1.2.3.5",  # ... Notification
    }
)


class RejectReason(StrEnum):
    """Why a connection or an association was refused (the counters' labels)."""

    CONNECTIONS = "connections"  # raw connection cap: closed without a word
    CALLING_AE = "calling_ae"
    CALLED_AE = "called_ae"
    ASSOCIATIONS = "associations"
    CALLING_AE_ASSOCIATIONS = "calling_ae_associations"
    UNEXPECTED_PDU = "unexpected_pdu"
    UNKNOWN_PDU = "unknown_pdu"
    PDU_LENGTH = "pdu_length"
    MESSAGE_LENGTH = "message_length"
    ASSOCIATE_RQ_LENGTH = "associate_rq_length"
    INTERNAL = "internal"


# A-ASSOCIATE-RJ (result, source, reason/diag.), PS3.8 Table 9-21.
REJECT_CODES: dict[RejectReason, tuple[int, int, int]] = {
    RejectReason.CALLING_AE: (1, 1, 3),
    RejectReason.CALLED_AE: (1, 1, 7),
    RejectReason.ASSOCIATIONS: (2, 3, 2),
    RejectReason.CALLING_AE_ASSOCIATIONS: (2, 3, 2),
    RejectReason.INTERNAL: (2, 3, 1),  # temporary congestion
}


def service_of(sop_class: str) -> str | None:
    """The service (as named in ``BROKER_ALLOWED_CALLING_AES``) a SOP Class belongs to."""
    if sop_class == VERIFICATION:
        return "echo"
    if sop_class == MODALITY_WORKLIST_FIND:
        return "find"
    if sop_class in MPPS_CLASSES:
        return "mpps"
    if sop_class == STORAGE_COMMITMENT_PUSH:
        return "commit"
    name = UID(sop_class).name
    for suffix, service in (("- FIND", "find"), ("- MOVE", "move"), ("- GET", "get")):
        if name.endswith(suffix):
            return service
    if issubclass(uid_to_service_class(sop_class), StorageServiceClass):
        return "store"
    return None


# C-GET's instances come back as C-STORE sub-operations on the same association, in Storage
# presentation contexts the requestor proposes with the SCP role (PS3.4 C.4.3.1): "get" needs them.
IMPLIED_SERVICES: dict[str, frozenset[str]] = {"get": frozenset({"store"})}


def allowed_sop_classes(services: frozenset[str] | None, sop_classes: Iterable[str]) -> set[str]:
    """The SOP Classes a Calling AE with ``services`` may negotiate (``None``: all)."""
    if services is None:
        return set(sop_classes)
    granted = set(services).union(*(IMPLIED_SERVICES.get(s, frozenset()) for s in services))
    return {uid for uid in sop_classes if service_of(uid) in granted}


@dataclass(frozen=True)
class AdmissionPolicy:
    """The association rules of one broker (every listener shares them)."""

    ae_title: str
    require_called_ae: bool
    calling_ae_services: Mapping[str, frozenset[str] | None]
    max_associations: int
    max_associations_per_ae: int  # 0: no limit

    def services_of(self, calling_ae: str) -> frozenset[str] | None:
        """The services of an allowed Calling AE; ``None`` is every service."""
        return self.calling_ae_services.get(calling_ae) if self.calling_ae_services else None

    def check(
        self, calling_ae: str, called_ae: str, established: int, established_by_ae: int
    ) -> RejectReason | None:
        """``None`` to accept; else why the A-ASSOCIATE-RQ is rejected."""
        if self.calling_ae_services and calling_ae not in self.calling_ae_services:
            return RejectReason.CALLING_AE
        if self.require_called_ae and called_ae != self.ae_title:
            return RejectReason.CALLED_AE
        if established >= self.max_associations:
            return RejectReason.ASSOCIATIONS
        if self.max_associations_per_ae and established_by_ae >= self.max_associations_per_ae:
            return RejectReason.CALLING_AE_ASSOCIATIONS
        return None
