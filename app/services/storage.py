"""Stored studies: the write path of the Storage SCP (PS3.4 Annex B) and its read views.

``receive`` takes the Part 10 bytes exactly as received and the few index attributes the adapter
read from them; it writes the file first (atomically, ``app.filestore``), then indexes it as
study / series / instance in one transaction. If the index cannot be written, the file of a new
instance is removed again, so a failure leaves neither file nor row.

A new study is linked to the requested procedure it was ordered as: by Study Instance UID, else
by Accession Number + Patient ID when that names exactly one procedure. Studies that match no
order wait in ``list_studies(unlinked=True)`` to be linked by hand (``link_study``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.config import DuplicatePolicy
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import (
    ConflictError,
    DomainError,
    MissingValueError,
    NotFoundError,
    ValidationError,
)
from app.domain.matching import person_name_key
from app.domain.status import AuditSource
from app.events import ChangeEvent, note
from app.filestore import FileStore, FileStoreError, instance_path
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    utcnow,
)
from app.schemas import ImagesReceived, StoredSeriesView, StoredStudyView
from app.services import write

LOG = logging.getLogger(__name__)
ENTITY = "stored_study"
INDEX_ATTEMPTS = 3  # concurrent associations may create the same study or series at once

# Index attributes by level: DICOM keyword -> column (PS3.4 C.6 Q/R information model levels).
STUDY_COLUMNS: Mapping[str, str] = {
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer_of_patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "AccessionNumber": "accession_number",
    "StudyID": "study_id",
    "ReferringPhysicianName": "referring_physician_name",
    "StudyDescription": "study_description",
}
SERIES_COLUMNS: Mapping[str, str] = {
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
}
INSTANCE_COLUMNS: Mapping[str, str] = {"InstanceNumber": "instance_number"}
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID")
INDEX_KEYWORDS: tuple[str, ...] = (
    *UID_KEYWORDS,
    *STUDY_COLUMNS,
    *SERIES_COLUMNS,
    *INSTANCE_COLUMNS,
)


class StorageFailedError(DomainError):
    """The instance could not be written: out of resources (C-STORE 0xA7xx)."""


class DataSetMismatchError(ValidationError):
    """The data set contradicts the C-STORE request (C-STORE 0xA9xx)."""


class StoreResult(StrEnum):
    STORED = "stored"
    REPLACED = "replaced"
    DUPLICATE_KEPT = "duplicate_kept"  # BROKER_STORAGE_DUPLICATE=keep: the first copy stays


@dataclass(frozen=True)
class ReceivedInstance:
    """One C-STORE, as plain values: the Part 10 file bytes and its index attributes
    (keyword -> string value, as read from the header before the pixel data)."""

    data: bytes
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str
    attributes: Mapping[str, str]

    def value(self, keyword: str) -> str:
        return str(self.attributes.get(keyword, "") or "").strip()


@dataclass(frozen=True)
class StoreOutcome:
    result: StoreResult
    path: str
    study_pk: int
    linked_procedure_pk: int | None


def _required(instance: ReceivedInstance) -> tuple[str, str, str]:
    for keyword in UID_KEYWORDS:
        if not instance.value(keyword):
            raise MissingValueError(f"{keyword} is missing", field=keyword)
    if not instance.sop_instance_uid.strip():
        raise MissingValueError("SOP Instance UID is missing", field="SOPInstanceUID")
    return (
        instance.value("StudyInstanceUID"),
        instance.value("SeriesInstanceUID"),
        instance.sop_instance_uid.strip(),
    )


# ---------------------------------------------------------------------------------------------
# Receiving


def receive(
    factory: SessionFactory,
    *,
    files: FileStore,
    instance: ReceivedInstance,
    duplicate: DuplicatePolicy,
) -> StoreOutcome:
    """Write the file, then index it; a failure leaves no partial file and no row.

    Raises :class:`StorageFailedError` when the file cannot be written (disk full, I/O) or the
    index cannot; ``MissingValueError`` when a UID is missing.
    """
    study_uid, series_uid, sop_uid = _required(instance)
    with session_scope(factory) as session:
        existing = _instance_row(session, sop_uid)
        if existing is not None and duplicate is DuplicatePolicy.KEEP:
            series = session.get_one(StoredSeries, existing.series_pk)
            return StoreOutcome(StoreResult.DUPLICATE_KEPT, existing.path, series.study_pk, None)
        old_path = existing.path if existing is not None else None
    relative = instance_path(study_uid, series_uid, sop_uid)
    try:
        size = files.write(relative, instance.data)
    except FileStoreError as exc:
        LOG.error("C-STORE of %s not stored: %s", sop_uid, exc)
        raise StorageFailedError(str(exc)) from exc
    try:
        outcome = _index_with_retry(factory, instance, relative, size, duplicate)
    except Exception as exc:
        if relative != old_path:
            files.remove(relative)
        if isinstance(exc, DomainError):
            raise
        LOG.exception("C-STORE of %s: index not written, file removed", sop_uid)
        raise StorageFailedError("the index could not be written") from exc
    if old_path is not None and old_path != relative and outcome.result is StoreResult.REPLACED:
        files.remove(old_path)
    return outcome


def _index_with_retry(
    factory: SessionFactory,
    instance: ReceivedInstance,
    relative: str,
    size: int,
    duplicate: DuplicatePolicy,
) -> StoreOutcome:
    for attempt in range(1, INDEX_ATTEMPTS + 1):
        try:
            with session_scope(factory) as session:
                return _index(session, instance, relative, size, duplicate)
        except IntegrityError:
            if attempt == INDEX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _instance_row(session: Session, sop_uid: str) -> StoredInstance | None:
    return session.exec(
        select(StoredInstance).where(StoredInstance.sop_instance_uid == sop_uid)
    ).first()


def _columns(instance: ReceivedInstance, columns: Mapping[str, str]) -> dict[str, Any]:
    return {column: instance.value(keyword) for keyword, column in columns.items()}


def _study(session: Session, instance: ReceivedInstance, actor: Actor) -> StoredStudy:
    uid = instance.value("StudyInstanceUID")
    study = session.exec(select(StoredStudy).where(StoredStudy.study_instance_uid == uid)).first()
    if study is not None:
        study.updated_at = utcnow()
        session.add(study)
        return study
    values = _columns(instance, STUDY_COLUMNS)
    study = StoredStudy(
        study_instance_uid=uid, patient_name_key=person_name_key(values["patient_name"]), **values
    )
    procedure = match_procedure(
        session,
        study_uid=uid,
        accession=values["accession_number"],
        patient_id=values["patient_id"],
    )
    study.procedure_pk = procedure.id if procedure is not None else None
    session.add(study)
    session.flush()
    assert study.id is not None
    write.audit(
        session,
        actor=actor,
        action="receive",
        entity=ENTITY,
        entity_pk=study.id,
        detail={"study_instance_uid": uid, "procedure_pk": study.procedure_pk},
    )
    if procedure is not None:
        _audit_link(session, actor, study, procedure, how="received")
    LOG.info(
        "new study %s from %s, %s",
        uid,
        instance.calling_ae_title,
        f"linked to procedure {study.procedure_pk}" if procedure else "unlinked",
    )
    return study


def _series(session: Session, instance: ReceivedInstance, study: StoredStudy) -> StoredSeries:
    uid = instance.value("SeriesInstanceUID")
    series = session.exec(
        select(StoredSeries).where(StoredSeries.series_instance_uid == uid)
    ).first()
    if series is not None:
        if series.study_pk != study.id:
            raise ConflictError(f"series {uid} belongs to another study", field="SeriesInstanceUID")
        return series
    assert study.id is not None
    series = StoredSeries(
        study_pk=study.id, series_instance_uid=uid, **_columns(instance, SERIES_COLUMNS)
    )
    session.add(series)
    session.flush()
    return series


def _index(
    session: Session,
    instance: ReceivedInstance,
    relative: str,
    size: int,
    duplicate: DuplicatePolicy,
) -> StoreOutcome:
    actor = Actor(AuditSource.DICOM, instance.calling_ae_title)
    existing = _instance_row(session, instance.sop_instance_uid.strip())
    if existing is not None and duplicate is DuplicatePolicy.KEEP:
        series = session.get_one(StoredSeries, existing.series_pk)
        return StoreOutcome(StoreResult.DUPLICATE_KEPT, existing.path, series.study_pk, None)
    study = _study(session, instance, actor)
    series = _series(session, instance, study)
    assert series.id is not None and study.id is not None
    values: dict[str, Any] = {
        "series_pk": series.id,
        "sop_class_uid": instance.sop_class_uid.strip(),
        "transfer_syntax_uid": instance.transfer_syntax_uid.strip(),
        "path": relative,
        "size_bytes": size,
        "calling_ae_title": instance.calling_ae_title[:16],
        "received_at": utcnow(),
        **_columns(instance, INSTANCE_COLUMNS),
    }
    if existing is None:
        session.add(StoredInstance(sop_instance_uid=instance.sop_instance_uid.strip(), **values))
        result = StoreResult.STORED
    else:
        for name, value in values.items():
            setattr(existing, name, value)
        session.add(existing)
        result = StoreResult.REPLACED
    session.flush()
    _notify_steps(session, study.procedure_pk)
    return StoreOutcome(result, relative, study.id, study.procedure_pk)


def _notify_steps(session: Session, procedure_pk: int | None) -> None:
    """Open pages refresh the steps whose images counts changed."""
    if procedure_pk is None:
        return
    steps = session.exec(
        select(ScheduledProcedureStep.id).where(ScheduledProcedureStep.procedure_pk == procedure_pk)
    )
    for step_pk in steps:
        if step_pk is not None:
            note(session, ChangeEvent("step", step_pk, "images"))


# ---------------------------------------------------------------------------------------------
# Linking to orders


def match_procedure(
    session: Session, *, study_uid: str, accession: str, patient_id: str
) -> RequestedProcedure | None:
    """The requested procedure a study was ordered as: same Study Instance UID, else the one
    procedure of the order with this Accession Number for this Patient ID (IHE SWF: the
    modality copies both from the worklist). Several candidates: none (reconcile by hand)."""
    found = session.exec(
        select(RequestedProcedure).where(RequestedProcedure.study_instance_uid == study_uid)
    ).first()
    if found is not None or not accession or not patient_id:
        return found
    candidates = list(
        session.exec(
            select(RequestedProcedure)
            .join(
                ImagingServiceRequest,
                col(RequestedProcedure.order_pk) == ImagingServiceRequest.id,
            )
            .join(Patient, col(ImagingServiceRequest.patient_pk) == Patient.id)
            .where(
                ImagingServiceRequest.accession_number == accession,
                Patient.patient_id == patient_id,
            )
            .limit(2)
        )
    )
    return candidates[0] if len(candidates) == 1 else None


def _audit_link(
    session: Session,
    actor: Actor,
    study: StoredStudy,
    procedure: RequestedProcedure,
    *,
    how: str,
    before: int | None = None,
) -> None:
    """On the procedure, so the step's history shows that images arrived or were linked."""
    assert procedure.id is not None
    write.audit(
        session,
        actor=actor,
        action="images_received" if how == "received" else "study_linked",
        entity=write.PROCEDURE,
        entity_pk=procedure.id,
        detail={"study_instance_uid": study.study_instance_uid, "stored_study": study.id},
    )
    if how != "received":
        assert study.id is not None
        write.audit(
            session,
            actor=actor,
            action="link",
            entity=ENTITY,
            entity_pk=study.id,
            before={"procedure_pk": before},
            after={"procedure_pk": procedure.id},
        )


