"""Worklist items as plain commands, and the split of a DICOM JSON item into its levels.

``COLUMNS`` says which attributes of each level are kept in table columns; everything else of
that level travels in its ``attributes`` (DICOM JSON). ``item_from_json`` validates an item
against the Type 1 requirements of PS3.4 Table K.6-1 and the VR formats the broker relies on.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from app.domain.dicom_json import (
    JsonDataset,
    sequence_items,
    string_of,
    strings_of,
    tag_key,
)
from app.domain.errors import MissingValueError, ValidationError
from app.domain.matching import normalize_time
from app.domain.mwl_attributes import (
    BY_KEYWORD,
    SPECIFIC_CHARACTER_SET_TAG,
    SPS_SEQUENCE_KEY,
    Level,
    level_of,
)
from app.domain.status import SpsStatus

# keyword -> column name, per level. Station AE title and start date/time are special-cased.
COLUMNS: dict[Level, dict[str, str]] = {
    Level.PATIENT: {
        "PatientName": "name",
        "PatientID": "patient_id",
        "IssuerOfPatientID": "issuer_of_patient_id",
        "PatientBirthDate": "birth_date",
        "PatientSex": "sex",
    },
    Level.ORDER: {
        "AccessionNumber": "accession_number",
        "PlacerOrderNumberImagingServiceRequest": "placer_order_number",
        "FillerOrderNumberImagingServiceRequest": "filler_order_number",
        "RequestingPhysician": "requesting_physician",
        "ReferringPhysicianName": "referring_physician_name",
        "AdmissionID": "admission_id",
        "CurrentPatientLocation": "current_patient_location",
    },
    Level.PROCEDURE: {
        "RequestedProcedureID": "requested_procedure_id",
        "StudyInstanceUID": "study_instance_uid",
        "RequestedProcedureDescription": "description",
        "RequestedProcedurePriority": "priority",
    },
    Level.STEP: {
        "ScheduledProcedureStepID": "sps_id",
        "Modality": "modality",
        "ScheduledPerformingPhysicianName": "performing_physician",
        "ScheduledProcedureStepDescription": "description",
        "ScheduledStationName": "station_name",
        "ScheduledProcedureStepLocation": "location",
        "ScheduledProcedureStepStatus": "status",
    },
}
STEP_SPECIAL = (
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
)

# PS3.5 Table 6.2-1 maximum lengths of the values the broker keeps in columns.
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "UI": 64, "DA": 8}
PN_GROUP_MAX = 64  # PN: per component group (alphabetic=ideographic=phonetic)
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DATE_RE = re.compile(r"^\d{8}$")
_SEXES = frozenset({"", "M", "F", "O"})


def new_uid() -> str:
    """A UID under the 2.25 root from a random UUID (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid4().int}"


def new_short_id(prefix: str) -> str:
    """A unique SH value (at most 16 characters) for a missing SPS or Requested Procedure ID."""
    return prefix + uuid.uuid4().hex[: 16 - len(prefix)].upper()


@dataclass(frozen=True)
class PatientData:
    patient_id: str
    name: str
    issuer_of_patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    attributes: JsonDataset = field(default_factory=dict)


@dataclass(frozen=True)
class OrderData:
    accession_number: str = ""
    placer_order_number: str = ""
    filler_order_number: str = ""
    requesting_physician: str = ""
    referring_physician_name: str = ""
    admission_id: str = ""
    current_patient_location: str = ""
    attributes: JsonDataset = field(default_factory=dict)


@dataclass(frozen=True)
class ProcedureData:
    requested_procedure_id: str
    study_instance_uid: str
    description: str = ""
    priority: str = ""
    attributes: JsonDataset = field(default_factory=dict)


@dataclass(frozen=True)
class StepData:
    sps_id: str
    station_ae_titles: tuple[str, ...]
    start_datetime: str  # YYYYMMDDHHMMSS
    modality: str
    performing_physician: str = ""
    description: str = ""
    station_name: str = ""
    location: str = ""
    status: SpsStatus | None = None  # None: keep the current status (SCHEDULED when new)
    attributes: JsonDataset = field(default_factory=dict)


