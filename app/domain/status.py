"""Scheduled Procedure Step status (0040,0020) and the transitions the broker allows."""

from __future__ import annotations

from enum import StrEnum


class SpsStatus(StrEnum):
    """Defined Terms of Scheduled Procedure Step Status (0040,0020), PS3.3 C.4.10."""

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    DEPARTED = "DEPARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES: frozenset[SpsStatus] = frozenset(
    {SpsStatus.COMPLETED, SpsStatus.DISCONTINUED, SpsStatus.CANCELED}
)

# A final step is closed: it may not move again except being re-scheduled by staff (which opens
# it anew). Everything else may move freely between the open states, since modalities and staff
# report ARRIVED/READY/STARTED in whatever order the department works.
_REOPENABLE_TO: frozenset[SpsStatus] = frozenset({SpsStatus.SCHEDULED})


def can_transition(current: SpsStatus, target: SpsStatus) -> bool:
    """Whether a step in ``current`` may move to ``target``."""
    if current == target:
        return True
    if current.is_final:
        return target in _REOPENABLE_TO
    return True


class AuditSource(StrEnum):
    """Where a change came from; kept in the audit trail."""

    REST = "REST"
    WEB = "WEB"
    HL7 = "HL7"
    DICOM = "DICOM"
    CLI = "CLI"
    SYSTEM = "SYSTEM"
