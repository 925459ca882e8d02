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
import logging
import multiprocessing
import os
import uuid
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from app.db import (
    SessionFactory,
    create_db_engine,
    create_session_factory,
    session_scope,
    tune_for_bulk_writes,
)
from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset, sequence_items, string_of, validate_json_dataset
from app.domain.errors import DomainError
from app.domain.items import WorklistItemData, item_from_json
from app.domain.mwl_attributes import SPS_SEQUENCE_KEY
from app.domain.status import AuditSource
from app.services.worklist import create_new_items, upsert_item
from dicom_scp import wlparse

LOG = logging.getLogger(__name__)

WORKLIST_SUFFIX = ".wl"
STUDY_INSTANCE_UID_KEY = "0020000D"
REQUESTED_PROCEDURE_ID_KEY = "00401001"
SPS_ID_KEY = "00400009"
CHARSET_KEY = "00080005"
_DECODE_WARNINGS = ("Failed to decode", "Unknown encoding")
# Fixed namespace of the derived Study Instance UIDs: never change it, or re-imports duplicate.
UID_NAMESPACE = uuid.UUID("5d1f3c2e-8a4b-5b7e-9c61-2f0e4d6a7b80")
BATCH_SIZE = 2000  # files per transaction
PARALLEL_FROM = 2000  # files; fewer parse faster in-process than by starting workers
PARSE_CHUNK = 250  # files handed to a parsing worker at a time
IN_FLIGHT = 4  # chunks per worker parsed ahead of the writer (bounds memory)
PARSER_NICENESS = 10


@dataclass(frozen=True)
class ImportFailure:
    path: Path
    reason: str


@dataclass
class ImportReport:
    """What an import did: items created, items updated, files refused (with the reason)."""

    created: int = 0
    updated: int = 0
    failures: list[ImportFailure] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def reasons(self) -> dict[str, list[Path]]:
        """The refused files by reason, most frequent reason first."""
        grouped: dict[str, list[Path]] = {}
        for failure in self.failures:
            grouped.setdefault(failure.reason, []).append(failure.path)
        return dict(sorted(grouped.items(), key=lambda entry: -len(entry[1])))


class WorklistFileError(Exception):
    """A file that cannot be read or decoded as a DICOM data set."""