@dataclass(frozen=True)
class WorklistItemData:
    """Everything one worklist item says: one step with its procedure, order and patient."""

    patient: PatientData
    order: OrderData
    procedure: ProcedureData
    step: StepData


def _check_length(keyword: str, value: str) -> str:
    vr = BY_KEYWORD[keyword].vr
    limit = _MAX_LENGTH.get(vr)
    if limit and len(value) > limit:
        raise ValidationError(
            f"{keyword}: '{value}' is longer than {limit} characters ({vr})", field=keyword
        )
    if vr == "PN" and any(len(group) > PN_GROUP_MAX for group in value.split("=")):
        # Not the value in the message: a name is patient data.
        raise ValidationError(
            f"{keyword}: a component group is longer than {PN_GROUP_MAX} characters (PN)",
            field=keyword,
        )
    if vr == "UI" and value and not _UID_RE.match(value):
        raise ValidationError(f"{keyword}: '{value}' is not a valid UID", field=keyword)
    if vr == "DA" and value and not _DATE_RE.match(value):
        raise ValidationError(f"{keyword}: '{value}' is not a DA value YYYYMMDD", field=keyword)
    return value


def _columns(item: JsonDataset, level: Level) -> dict[str, str]:
    return {
        column: _check_length(kw, string_of(item, tag_key(BY_KEYWORD[kw].tag)))
        for kw, column in COLUMNS[level].items()
    }


def _rest(item: JsonDataset, keys_in_columns: set[str]) -> JsonDataset:
    return {k: v for k, v in item.items() if k not in keys_in_columns}


def _column_keys(level: Level, extra: tuple[str, ...] = ()) -> set[str]:
    return {tag_key(BY_KEYWORD[kw].tag) for kw in (*COLUMNS[level], *extra)}


def _require(values: dict[str, str], column: str, keyword: str) -> None:
    if not values[column]:
        raise MissingValueError(f"{keyword} (Type 1) is missing or empty", field=keyword)


def start_datetime_from(date_value: str, time_value: str) -> str:
    """SPS Start Date and Time (both Type 1) as the stored ``YYYYMMDDHHMMSS``."""
    if not date_value:
        raise MissingValueError(
            "ScheduledProcedureStepStartDate (Type 1) is missing or empty",
            field="ScheduledProcedureStepStartDate",
        )
    _check_length("ScheduledProcedureStepStartDate", date_value)
    if not time_value:
        raise MissingValueError(
            "ScheduledProcedureStepStartTime (Type 1) is missing or empty",
            field="ScheduledProcedureStepStartTime",
        )
    try:
        time_norm = normalize_time(time_value, keyword="ScheduledProcedureStepStartTime")
    except Exception as exc:  # InvalidQueryError from the shared parser: same message
        raise ValidationError(str(exc), field="ScheduledProcedureStepStartTime") from None
    return date_value + time_norm


def validate_ae_titles(values: list[str]) -> tuple[str, ...]:
    titles = tuple(v.strip() for v in values if v.strip())
    if not titles:
        raise MissingValueError(
            "ScheduledStationAETitle (Type 1) is missing or empty", field="ScheduledStationAETitle"
        )
    for title in titles:
        _check_length("ScheduledStationAETitle", title)
        if "\\" in title or not (title.isascii() and title.isprintable()):
            raise ValidationError(
                f"ScheduledStationAETitle: '{title}' is not an AE value (printable ASCII, "
                "no backslash)",
                field="ScheduledStationAETitle",
            )
    return titles


def _step(sps: JsonDataset) -> StepData:
    values = _columns(sps, Level.STEP)
    _require(values, "modality", "Modality")
    status_text = values.pop("status")
    if status_text and status_text not in SpsStatus.__members__:
        raise ValidationError(
            f"ScheduledProcedureStepStatus: '{status_text}' is not one of {', '.join(SpsStatus)}",
            field="ScheduledProcedureStepStatus",
        )
    return StepData(
        **{**values, "sps_id": values["sps_id"] or new_short_id("SPS")},
        station_ae_titles=validate_ae_titles(strings_of(sps, "00400001")),
        start_datetime=start_datetime_from(string_of(sps, "00400002"), string_of(sps, "00400003")),
        status=SpsStatus(status_text) if status_text else None,
        attributes=_rest(sps, _column_keys(Level.STEP, STEP_SPECIAL)),
    )