def link_study(
    session: Session,
    *,
    pk: int,
    actor: Actor,
    procedure_pk: int | None = None,
    step_pk: int | None = None,
) -> StoredStudyView:
    """Link a received study to a requested procedure (named, or through one of its steps)."""
    study = session.get(StoredStudy, pk)
    if study is None:
        raise NotFoundError(f"no stored study {pk}")
    if step_pk is not None:
        step = session.get(ScheduledProcedureStep, step_pk)
        if step is None:
            raise NotFoundError(f"no step {step_pk}", field="step_id")
        procedure_pk = step.procedure_pk
    procedure = session.get(RequestedProcedure, procedure_pk) if procedure_pk else None
    if procedure is None:
        raise NotFoundError(f"no requested procedure {procedure_pk}", field="procedure_id")
    before = study.procedure_pk
    if before != procedure.id:
        study.procedure_pk = procedure.id
        study.updated_at = utcnow()
        session.add(study)
        session.flush()
        _audit_link(session, actor, study, procedure, how="manual", before=before)
        _notify_steps(session, procedure.id)
        LOG.info(
            "study %s linked to procedure %s by %s", study.study_instance_uid, procedure.id, actor
        )
    return _study_views(session, [study])[0]


# ---------------------------------------------------------------------------------------------
# Reading


