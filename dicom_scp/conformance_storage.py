"""The Storage SCP part of the conformance statement (PS3.2 Annex A: SOP specific conformance
for the Storage SOP Classes), rendered into ``dicom_scp.conformance``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydicom.uid import UID

from app.config import DuplicatePolicy, Settings
from dicom_scp.status import StoreStatus
from dicom_scp.storage import STORAGE_SOP_CLASSES

STORE_STATUS_USE: dict[StoreStatus, str] = {
    StoreStatus.SUCCESS: "the instance is stored and indexed; also a duplicate SOP Instance UID "
    "(kept or replaced, see below)",
    StoreStatus.OUT_OF_RESOURCES: "the file could not be written (disk full, I/O error) or the "
    "index could not be written; nothing is kept",
    StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS: "Study or Series Instance UID missing, SOP "
    "Instance UID of the data set differs from the request, or the series belongs to "
    "another study",
    StoreStatus.CANNOT_UNDERSTAND: "the data set cannot be parsed",
}
SETTINGS: tuple[str, ...] = (
    "storage_dir",
    "storage_duplicate",
    "storage_retention_days",
    "storage_retention_requires_commitment",
)


def sop_class_name(uid: str) -> str:
    return UID(uid).name


def context_row() -> tuple[str, str, str, str]:
    """One presentation context row for every storage SOP class: C-STORE from a Storage SCU,
    and the contexts a C-GET requestor proposes with the SCP role (``dicom_scp.qr``)."""
    return (
        f"Every storage SOP class of 3.5.6.4 ({len(STORAGE_SOP_CLASSES)})",
        "all transfer syntaxes pynetdicom knows, Explicit VR Little Endian first (3.5.6)",
        "SCP for C-STORE from a Storage SCU; SCU when a C-GET requestor proposes the SCP role",
        "None",
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
    return [*lines, ""]


def _duplicate(settings: Settings) -> str:
    if settings.storage.duplicate is DuplicatePolicy.KEEP:
        return (
            "the first copy is kept and the new one discarded (`BROKER_STORAGE_DUPLICATE` = keep)"
        )
    return "the new copy replaces the file and the index row (`BROKER_STORAGE_DUPLICATE` = replace)"


def _retention(settings: Settings) -> str:
    days = settings.storage.retention_days
    if days <= 0:
        return "Stored instances are kept until deleted (`BROKER_STORAGE_RETENTION_DAYS` = 0)."
    committed = (
        ", and only once a storage commitment reported every instance committed"
        if settings.storage.retention_requires_commitment
        else ""
    )
    return (
        f"A study is deleted {days} days after its last instance arrived{committed} "
        "(`BROKER_STORAGE_RETENTION_DAYS`)."
    )


def storage_section(settings: Settings) -> list[str]:
    """Section 3.5.6: behaviour, statuses and the SOP classes of the Storage SCP."""
    lines = [
        "#### 3.5.6 Storage",
        "",
        "The broker is a Storage SCP (PS3.4 Annex B) for every storage SOP class listed in "
        "3.5.6.4, with the transfer syntaxes of 3.4.1. It conforms at **Level 2 (Full)**: each "
        "instance is kept exactly as received, private and all other attributes included, "
        "never decoded and re-encoded, as a DICOM Part 10 file whose file meta information "
        "states the transfer syntax it came in. No element is coerced. Files are written "
        "atomically (temporary file, fsync, rename) before the response is sent; an instance "
        "answered with Success is on disk and indexed.",
        "",
        "##### 3.5.6.1 Status Codes",
        "",
    ]
    rows = [(f"0x{int(s):04X}", s.name, STORE_STATUS_USE[s]) for s in StoreStatus]
    lines += _table(("Status", "Name", "When the broker sends it"), rows)
    lines += [
        "##### 3.5.6.2 Duplicates and Linking",
        "",
        f"An instance whose SOP Instance UID is stored already is answered Success; "
        f"{_duplicate(settings)}. A new study is linked to its requested procedure by Study "
        "Instance UID, else by Accession Number and Patient ID when they name exactly one "
        "procedure; studies matching no order are listed for reconciliation by the REST API "
        "(`GET /api/studies?unlinked=true`).",
        "",
        "##### 3.5.6.3 Retention",
        "",
        _retention(settings),
        "",
        "##### 3.5.6.4 Storage SOP Classes",
        "",
    ]
    classes = [(sop_class_name(uid), uid) for uid in STORAGE_SOP_CLASSES]
    return lines + _table(("SOP Class", "UID"), classes)