def item_from_json(item: JsonDataset) -> WorklistItemData:
    """Split one DICOM JSON worklist item into its levels; generate missing identifiers.

    A missing Study Instance UID, Requested Procedure ID or SPS ID is generated (Type 1 values
    the broker can own); missing patient identity, station, start or modality is an error.
    """
    steps = sequence_items(item, SPS_SEQUENCE_KEY)
    if len(steps) != 1:
        raise ValidationError(
            f"ScheduledProcedureStepSequence must hold exactly one item, got {len(steps)}",
            field="ScheduledProcedureStepSequence",
        )
    by_level: dict[Level, JsonDataset] = {level: {} for level in Level}
    for key, elem in item.items():
        tag = int(key, 16)
        if key == SPS_SEQUENCE_KEY or tag == SPECIFIC_CHARACTER_SET_TAG:
            continue  # JSON is Unicode: the character set is chosen when encoding a response
        by_level[level_of(tag)][key] = elem

    patient_values = _columns(by_level[Level.PATIENT], Level.PATIENT)
    _require(patient_values, "patient_id", "PatientID")
    _require(patient_values, "name", "PatientName")
    if patient_values["sex"] not in _SEXES:
        raise ValidationError(
            f"PatientSex: '{patient_values['sex']}' is not M, F or O", field="PatientSex"
        )
    procedure_values = _columns(by_level[Level.PROCEDURE], Level.PROCEDURE)
    return WorklistItemData(
        patient=PatientData(
            **patient_values,
            attributes=_rest(by_level[Level.PATIENT], _column_keys(Level.PATIENT)),
        ),
        order=OrderData(
            **_columns(by_level[Level.ORDER], Level.ORDER),
            attributes=_rest(by_level[Level.ORDER], _column_keys(Level.ORDER)),
        ),
        procedure=ProcedureData(
            requested_procedure_id=procedure_values["requested_procedure_id"] or new_short_id("RP"),
            study_instance_uid=procedure_values["study_instance_uid"] or new_uid(),
            description=procedure_values["description"],
            priority=procedure_values["priority"],
            attributes=_rest(by_level[Level.PROCEDURE], _column_keys(Level.PROCEDURE)),
        ),
        step=_step(steps[0]),
    )


def validate_patient(data: PatientData) -> None:
    """The VR limits of the patient's identity, name and birth date (PS3.5 Table 6.2-1)."""
    for keyword, value in (
        ("PatientID", data.patient_id),
        ("IssuerOfPatientID", data.issuer_of_patient_id),
        ("PatientName", data.name),
        ("PatientBirthDate", data.birth_date),
    ):
        _check_length(keyword, value)


def validate_item(data: WorklistItemData) -> None:
    """The VR limits of the identifying values and person names, for items not built by
    ``item_from_json``."""
    validate_patient(data.patient)
    for keyword, value in (
        ("AccessionNumber", data.order.accession_number),
        ("RequestedProcedureID", data.procedure.requested_procedure_id),
        ("StudyInstanceUID", data.procedure.study_instance_uid),
        ("ScheduledProcedureStepID", data.step.sps_id),
        ("Modality", data.step.modality),
        ("ScheduledStationName", data.step.station_name),
        ("RequestingPhysician", data.order.requesting_physician),
        ("ReferringPhysicianName", data.order.referring_physician_name),
        ("ScheduledPerformingPhysicianName", data.step.performing_physician),
    ):
        _check_length(keyword, value)
    validate_ae_titles(list(data.step.station_ae_titles))
    if not data.patient.patient_id:
        raise MissingValueError("PatientID (Type 1) is missing or empty", field="PatientID")
    if not data.patient.name:
        raise MissingValueError("PatientName (Type 1) is missing or empty", field="PatientName")
    if not data.step.modality:
        raise MissingValueError("Modality (Type 1) is missing or empty", field="Modality")
    if len(data.step.start_datetime) != 14:
        raise MissingValueError(
            "ScheduledProcedureStepStartDate (Type 1) is missing or empty",
            field="ScheduledProcedureStepStartDate",
        )