def _counts(session: Session, study_pks: Sequence[int]) -> dict[int, list[Any]]:
    """Per study: series rows with their instance counts, and the last arrival."""
    statement = (
        select(
            StoredSeries,
            func.count(col(StoredInstance.id)),
            func.max(col(StoredInstance.received_at)),
        )
        .join(StoredInstance, col(StoredInstance.series_pk) == StoredSeries.id, isouter=True)
        .where(col(StoredSeries.study_pk).in_(study_pks))
        .group_by(col(StoredSeries.id))
        .order_by(col(StoredSeries.id))
    )
    found: dict[int, list[Any]] = {}
    for series, count, last in session.exec(statement):
        found.setdefault(series.study_pk, []).append((series, int(count), last))
    return found


def _latest(values: Sequence[datetime | None]) -> datetime | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _study_views(session: Session, studies: Sequence[StoredStudy]) -> list[StoredStudyView]:
    counts = _counts(session, [s.id for s in studies if s.id is not None])
    views = []
    for study in studies:
        assert study.id is not None
        rows = counts.get(study.id, [])
        views.append(
            StoredStudyView(
                id=study.id,
                study_instance_uid=study.study_instance_uid,
                patient_id=study.patient_id,
                issuer_of_patient_id=study.issuer_of_patient_id,
                patient_name=study.patient_name,
                accession_number=study.accession_number,
                study_date=study.study_date,
                study_time=study.study_time,
                study_description=study.study_description,
                procedure_pk=study.procedure_pk,
                series=tuple(
                    StoredSeriesView(
                        series_instance_uid=s.series_instance_uid,
                        modality=s.modality,
                        series_number=s.series_number,
                        series_description=s.series_description,
                        instances=n,
                    )
                    for s, n, _ in rows
                ),
                instances=sum(n for _, n, _ in rows),
                last_received_at=_latest([last for _, _, last in rows]),
                created_at=study.created_at,
            )
        )
    return views


