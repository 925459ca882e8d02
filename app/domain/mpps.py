"""Modality Performed Procedure Step rules (PS3.4 Annex F), on DICOM JSON data sets.

Pure: the MPPS adapter turns the N-CREATE attribute list / N-SET modification list into DICOM JSON
and the service applies these checks. Each error class stands for one DIMSE status, so the
adapter maps them through one table (PS3.7 10.1.5.1.6, 10.1.3.1.9; SPEC_DIGEST 2.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.domain.dicom_json import JsonDataset, sequence_items, string_of
from app.domain.errors import (
    ConflictError,
    InvalidTransitionError,
    MissingValueError,
    NotFoundError,
    ValidationError,
)
from app.domain.status import SpsStatus


class MppsStatus(StrEnum):
    """Performed Procedure Step Status (0040,0252), PS3.4 F.1.5."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"

    @property
    def step_status(self) -> SpsStatus:
        """What the scheduled steps become (SPEC_DIGEST 2.6)."""
        return {
            MppsStatus.IN_PROGRESS: SpsStatus.STARTED,
            MppsStatus.COMPLETED: SpsStatus.COMPLETED,
            MppsStatus.DISCONTINUED: SpsStatus.DISCONTINUED,
        }[self]


# --- errors: one class per DIMSE status ---------------------------------------------------


class MissingAttributeError(MissingValueError):
    """0x0120: a required attribute is absent."""


class MissingAttributeValueError(MissingValueError):
    """0x0121: a Type 1 attribute is empty."""


class InvalidAttributeValueError(ValidationError):
    """0x0106: a value that is not allowed (status, or an attribute N-SET may not change)."""


class DuplicateInstanceError(ConflictError):
    """0x0111: an MPPS with this SOP Instance UID exists."""


class NoSuchInstanceError(NotFoundError):
    """0x0112: no MPPS with this SOP Instance UID."""


class MppsClosedError(InvalidTransitionError):
    """0x0110 with Error ID 0xA710: the MPPS is COMPLETED or DISCONTINUED (Table F.7.2-2)."""

    COMMENT = "Performed Procedure Step Object may no longer be updated"


# --- attributes -----------------------------------------------------------------------------

STATUS_KEY = "00400252"
SSAS_KEY = "00400270"  # Scheduled Step Attributes Sequence
DISCONTINUATION_REASON_KEY = "00400281"

# Type 1 at N-CREATE (Table F.7.2-1): keyword by key.
CREATE_TYPE_1: dict[str, str] = {
    SSAS_KEY: "ScheduledStepAttributesSequence",
    "00400253": "PerformedProcedureStepID",
    "00400241": "PerformedStationAETitle",
    "00400244": "PerformedProcedureStepStartDate",
    "00400245": "PerformedProcedureStepStartTime",
    STATUS_KEY: "PerformedProcedureStepStatus",
    "00080060": "Modality",
}
# Attributes an N-SET may not carry ("Not Allowed" in the N-SET column of Table F.7.2-1).
NOT_SETTABLE: dict[str, str] = {
    SSAS_KEY: "ScheduledStepAttributesSequence",
    "00100010": "PatientName",
    "00100020": "PatientID",
    "00100021": "IssuerOfPatientID",
    "00100024": "IssuerOfPatientIDQualifiersSequence",
    "00101002": "OtherPatientIDsSequence",
    "00100030": "PatientBirthDate",
    "00100040": "PatientSex",
    "00081120": "ReferencedPatientSequence",
    "00380010": "AdmissionID",
    "00380014": "IssuerOfAdmissionIDSequence",
    "00380060": "ServiceEpisodeID",
    "00380062": "ServiceEpisodeDescription",
    "00400253": "PerformedProcedureStepID",
    "00400241": "PerformedStationAETitle",
    "00400242": "PerformedStationName",
    "00400243": "PerformedLocation",
    "00400244": "PerformedProcedureStepStartDate",
    "00400245": "PerformedProcedureStepStartTime",
    "00080060": "Modality",
    "00200010": "StudyID",
}
# Type 1 in the final state (COMPLETED or DISCONTINUED).
FINAL_TYPE_1: dict[str, str] = {
    "00400250": "PerformedProcedureStepEndDate",
    "00400251": "PerformedProcedureStepEndTime",
}


def _has_value(data: JsonDataset, key: str) -> bool:
    elem = data.get(key) or {}
    return any(v not in (None, "", {}) for v in elem.get("Value") or [])


def _status(value: str) -> MppsStatus:
    try:
        return MppsStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in MppsStatus)
        raise InvalidAttributeValueError(
            f"PerformedProcedureStepStatus '{value}' is not {allowed}",
            field="PerformedProcedureStepStatus",
        ) from None


