"""The worklist query: which matching keys the broker supports and how a record matches.

``parse_worklist_query`` takes the key values by DICOM keyword, as plain strings, so the DICOM
C-FIND adapter and the REST API build the very same query. ``WorklistQuery.matches`` is the
definition of a match; the SQL in ``app.services.worklist`` only narrows candidates through the
indexes and every candidate is confirmed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from app.domain.errors import InvalidQueryError
from app.domain.matching import (
    NameKey,
    Range,
    TextKey,
    combine_date_time,
    parse_date_range,
    parse_time_range,
    parse_uid_list,
)
from app.domain.status import FINAL_STATUSES, SpsStatus

# Matching keys supported, by keyword. Every Required key of PS3.4 Table K.6-1 plus the optional
# ones the broker indexes. The conformance statement is generated from this table.
SUPPORTED_MATCHING_KEYS: dict[str, str] = {
    "ScheduledStationAETitle": "single value, wild card; any value of a multi-valued title",
    "ScheduledProcedureStepStartDate": "single value, range; combined with the start time",
    "ScheduledProcedureStepStartTime": "single value, range; combined with the start date",
    "Modality": "single value, wild card",
    "ScheduledPerformingPhysicianName": "single value, wild card (PN rules)",
    "ScheduledProcedureStepID": "single value, wild card",
    "ScheduledProcedureStepStatus": "single value, wild card",
    "PatientName": "single value, wild card (PN rules)",
    "PatientID": "single value, wild card",
    "PatientBirthDate": "single value, range",
    "PatientSex": "single value, wild card",
    "AccessionNumber": "single value, wild card",
    "RequestedProcedureID": "single value, wild card",
    "StudyInstanceUID": "single value, list of UIDs",
}

SPS_LEVEL_KEYS = frozenset(
    {
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledPerformingPhysicianName",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepStatus",
    }
)


@dataclass(frozen=True)
class WorklistRecord:
    """The matchable values of one worklist item (one Scheduled Procedure Step)."""

    station_ae_titles: tuple[str, ...]
    start_datetime: str  # YYYYMMDDHHMMSS
    modality: str
    performing_physician: str
    sps_id: str
    sps_status: str
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str


@dataclass(frozen=True)
class WorklistQuery:
    """A parsed worklist query; ``None`` on a key means universal matching."""

    station_ae_title: TextKey | None = None
    start: Range | None = None  # over YYYYMMDDHHMMSS
    start_time_of_day: Range | None = None  # time key without a date key: every day
    modality: TextKey | None = None
    performing_physician: NameKey | None = None
    sps_id: TextKey | None = None
    sps_status: TextKey | None = None
    patient_name: NameKey | None = None
    patient_id: TextKey | None = None
    birth_date: Range | None = None
    sex: TextKey | None = None
    accession_number: TextKey | None = None
    requested_procedure_id: TextKey | None = None
    study_instance_uids: tuple[str, ...] | None = None
    final_steps_by_default: bool = False  # the worklist SCP hides finished steps; REST does not
    # Set by a worklist policy (``app.domain.worklist_policy``), never by the query's keys: the
    # item must be scheduled on one of these stations (the same station value the AE title key
    # matches) and/or for one of these modalities, whatever the keys ask. ``None``: no limit.
    allowed_stations: tuple[str, ...] | None = None
    allowed_modalities: tuple[str, ...] | None = None

    @property
    def include_final(self) -> bool:
        """Finished steps are returned only when the query names an SPS Status (or asks to)."""
        return self.final_steps_by_default or self.sps_status is not None

    @property
    def is_universal(self) -> bool:
        return all(
            getattr(self, f.name) is None
            for f in fields(self)
            if f.name != "final_steps_by_default"
        )

    def _station_matches(self, stored: tuple[str, ...]) -> bool:
        if self.allowed_stations is not None:
            stored = tuple(v for v in stored if v.strip() in self.allowed_stations)
            if not stored:
                return False
        return self.station_ae_title is None or self.station_ae_title.matches_any(stored)

    def matches(self, r: WorklistRecord) -> bool:
        if not self.include_final and r.sps_status in FINAL_STATUSES:
            return False
        text_keys: tuple[tuple[TextKey | None, str], ...] = (
            (self.modality, r.modality),
            (self.sps_id, r.sps_id),
            (self.sps_status, r.sps_status),
            (self.patient_id, r.patient_id),
            (self.sex, r.sex),
            (self.accession_number, r.accession_number),
            (self.requested_procedure_id, r.requested_procedure_id),
        )
        for key, stored in text_keys:
            if key is not None and not key.matches(stored):
                return False
        if not self._station_matches(r.station_ae_titles):
            return False
        if self.allowed_modalities is not None and r.modality.strip() not in (
            self.allowed_modalities
        ):
            return False
        if self.patient_name and not self.patient_name.matches(r.patient_name):
            return False
        if self.performing_physician and not self.performing_physician.matches(
            r.performing_physician
        ):
            return False
        if self.start and not self.start.contains(r.start_datetime):
            return False
        if self.start_time_of_day and not self.start_time_of_day.contains(r.start_datetime[8:]):
            return False
        if self.birth_date and not (r.birth_date and self.birth_date.contains(r.birth_date)):
            return False
        return not (
            self.study_instance_uids is not None
            and r.study_instance_uid not in self.study_instance_uids
        )


def _text(keys: Mapping[str, str], keyword: str) -> TextKey | None:
    return TextKey.parse(keys.get(keyword, ""))


def _name(keys: Mapping[str, str], keyword: str, case_insensitive: bool) -> NameKey | None:
    return NameKey.parse(keys.get(keyword, ""), case_insensitive=case_insensitive)


def _status(keys: Mapping[str, str]) -> TextKey | None:
    key = _text(keys, "ScheduledProcedureStepStatus")
    if key is not None and not key.is_wildcard and key.value not in SpsStatus.__members__:
        allowed = ", ".join(SpsStatus)
        raise InvalidQueryError(
            f"ScheduledProcedureStepStatus: '{key.value}' is not one of {allowed}",
            field="ScheduledProcedureStepStatus",
        )
    return key


def parse_worklist_query(
    keys: Mapping[str, str], *, name_case_insensitive: bool = True
) -> WorklistQuery:
    """Build a query from key values by keyword; raise ``InvalidQueryError`` on a bad value.

    Keywords outside ``SUPPORTED_MATCHING_KEYS`` are ignored here: the adapter decides how to
    report them (PS3.4 K.2.2.1.1.2: an unsupported optional key is ignored for matching).
    """
    keys = {k: v for k, v in keys.items() if v.strip() != "*"}
    dates = parse_date_range(
        keys.get("ScheduledProcedureStepStartDate", ""), "ScheduledProcedureStepStartDate"
    )
    times = parse_time_range(
        keys.get("ScheduledProcedureStepStartTime", ""), "ScheduledProcedureStepStartTime"
    )
    start, time_of_day = combine_date_time(dates, times)
    return WorklistQuery(
        station_ae_title=_text(keys, "ScheduledStationAETitle"),
        start=start,
        start_time_of_day=time_of_day,
        modality=_text(keys, "Modality"),
        performing_physician=_name(keys, "ScheduledPerformingPhysicianName", name_case_insensitive),
        sps_id=_text(keys, "ScheduledProcedureStepID"),
        sps_status=_status(keys),
        patient_name=_name(keys, "PatientName", name_case_insensitive),
        patient_id=_text(keys, "PatientID"),
        birth_date=parse_date_range(keys.get("PatientBirthDate", ""), "PatientBirthDate"),
        sex=_text(keys, "PatientSex"),
        accession_number=_text(keys, "AccessionNumber"),
        requested_procedure_id=_text(keys, "RequestedProcedureID"),
        study_instance_uids=parse_uid_list(keys.get("StudyInstanceUID", "")),
    )