def list_studies(
    session: Session,
    *,
    unlinked: bool = False,
    procedure_pk: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StoredStudyView]:
    """Newest first; ``unlinked`` keeps those waiting for reconciliation."""
    statement = select(StoredStudy)
    if unlinked:
        statement = statement.where(col(StoredStudy.procedure_pk).is_(None))
    if procedure_pk is not None:
        statement = statement.where(StoredStudy.procedure_pk == procedure_pk)
    statement = statement.order_by(col(StoredStudy.id).desc()).offset(offset).limit(limit)
    return _study_views(session, list(session.exec(statement)))


def get_study(session: Session, *, pk: int) -> StoredStudyView:
    study = session.get(StoredStudy, pk)
    if study is None:
        raise NotFoundError(f"no stored study {pk}")
    return _study_views(session, [study])[0]


def images_by_procedure(
    session: Session, procedure_pks: Sequence[int]
) -> dict[int, ImagesReceived]:
    """Studies, series and instances received per requested procedure, in one query."""
    if not procedure_pks:
        return {}
    statement = (
        sa_select(
            col(StoredStudy.procedure_pk),
            func.count(func.distinct(col(StoredStudy.id))),
            func.count(func.distinct(col(StoredSeries.id))),
            func.count(col(StoredInstance.id)),
            func.max(col(StoredInstance.received_at)),
        )
        .join(StoredSeries, col(StoredSeries.study_pk) == StoredStudy.id)
        .join(StoredInstance, col(StoredInstance.series_pk) == StoredSeries.id)
        .where(col(StoredStudy.procedure_pk).in_(list(procedure_pks)))
        .group_by(col(StoredStudy.procedure_pk))
    )
    return {
        int(pk): ImagesReceived(
            studies=int(studies),
            series=int(series),
            instances=int(instances),
            last_received_at=last,
        )
        for pk, studies, series, instances, last in session.execute(statement).all()
        if pk is not None
    }