class ImportProgress(Protocol):
    """Told how many files there are, then how many more are done (a progress bar)."""

    def start(self, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


# A file's name (as ``os.fspath`` gives it: cheaper than a Path to make and to pickle) and
# its item, or why the file was refused.
Parsed = tuple[str, WorklistItemData | str]

IMPORT_ACTOR = Actor(AuditSource.CLI, "import-wl")


def worklist_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Explicit files as given; folders searched recursively for ``*.wl`` (any case), sorted."""
    return map(Path, _file_names(paths))


def _file_names(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        if path.is_dir():
            # sorted as Path objects sort: by their parts
            yield from sorted(_found(os.fspath(path)), key=_parts)
        else:
            yield os.fspath(path)


def _found(folder: str) -> Iterator[str]:
    """The ``*.wl`` files under ``folder`` (``os.scandir``: no stat or Path object per file)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                if not entry.is_symlink():  # as Path.rglob: links to folders are not followed
                    yield from _found(entry.path)
            elif entry.name.lower().endswith(WORKLIST_SUFFIX) and entry.is_file():
                yield entry.path


def _parts(path: str) -> list[str]:
    return path.split(os.sep)


def read_dataset_json(path: Path) -> JsonDataset:
    """The file's data set as DICOM JSON (Unicode text), without File Meta Information.

    Files of the plain common shape are read by ``wlparse`` (the same answer, ~10x faster);
    pydicom reads the others.
    """
    try:
        with open(path, "rb") as file:
            fast = wlparse.dataset_json(file.read())
    except OSError as exc:
        raise WorklistFileError(f"not a readable DICOM file: {exc}") from None
    if fast is not None:
        return fast
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


def parse_file(path: Path | str) -> Parsed:
    """The item a worklist file describes, or why it cannot be imported (no database)."""
    name = os.fspath(path)
    try:
        item = with_stable_identifiers(validate_json_dataset(read_dataset_json(Path(name))))
        return name, item_from_json(item)
    except WorklistFileError as exc:
        return name, str(exc)
    except DomainError as exc:
        return name, exc.message


def import_file(path: Path, session_factory: SessionFactory) -> bool:
    """Import one worklist file; ``True`` when it created the item. Raises
    ``WorklistFileError`` or ``DomainError``."""
    item = with_stable_identifiers(validate_json_dataset(read_dataset_json(path)))
    with session_scope(session_factory) as session:
        return upsert_item(session, data=item_from_json(item), actor=IMPORT_ACTOR).created


def import_into_database(
    database_url: str, paths: Sequence[Path], progress: ImportProgress | None = None
) -> ImportReport:
    """``mwl-broker import-wl``: ``import_paths`` on an engine of its own, tuned for the bulk
    writes (``tune_for_bulk_writes``) and disposed of afterwards."""
    engine = create_db_engine(database_url)
    tune_for_bulk_writes(engine)
    try:
        return import_paths(list(paths), create_session_factory(engine), progress=progress)
    finally:
        engine.dispose()


def import_paths(
    paths: list[Path],
    session_factory: SessionFactory,
    *,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Import every worklist file under ``paths``, ``batch_size`` files per transaction.

    Files are parsed by ``workers`` processes (by default one per CPU once there are
    ``PARALLEL_FROM`` files). New items of a batch are written together
    (``create_new_items``), then the rest (updates, several steps of one procedure) together;
    the items of a joint write that failed are written one per transaction, so one bad item
    is reported and never stops the others. ``progress`` hears the number of files, then each
    batch as it is done.
    """
    files = list(_file_names(paths))
    if workers is None:
        workers = (os.cpu_count() or 1) if len(files) >= PARALLEL_FROM else 1
    report = ImportReport()
    if progress is not None:
        progress.start(len(files))
    for batch in batched(_parsed(files, workers), batch_size):
        _import_batch(batch, session_factory, report)
        if progress is not None:
            progress.advance(len(batch))
    return report


def batched(items: Iterable[Parsed], size: int) -> Iterator[list[Parsed]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _parsed(files: list[str], workers: int) -> Iterator[Parsed]:
    """The files parsed, in order; by ``workers`` processes when more than one.

    At most ``IN_FLIGHT`` chunks per worker are parsed or waiting at a time, so memory stays
    flat however many files there are (the writer is as fast as the parsers, not faster).
    """
    if workers <= 1:
        yield from map(parse_file, files)
        return
    # spawn, not fork: the importing process may run threads (a server, a progress bar)
    context = multiprocessing.get_context("spawn")
    chunks = (files[start : start + PARSE_CHUNK] for start in range(0, len(files), PARSE_CHUNK))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_lower_priority) as pool:
        pending: deque[Future[list[Parsed]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_parse_chunk, chunk))
            if len(pending) >= workers * IN_FLIGHT:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _parse_chunk(files: list[str]) -> list[Parsed]:
    return [parse_file(path) for path in files]


def _lower_priority() -> None:
    """Parsing workers yield the CPU to the process that writes (and commits) the batches:
    with as many workers as cores a starved writer would hold everything up."""
    with suppress(OSError):
        os.nice(PARSER_NICENESS)


def _import_batch(
    batch: list[Parsed], session_factory: SessionFactory, report: ImportReport
) -> None:
    good: list[tuple[str, WorklistItemData]] = []
    for path, parsed in batch:
        if isinstance(parsed, str):
            report.failures.append(ImportFailure(Path(path), parsed))
        else:
            good.append((path, parsed))
    try:
        with session_scope(session_factory) as session:
            items = [data for _, data in good]
            done = set(create_new_items(session, items, actor=IMPORT_ACTOR))
    except Exception as exc:  # any failure of the joint write: retry the batch item by item
        LOG.info("import batch of %d written one by one: %s", len(good), type(exc).__name__)
        done = set()
    report.created += len(done)
    _import_rest([entry for n, entry in enumerate(good) if n not in done], session_factory, report)


def _import_rest(
    rest: list[tuple[str, WorklistItemData]], session_factory: SessionFactory, report: ImportReport
) -> None:
    """Upsert the items ``create_new_items`` left (updates, several steps of one procedure):
    all in one transaction, or, when any of them fails, each in a transaction of its own."""
    if len(rest) > 1:
        try:
            with session_scope(session_factory) as session:
                stored = [upsert_item(session, data=d, actor=IMPORT_ACTOR) for _, d in rest]
                created = [item.created for item in stored]
        except Exception as exc:  # any failure: the batch is rolled back and written one by one
            LOG.info("import batch of %d written one by one: %s", len(rest), type(exc).__name__)
        else:
            report.created += sum(created)
            report.updated += len(created) - sum(created)
            return
    for path, data in rest:
        _import_one(path, data, session_factory, report)


def _import_one(
    path: str, data: WorklistItemData, session_factory: SessionFactory, report: ImportReport
) -> None:
    try:
        with session_scope(session_factory) as session:
            created = upsert_item(session, data=data, actor=IMPORT_ACTOR).created
    except DomainError as exc:
        report.failures.append(ImportFailure(Path(path), exc.message))
        return
    if created:
        report.created += 1
    else:
        report.updated += 1
