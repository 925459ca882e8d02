"""Worklist items: write one item, find items for a query, read, delete and move status.

A worklist item (PS3.4 K.6.1.2.1) is one Scheduled Procedure Step with its Requested Procedure,
Imaging Service Request, Visit and Patient. Items leave this module as DICOM JSON (plain dicts).
Rows are written by ``app.services.write``; rows become items in ``app.services.read``.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset
from app.domain.errors import ConflictError, NotFoundError
from app.domain.items import WorklistItemData
from app.domain.status import SpsStatus
from app.domain.worklist import WorklistQuery
from app.models import ImagingServiceRequest, RequestedProcedure, ScheduledProcedureStep
from app.services import read, write

_STREAM_BATCH = 500
_RESOLVE_BATCH = 100  # confirmed matches whose items are fetched together
ITEM_CACHE_SIZE = 20_000  # items kept per cache (a few KiB each)


@dataclass(frozen=True)
class StoredItem:
    """A written item: its DICOM JSON and whether the step was created by this call."""

    item: JsonDataset
    created: bool
    step_pk: int


class ItemCache:
    """Assembled items by step, each kept with the version it was assembled from
    (``read.candidate_version``), at most ``max_items`` (least recently used go first).

    A hit needs the version read with the match to be equal, so a changed step, procedure,
    order or patient is never answered from the cache, whichever process changed it.
    Thread-safe: the DICOM listener serves each association in its own thread.
    """

    def __init__(self, max_items: int = ITEM_CACHE_SIZE) -> None:
        self.max_items = max_items
        self._items: OrderedDict[int, tuple[read.Version, JsonDataset]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, step_pk: int, version: read.Version) -> JsonDataset | None:
        with self._lock:
            found = self._items.get(step_pk)
            if found is None or found[0] != version:
                return None
            self._items.move_to_end(step_pk)
            return found[1]

    def put(self, step_pk: int, version: read.Version, item: JsonDataset) -> None:
        with self._lock:
            self._items[step_pk] = (version, item)
            self._items.move_to_end(step_pk)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Match:
    """One matching item and the version it was built from (a cache key for encodings)."""

    version: read.Version
    item: JsonDataset


def _version_of(row: read.Row) -> read.Version:
    step, procedure, order, patient = row
    return (
        step.id, step.updated_at, procedure.id, procedure.updated_at,
        order.id, order.updated_at, patient.id, patient.updated_at,
    )  # fmt: skip


def _resolve(
    session: Session, versions: list[read.Version], cache: ItemCache | None
) -> Iterator[Match]:
    """The items of ``versions`` (in order): from the cache, else assembled from full rows."""
    found: dict[int, Match] = {}
    for version in versions:
        item = cache.get(version[0], version) if cache is not None else None
        if item is not None:
            found[version[0]] = Match(version, item)
    missing = [v[0] for v in versions if v[0] not in found]
    for pk, row in read.rows_by_step(session, missing).items():
        # Versioned by the rows read now: a change committed since the candidate query
        # (PostgreSQL reads each statement's own snapshot) is cached under its own version.
        version = _version_of(row)
        item = read.assemble_item(row)
        if cache is not None:
            cache.put(pk, version, item)
        found[pk] = Match(version, item)
    for version in versions:
        if version[0] in found:  # a step deleted in between is no match any more
            yield found[version[0]]


def find_matches(
    session: Session, *, query: WorklistQuery, offset: int = 0, cache: ItemCache | None = None
) -> Iterator[Match]:
    """Stream the items matching ``query`` in start order (PS3.4 K.2.2, C.2.2.2).

    One statement per query shape (``read.candidates_statement``) reads the matchable columns
    and the row versions; each candidate is confirmed with ``WorklistQuery.matches``; items
    come from ``cache`` when their version is unchanged, else from their full rows (one query
    per batch). The caller stops iterating whenever it has enough (or the peer cancelled).
    """
    statement, params = read.candidates_statement(query)
    # On the session's Core connection: the ORM's per-statement work buys nothing for columns.
    rows = session.connection().execute(
        statement, params, execution_options={"yield_per": _STREAM_BATCH}
    )
    skipped = 0
    batch: list[read.Version] = []
    for row in rows:
        if not query.matches(read.candidate_record(row)):
            continue
        if skipped < offset:
            skipped += 1
            continue
        batch.append(read.candidate_version(row))
        if len(batch) >= _RESOLVE_BATCH:
            yield from _resolve(session, batch, cache)
            batch = []
    if batch:
        yield from _resolve(session, batch, cache)


def find(
    session: Session, *, query: WorklistQuery, offset: int = 0, cache: ItemCache | None = None
) -> Iterator[JsonDataset]:
    """The items of ``find_matches``, without their versions."""
    for match in find_matches(session, query=query, offset=offset, cache=cache):
        yield match.item


def get_item(session: Session, *, study_uid: str, sps_id: str) -> JsonDataset:
    row = read.row_by_identity(session, study_uid, sps_id)
    if row is None:
        raise NotFoundError(f"no worklist item {study_uid}/{sps_id}")
    return read.assemble_item(row)


def create_new_items(
    session: Session, items: Sequence[WorklistItemData], *, actor: Actor
) -> list[int]:
    """Create at once those ``items`` that are certainly new: their Study Instance UID is
    unknown and appears once in ``items``. Returns their indexes; the others are left for
    ``upsert_item`` (an update, or several steps of one procedure)."""
    uids = [item.procedure.study_instance_uid for item in items]
    known = set(
        session.exec(
            select(RequestedProcedure.study_instance_uid).where(
                col(RequestedProcedure.study_instance_uid).in_(set(uids))
            )
        )
    )
    counts = Counter(uids)
    chosen = [n for n, uid in enumerate(uids) if uid not in known and counts[uid] == 1]
    if chosen:
        write.create_items(session, [items[n] for n in chosen], actor=actor)
    return chosen


def _find_order(
    session: Session, patient_pk: int | None, accession_number: str
) -> ImagingServiceRequest | None:
    if not accession_number:
        return None
    return session.exec(
        select(ImagingServiceRequest).where(
            ImagingServiceRequest.accession_number == accession_number,
            ImagingServiceRequest.patient_pk == patient_pk,
        )
    ).first()


def upsert_item(session: Session, *, data: WorklistItemData, actor: Actor) -> StoredItem:
    """Create the item, or update it when its Study Instance UID + SPS ID exists.

    The patient is found or created by Patient ID + Issuer; the order by Accession Number
    within that patient; the requested procedure by Study Instance UID.
    """
    patient = write.ensure_patient(session, data.patient, actor=actor)
    procedure = session.exec(
        select(RequestedProcedure).where(
            RequestedProcedure.study_instance_uid == data.procedure.study_instance_uid
        )
    ).first()
    if procedure is None:
        order = _find_order(
            session, patient.id, data.order.accession_number
        ) or write.create_order_row(session, patient, data.order, actor=actor)
        procedure = write.create_procedure_row(session, order, data.procedure, actor=actor)
    else:
        order = session.get_one(ImagingServiceRequest, procedure.order_pk)
        if order.patient_pk != patient.id:
            raise ConflictError(
                f"Study Instance UID {data.procedure.study_instance_uid} belongs to another "
                "patient",
                field="StudyInstanceUID",
            )
        order_values = {
            **write.order_values(data.order),
            "attributes": {**order.attributes, **data.order.attributes},
        }
        write.update_row(session, order, write.ORDER, order_values, actor=actor)
        write.update_row(
            session, procedure, write.PROCEDURE, write.procedure_values(data.procedure), actor=actor
        )
    step = session.exec(
        select(ScheduledProcedureStep).where(
            ScheduledProcedureStep.procedure_pk == procedure.id,
            ScheduledProcedureStep.sps_id == data.step.sps_id,
        )
    ).first()
    created = step is None
    if step is None:
        step = write.create_step_row(session, procedure, data.step, actor=actor)
    else:
        values = write.step_values(data.step)
        write.update_step_row(session, step, values, data.step.status, actor=actor)
    session.flush()
    assert step.id is not None
    return StoredItem(read.assemble_item((step, procedure, order, patient)), created, step.id)


def _step_by_identity(session: Session, study_uid: str, sps_id: str) -> ScheduledProcedureStep:
    row = read.row_by_identity(session, study_uid, sps_id)
    if row is None:
        raise NotFoundError(f"no worklist item {study_uid}/{sps_id}")
    return row[0]


def set_status(
    session: Session, *, study_uid: str, sps_id: str, status: SpsStatus, actor: Actor
) -> JsonDataset:
    step = _step_by_identity(session, study_uid, sps_id)
    write.move_status(session, step, status, actor=actor)
    session.flush()
    return get_item(session, study_uid=study_uid, sps_id=sps_id)


def delete_item(session: Session, *, study_uid: str, sps_id: str, actor: Actor) -> None:
    """Remove the step; a procedure or order left without steps goes with it."""
    write.delete_step_row(session, _step_by_identity(session, study_uid, sps_id), actor=actor)
