"""Import DCMTK / Orthanc worklist files (``*.wl``) into the broker's database.

``import_paths`` takes files and folders. Folders are searched recursively for ``*.wl`` files
(suffix compared case-insensitively); a file named explicitly is imported whatever its suffix.
Each file is read with pydicom (``force=True``: DCMTK's ``dump2dcm`` and Orthanc write files
with or without a preamble and File Meta Information), converted to DICOM JSON (pydicom decodes
the text by the file's Specific Character Set (0008,0005), so the JSON holds Unicode), stripped
of group 0x0002 and stored with ``upsert_item`` in a session of its own: one bad file is
reported and never stops the others.

Re-importing is idempotent. Items are upserted by Study Instance UID + SPS ID, and the broker
generates a *random* Study Instance UID, Requested Procedure ID or SPS ID when an item lacks
one, which would duplicate the item on every import. So before validation a missing or empty

- Study Instance UID (0020,000D) becomes ``2.25.<int of uuid5(namespace, digest)>``,
- Requested Procedure ID (0040,1001) becomes ``RP`` + 14 hex digits of the digest,
- Scheduled Procedure Step ID (0040,0009) becomes ``SPS`` + 13 hex digits of the digest,

where the digest is the SHA-256 of the file's data set as canonical DICOM JSON (sorted keys,
without group 0x0002 and without Specific Character Set). The same file content therefore always
maps to the same item; an edited file that lacks these identifiers is a new item.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset, sequence_items, string_of, validate_json_dataset
from app.domain.errors import DomainError
from app.domain.items import item_from_json
from app.domain.mwl_attributes import SPS_SEQUENCE_KEY
from app.domain.status import AuditSource
from app.services.worklist import upsert_item

WORKLIST_SUFFIX = ".wl"
STUDY_INSTANCE_UID_KEY = "0020000D"
REQUESTED_PROCEDURE_ID_KEY = "00401001"
SPS_ID_KEY = "00400009"
CHARSET_KEY = "00080005"
_DECODE_WARNINGS = ("Failed to decode", "Unknown encoding")
# Fixed namespace of the derived Study Instance UIDs: never change it, or re-imports duplicate.
UID_NAMESPACE = uuid.UUID("5d1f3c2e-8a4b-5b7e-9c61-2f0e4d6a7b80")


@dataclass(frozen=True)
class ImportFailure:
    path: Path
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    failures: list[ImportFailure] = field(default_factory=list)


class WorklistFileError(Exception):
    """A file that cannot be read or decoded as a DICOM data set."""


IMPORT_ACTOR = Actor(AuditSource.CLI, "import-wl")


def worklist_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Explicit files as given; folders searched recursively for ``*.wl`` (any case), sorted."""
    for path in paths:
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix.lower() == WORKLIST_SUFFIX)
            yield from sorted(p for p in found if p.is_file())
        else:
            yield path


def read_dataset_json(path: Path) -> JsonDataset:
    """The file's data set as DICOM JSON (Unicode text), without File Meta Information."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds: Dataset = dcmread(path, force=True)
            raw = ds.to_json_dict()
    except (OSError, InvalidDicomError) as exc:
        raise WorklistFileError(f"not a readable DICOM file: {exc}") from None
    except Exception as exc:  # pydicom raises many types for a garbled data set
        raise WorklistFileError(
            f"cannot decode the data set: {type(exc).__name__}: {exc}"
        ) from None
    _fail_on_decode_warnings(str(w.message) for w in caught)
    item = {k: v for k, v in raw.items() if not k.upper().startswith("0002")}
    if not any(dictionary_has_tag(int(key, 16)) for key in item):
        # force=True "reads" any bytes as some private element: say what the file really is
        raise WorklistFileError("not a DICOM data set (no standard attribute found)")
    plain: JsonDataset = json.loads(json.dumps(item))  # pydicom's VR enums -> plain strings
    return plain


def _fail_on_decode_warnings(messages: Iterable[str]) -> None:
    """pydicom only warns when text does not fit (0008,0005): refuse rather than store mojibake."""
    for message in messages:
        if message.startswith(_DECODE_WARNINGS):
            raise WorklistFileError(f"text does not decode with its character set: {message}")


def content_digest(item: JsonDataset) -> bytes:
    """SHA-256 of the item as canonical JSON, ignoring Specific Character Set."""
    content = {k: v for k, v in item.items() if k != CHARSET_KEY}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def _missing(item: JsonDataset, key: str) -> bool:
    return not string_of(item, key)


def with_stable_identifiers(item: JsonDataset) -> JsonDataset:
    """``item`` with missing generated identifiers derived from its content (see the module)."""
    digest = content_digest(item)
    out: JsonDataset = dict(item)
    if _missing(out, STUDY_INSTANCE_UID_KEY):
        uid = uuid.uuid5(UID_NAMESPACE, digest.hex())
        out[STUDY_INSTANCE_UID_KEY] = {"vr": "UI", "Value": [f"2.25.{uid.int}"]}
    if _missing(out, REQUESTED_PROCEDURE_ID_KEY):
        out[REQUESTED_PROCEDURE_ID_KEY] = {"vr": "SH", "Value": ["RP" + digest.hex()[:14].upper()]}
    steps = sequence_items(out, SPS_SEQUENCE_KEY)
    if len(steps) == 1 and _missing(steps[0], SPS_ID_KEY):
        step: dict[str, Any] = {**steps[0], SPS_ID_KEY: {"vr": "SH", "Value": [_sps_id(digest)]}}
        out[SPS_SEQUENCE_KEY] = {"vr": "SQ", "Value": [step]}
    return out


def _sps_id(digest: bytes) -> str:
    return "SPS" + digest.hex()[:13].upper()


def import_file(path: Path, session_factory: SessionFactory) -> None:
    """Import one worklist file; raises ``WorklistFileError`` or ``DomainError``."""
    item = with_stable_identifiers(validate_json_dataset(read_dataset_json(path)))
    data = item_from_json(item)
    with session_scope(session_factory) as session:
        upsert_item(session, data=data, actor=IMPORT_ACTOR)


def import_paths(paths: list[Path], session_factory: SessionFactory) -> ImportReport:
    """Import every worklist file under ``paths``; each file in its own transaction."""
    report = ImportReport()
    for path in worklist_files(paths):
        try:
            import_file(path, session_factory)
        except WorklistFileError as exc:
            report.failures.append(ImportFailure(path, str(exc)))
        except DomainError as exc:
            report.failures.append(ImportFailure(path, exc.message))
        else:
            report.imported += 1
    return report
