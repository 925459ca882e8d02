"""Query/Retrieve over the stored study/series/instance index (PS3.4 C.6.1, C.6.2).

``find`` answers a parsed C-FIND identifier with one DICOM JSON dataset per matching entity,
holding exactly the requested keys plus Query/Retrieve Level and Retrieve AE Title.
``retrieve`` lists the instances a C-MOVE or C-GET identifier selects.

SQL narrows the candidates (the helpers of ``app.services.sql`` return supersets) and every
candidate is confirmed with the domain matcher, so SQLite and PostgreSQL answer alike. The
patient level is kept on the study rows: a patient is the set of studies that share Patient ID
and Issuer of Patient ID.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from app.domain.dicom_json import JsonDataset, element
from app.domain.qr import (
    BY_TAG,
    QUERY_RETRIEVE_LEVEL,
    RETRIEVE_AE_TITLE,
    Condition,
    Kind,
    QrLevel,
    QrQuery,
)
from app.models import StoredInstance, StoredSeries, StoredStudy
from app.schemas import StoredInstanceRef
from app.services.sql import name_key_condition, range_condition, text_key_condition

_CHUNK = 500  # rows per page and ids per IN list

_COLUMNS: dict[str, Any] = {
    "PatientName": StoredStudy.patient_name,
    "PatientID": StoredStudy.patient_id,
    "IssuerOfPatientID": StoredStudy.issuer_of_patient_id,
    "PatientBirthDate": StoredStudy.patient_birth_date,
    "PatientSex": StoredStudy.patient_sex,
    "StudyInstanceUID": StoredStudy.study_instance_uid,
    "StudyDate": StoredStudy.study_date,
    "StudyTime": StoredStudy.study_time,
    "AccessionNumber": StoredStudy.accession_number,
    "StudyID": StoredStudy.study_id,
    "ReferringPhysicianName": StoredStudy.referring_physician_name,
    "StudyDescription": StoredStudy.study_description,
    "SeriesInstanceUID": StoredSeries.series_instance_uid,
    "Modality": StoredSeries.modality,
    "SeriesNumber": StoredSeries.series_number,
    "SeriesDescription": StoredSeries.series_description,
    "SOPInstanceUID": StoredInstance.sop_instance_uid,
    "SOPClassUID": StoredInstance.sop_class_uid,
    "InstanceNumber": StoredInstance.instance_number,
}
_NAME_KEY_COLUMNS: dict[str, Any] = {"PatientName": StoredStudy.patient_name_key}


@dataclass
class _StudyStats:
    series: int = 0
    instances: int = 0
    modalities: list[str] = field(default_factory=list)
    per_series: dict[int, int] = field(default_factory=dict)  # instances of each series


@dataclass
class _Match:
    """One matching entity: its rows, from the study down to the query level."""

    study: StoredStudy
    series: StoredSeries | None = None
    instance: StoredInstance | None = None
    studies: list[StoredStudy] = field(default_factory=list)  # PATIENT level: all of them


def _sql_condition(condition: Condition) -> ColumnElement[bool] | None:
    """A superset filter for ``condition``; None where only Python can tell (times, names
    without a folded key column)."""
    keyword = condition.attribute.keyword
    column = _COLUMNS.get(keyword)
    if column is None:
        return None
    if condition.uids is not None:
        return col(column).in_(condition.uids)
    if condition.text is not None:
        return text_key_condition(column, condition.text)
    if condition.name is not None and keyword in _NAME_KEY_COLUMNS:
        return name_key_condition(_NAME_KEY_COLUMNS[keyword], condition.name)
    if condition.range is not None and condition.attribute.kind is Kind.DATE:
        return range_condition(column, condition.range)
    return None


def _statement(query: QrQuery) -> Any:
    if query.level <= QrLevel.STUDY:
        stmt: Any = select(StoredStudy).order_by(col(StoredStudy.id))
    elif query.level is QrLevel.SERIES:
        stmt = (
            select(StoredSeries, StoredStudy)
            .join(StoredStudy, col(StoredSeries.study_pk) == col(StoredStudy.id))
            .order_by(col(StoredSeries.id))
        )
    else:
        stmt = (
            select(StoredInstance, StoredSeries, StoredStudy)
            .join(StoredSeries, col(StoredInstance.series_pk) == col(StoredSeries.id))
            .join(StoredStudy, col(StoredSeries.study_pk) == col(StoredStudy.id))
            .order_by(col(StoredInstance.id))
        )
    for condition in query.conditions:
        where = _sql_condition(condition)
        if where is not None:
            stmt = stmt.where(where)
    return stmt


def _page_key(level: QrLevel) -> Any:
    if level <= QrLevel.STUDY:
        return StoredStudy.id
    return StoredSeries.id if level is QrLevel.SERIES else StoredInstance.id


def _match_of(level: QrLevel, row: Any) -> _Match:
    if level <= QrLevel.STUDY:
        return _Match(study=row)
    if level is QrLevel.SERIES:
        return _Match(study=row[1], series=row[0])
    return _Match(study=row[2], series=row[1], instance=row[0])


def _candidate_pages(session: Session, query: QrQuery) -> Iterator[list[_Match]]:
    """Candidates in index order, a page at a time (keyset paging on the level's primary key),
    so a capped query reads no more of a big index than it needs."""
    stmt = _statement(query)
    key = _page_key(query.level)
    last = 0
    while True:
        rows = list(session.exec(stmt.where(col(key) > last).limit(_CHUNK)))
        if not rows:
            return
        page = [_match_of(query.level, row) for row in rows]
        yield page
        if len(rows) < _CHUNK:
            return
        last = _entity_id(query.level, page[-1])


def _entity_id(level: QrLevel, match: _Match) -> int:
    row: Any = match.study
    if level is QrLevel.SERIES:
        row = match.series
    elif level is QrLevel.IMAGE:
        row = match.instance
    return int(row.id)


def _study_stats(session: Session, study_pks: Iterable[int]) -> dict[int, _StudyStats]:
    """Series, instances and modalities of each study (the study-level counts of C.6)."""
    stats: dict[int, _StudyStats] = {}
    pks = sorted(set(study_pks))
    for start in range(0, len(pks), _CHUNK):
        stmt = (
            select(
                StoredSeries.study_pk,
                StoredSeries.id,
                StoredSeries.modality,
                func.count(col(StoredInstance.id)),
            )
            .outerjoin(StoredInstance, col(StoredInstance.series_pk) == col(StoredSeries.id))
            .where(col(StoredSeries.study_pk).in_(pks[start : start + _CHUNK]))
            .group_by(col(StoredSeries.id), col(StoredSeries.study_pk), col(StoredSeries.modality))
        )
        for study_pk, series_pk, modality, instances in session.exec(stmt):
            entry = stats.setdefault(study_pk, _StudyStats())
            entry.series += 1
            entry.per_series[int(series_pk or 0)] = int(instances)
            entry.instances += int(instances)
            if modality and modality not in entry.modalities:
                entry.modalities.append(modality)
    return stats


def _values(match: _Match, stats: dict[int, _StudyStats]) -> dict[str, Any]:
    """Stored value of every table attribute of the match (counts as int)."""
    values: dict[str, Any] = {}
    for keyword, column in _COLUMNS.items():
        row = {
            StoredStudy: match.study,
            StoredSeries: match.series,
            StoredInstance: match.instance,
        }[column.class_]
        if row is not None:
            values[keyword] = getattr(row, column.key) or ""
    assert match.study.id is not None
    study = stats.get(match.study.id, _StudyStats())
    values["ModalitiesInStudy"] = study.modalities
    values["NumberOfStudyRelatedSeries"] = study.series
    values["NumberOfStudyRelatedInstances"] = study.instances
    if match.series is not None and match.series.id is not None:
        values["NumberOfSeriesRelatedInstances"] = study.per_series.get(match.series.id, 0)
    if match.studies:
        related = [stats.get(s.id or 0, _StudyStats()) for s in match.studies]
        values["NumberOfPatientRelatedStudies"] = len(match.studies)
        values["NumberOfPatientRelatedSeries"] = sum(s.series for s in related)
        values["NumberOfPatientRelatedInstances"] = sum(s.instances for s in related)
    return values


def _confirmed(query: QrQuery, values: dict[str, Any]) -> bool:
    return all(c.matches(values.get(c.attribute.keyword, "")) for c in query.conditions)


def _group_patients(matches: Iterable[_Match]) -> list[_Match]:
    patients: dict[tuple[str, str], _Match] = {}
    for match in matches:
        key = (match.study.patient_id, match.study.issuer_of_patient_id)
        patient = patients.setdefault(key, _Match(study=match.study))
        patient.studies.append(match.study)
    return list(patients.values())


def _matches(session: Session, query: QrQuery, limit: int) -> list[tuple[_Match, dict[str, Any]]]:
    """Confirmed matches in index order, at most ``limit`` (0 = all)."""
    stats: dict[int, _StudyStats] = {}
    confirmed: list[_Match] = []
    for page in _candidate_pages(session, query):
        stats.update(_study_stats(session, (m.study.id or 0 for m in page)))
        confirmed.extend(m for m in page if _confirmed(query, _values(m, stats)))
        if limit and _entities(query, confirmed) >= limit:
            break
    if query.level is QrLevel.PATIENT:
        confirmed = _group_patients(confirmed)
    if limit:
        confirmed = confirmed[:limit]
    if query.level is QrLevel.PATIENT:
        # The counts cover every study of the patient, not only those the keys selected.
        confirmed = _with_all_studies(session, confirmed)
        stats = _study_stats(session, (s.id or 0 for m in confirmed for s in m.studies))
    return [(m, _values(m, stats)) for m in confirmed]


def _entities(query: QrQuery, confirmed: list[_Match]) -> int:
    if query.level is QrLevel.PATIENT:
        return len({(m.study.patient_id, m.study.issuer_of_patient_id) for m in confirmed})
    return len(confirmed)


def _with_all_studies(session: Session, patients: list[_Match]) -> list[_Match]:
    for patient in patients:
        stmt = (
            select(StoredStudy)
            .where(col(StoredStudy.patient_id) == patient.study.patient_id)
            .where(col(StoredStudy.issuer_of_patient_id) == patient.study.issuer_of_patient_id)
            .order_by(col(StoredStudy.id))
        )
        patient.studies = list(session.exec(stmt))
    return patients


def _stored_element(match: _Match, level: QrLevel, tag: str) -> dict[str, Any] | None:
    """An attribute outside the table, from the stored ``attributes`` at or above ``level``."""
    rows: list[Any] = [match.study]
    if level >= QrLevel.SERIES:
        rows.insert(0, match.series)
    if level >= QrLevel.IMAGE:
        rows.insert(0, match.instance)
    for row in rows:
        stored = (row.attributes or {}).get(tag) if row is not None else None
        if isinstance(stored, dict) and stored.get("vr"):
            return stored
    return None


def _answer(
    query: QrQuery, match: _Match, values: dict[str, Any], retrieve_ae_title: str
) -> JsonDataset:
    """The requested keys, plus Query/Retrieve Level and the Retrieve AE Title every response
    carries (PS3.4 C.4.1.1.3.2)."""
    answer: JsonDataset = {}
    for tag in query.requested:
        attribute = BY_TAG.get(tag)
        if attribute is None:
            stored = _stored_element(match, query.level, tag)
            if stored is not None:
                answer[tag] = stored
            continue
        value = values.get(attribute.keyword, "")
        if isinstance(value, list):
            answer[tag] = element(attribute.vr, *value)
        else:
            answer[tag] = element(attribute.vr, value)
    answer[QUERY_RETRIEVE_LEVEL] = element("CS", query.level.name)
    answer[RETRIEVE_AE_TITLE] = element("AE", retrieve_ae_title)
    return dict(sorted(answer.items()))


def find(
    session: Session, query: QrQuery, *, retrieve_ae_title: str, limit: int = 0
) -> list[JsonDataset]:
    """The C-FIND answers of ``query``, at most ``limit`` (0 = no limit), in index order."""
    return [
        _answer(query, match, values, retrieve_ae_title)
        for match, values in _matches(session, query, limit)
    ]


def retrieve(session: Session, query: QrQuery) -> list[StoredInstanceRef]:
    """Every stored instance below the entities ``query`` selects (PS3.4 C.4.2.2.1)."""
    matches = [m for m, _ in _matches(session, query, 0)]
    stmt = (
        select(StoredInstance)
        .join(StoredSeries, col(StoredInstance.series_pk) == col(StoredSeries.id))
        .order_by(col(StoredSeries.study_pk), col(StoredSeries.id), col(StoredInstance.id))
    )
    if query.level is QrLevel.IMAGE:
        pks = [m.instance.id for m in matches if m.instance is not None]
        column: Any = StoredInstance.id
    elif query.level is QrLevel.SERIES:
        pks = [m.series.id for m in matches if m.series is not None]
        column = StoredSeries.id
    else:
        studies = [s for m in matches for s in (m.studies or [m.study])]
        pks = [s.id for s in studies]
        column = StoredSeries.study_pk
    found: list[StoredInstanceRef] = []
    for start in range(0, len(pks), _CHUNK):
        chunk = stmt.where(col(column).in_(pks[start : start + _CHUNK]))
        found.extend(StoredInstanceRef.model_validate(row) for row in session.exec(chunk))
    return found