def validate_create(attributes: JsonDataset) -> MppsStatus:
    """N-CREATE (PS3.4 F.7.2.1.3): Type 1 present and non-empty, status IN PROGRESS."""
    for key, keyword in CREATE_TYPE_1.items():
        if key not in attributes:
            raise MissingAttributeError(f"{keyword} is required", field=keyword)
        if not _has_value(attributes, key):
            raise MissingAttributeValueError(f"{keyword} (Type 1) is empty", field=keyword)
    for index, item in enumerate(sequence_items(attributes, SSAS_KEY)):
        if not string_of(item, "0020000D"):
            raise MissingAttributeValueError(
                f"StudyInstanceUID of scheduled step item {index + 1} is empty",
                field="StudyInstanceUID",
            )
    status = _status(string_of(attributes, STATUS_KEY))
    if status is not MppsStatus.IN_PROGRESS:
        raise InvalidAttributeValueError(
            "PerformedProcedureStepStatus must be IN PROGRESS at N-CREATE",
            field="PerformedProcedureStepStatus",
        )
    return status


def apply_set(
    current_status: MppsStatus, stored: JsonDataset, modifications: JsonDataset
) -> tuple[JsonDataset, MppsStatus]:
    """N-SET (PS3.4 F.7.2.2.3): the data set after the modifications, and its new status.

    Only IN PROGRESS may be set; attributes not allowed in N-SET are refused; sequences are
    replaced whole; the final state must have its end date and time.
    """
    if current_status is not MppsStatus.IN_PROGRESS:
        raise MppsClosedError(MppsClosedError.COMMENT, field="PerformedProcedureStepStatus")
    for key in modifications:
        if key in NOT_SETTABLE:
            raise InvalidAttributeValueError(
                f"{NOT_SETTABLE[key]} may not be set by N-SET", field=NOT_SETTABLE[key]
            )
    merged = {**stored, **modifications}
    status = _status(string_of(merged, STATUS_KEY))
    if status is not MppsStatus.IN_PROGRESS:
        for key, keyword in FINAL_TYPE_1.items():
            if not _has_value(merged, key):
                raise MissingAttributeValueError(
                    f"{keyword} is required to set {status.value}", field=keyword
                )
    return merged, status


# --- commands: what the adapter hands the service -------------------------------------------


@dataclass(frozen=True)
class StepReference:
    """One item of the Scheduled Step Attributes Sequence (0040,0270): the step it names."""

    study_instance_uid: str = ""
    sps_id: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""

    @property
    def is_scheduled(self) -> bool:
        """An unscheduled MPPS names no step: the modality made up the Study Instance UID."""
        return bool(self.sps_id or self.accession_number or self.requested_procedure_id)


@dataclass(frozen=True)
class PerformedSummary:
    """The columns the broker indexes an MPPS by, read from its whole data set."""

    station_ae_title: str
    modality: str
    start_datetime: str
    end_datetime: str


@dataclass(frozen=True)
class StartPerformedStep:
    """N-CREATE (PS3.4 F.7.2.1), validated: the whole data set and what the service needs."""

    uid: str
    status: MppsStatus
    attributes: JsonDataset = field(repr=False)
    steps: tuple[StepReference, ...]
    patient_id: str = ""  # Patient ID (0010,0020): narrows a step found by accession alone

    @classmethod
    def from_json(cls, uid: str, attributes: JsonDataset) -> StartPerformedStep:
        status = validate_create(attributes)
        refs = tuple(
            StepReference(
                study_instance_uid=string_of(item, "0020000D"),
                sps_id=string_of(item, "00400009"),
                accession_number=string_of(item, "00080050"),
                requested_procedure_id=string_of(item, "00401001"),
            )
            for item in sequence_items(attributes, SSAS_KEY)
        )
        return cls(uid, status, attributes, refs, string_of(attributes, "00100020"))


@dataclass(frozen=True)
class UpdatePerformedStep:
    """N-SET (PS3.4 F.7.2.2): the modification list, applied by ``apply_set``."""

    uid: str
    modifications: JsonDataset = field(repr=False)


def summary_of(attributes: JsonDataset) -> PerformedSummary:
    return PerformedSummary(
        station_ae_title=string_of(attributes, "00400241")[:16],
        modality=string_of(attributes, "00080060")[:16],
        start_datetime=(string_of(attributes, "00400244") + string_of(attributes, "00400245"))[:14],
        end_datetime=(string_of(attributes, "00400250") + string_of(attributes, "00400251"))[:14],
    )
