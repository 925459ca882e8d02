"""Who made a change: the interface it came through and the name it came under.

Every service call that writes carries an ``Actor``; the audit trail records it. The name is a
user name (page), ``token:NAME`` (REST with an API token), a calling AE title (DICOM MPPS), an
HL7 sending application (MSH-3), or a command name (CLI). ``context`` names the message the
change came in (HL7 MSH-10, an MPPS SOP Instance UID), so a step's history leads to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.status import AuditSource


@dataclass(frozen=True)
class Actor:
    source: AuditSource
    name: str = ""
    context: str = ""

    def __str__(self) -> str:
        return f"{self.source.value}:{self.name}" if self.name else self.source.value


SYSTEM = Actor(AuditSource.SYSTEM, "broker")
