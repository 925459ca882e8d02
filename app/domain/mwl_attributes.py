"""Attributes of the Modality Worklist Information Model (PS3.4 Table K.6-1) the broker keeps.

Each attribute has the level of the data model it lives at, so an item posted as one DICOM JSON
object can be split into patient, order (imaging service request and visit), requested procedure
and scheduled step, and reassembled for a response.

The table is also the set of return keys the broker supports: over C-FIND every requested
attribute of the table is answered, zero length when the item has no value (PS3.4 K.2.2.1.2; for
Type 3 that is the SCP's choice, and tells the modality "unknown"). The return type only decides
what a stored item (and so the REST API) carries: Type 1 and 2 attributes always, Type 3 ones
only when known.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    PATIENT = "patient"
    ORDER = "order"  # Imaging Service Request and Visit modules
    PROCEDURE = "procedure"  # Requested Procedure
    STEP = "step"  # items of the Scheduled Procedure Step Sequence (0040,0100)


@dataclass(frozen=True)
class MwlAttribute:
    tag: int
    keyword: str
    vr: str
    level: Level
    return_type: str  # 1, 1C, 2, 2C or 3 (PS3.5 7.4)

    @property
    def key(self) -> str:
        """DICOM JSON key (PS3.18 F.2.1): eight uppercase hex digits."""
        return f"{self.tag:08X}"

    @property
    def always_returned(self) -> bool:
        return self.return_type != "3"


_P, _O, _R, _S = Level.PATIENT, Level.ORDER, Level.PROCEDURE, Level.STEP

MWL_ATTRIBUTES: tuple[MwlAttribute, ...] = (
    # Scheduled Procedure Step (inside (0040,0100))
    MwlAttribute(0x00400001, "ScheduledStationAETitle", "AE", _S, "1"),
    MwlAttribute(0x00400002, "ScheduledProcedureStepStartDate", "DA", _S, "1"),
    MwlAttribute(0x00400003, "ScheduledProcedureStepStartTime", "TM", _S, "1"),
    MwlAttribute(0x00080060, "Modality", "CS", _S, "1"),
    MwlAttribute(0x00400006, "ScheduledPerformingPhysicianName", "PN", _S, "2"),
    MwlAttribute(0x00400007, "ScheduledProcedureStepDescription", "LO", _S, "1C"),
    MwlAttribute(0x00400008, "ScheduledProtocolCodeSequence", "SQ", _S, "1C"),
    MwlAttribute(0x00400010, "ScheduledStationName", "SH", _S, "2"),
    MwlAttribute(0x00400011, "ScheduledProcedureStepLocation", "SH", _S, "2"),
    MwlAttribute(0x00400012, "PreMedication", "LO", _S, "2C"),
    MwlAttribute(0x00400009, "ScheduledProcedureStepID", "SH", _S, "1"),
    MwlAttribute(0x00321070, "RequestedContrastAgent", "LO", _S, "2C"),
    MwlAttribute(0x00400020, "ScheduledProcedureStepStatus", "CS", _S, "3"),
    MwlAttribute(0x00400004, "ScheduledProcedureStepEndDate", "DA", _S, "3"),
    MwlAttribute(0x00400005, "ScheduledProcedureStepEndTime", "TM", _S, "3"),
    MwlAttribute(0x00400400, "CommentsOnTheScheduledProcedureStep", "LT", _S, "3"),
    # Requested Procedure
    MwlAttribute(0x00401001, "RequestedProcedureID", "SH", _R, "1"),
    MwlAttribute(0x00321060, "RequestedProcedureDescription", "LO", _R, "1C"),
    MwlAttribute(0x00321064, "RequestedProcedureCodeSequence", "SQ", _R, "1C"),
    MwlAttribute(0x0020000D, "StudyInstanceUID", "UI", _R, "1"),
    MwlAttribute(0x00080020, "StudyDate", "DA", _R, "3"),
    MwlAttribute(0x00080030, "StudyTime", "TM", _R, "3"),
    MwlAttribute(0x00081110, "ReferencedStudySequence", "SQ", _R, "2"),
    MwlAttribute(0x00401003, "RequestedProcedurePriority", "SH", _R, "2"),
    MwlAttribute(0x00401004, "PatientTransportArrangements", "LO", _R, "2"),
    MwlAttribute(0x00401002, "ReasonForTheRequestedProcedure", "LO", _R, "3"),
    MwlAttribute(0x00401400, "RequestedProcedureComments", "LT", _R, "3"),
    MwlAttribute(0x00401008, "ConfidentialityCode", "LO", _R, "3"),
    # Imaging Service Request
    MwlAttribute(0x00080050, "AccessionNumber", "SH", _O, "2"),
    MwlAttribute(0x00080051, "IssuerOfAccessionNumberSequence", "SQ", _O, "3"),
    MwlAttribute(0x00321032, "RequestingPhysician", "PN", _O, "2"),
    MwlAttribute(0x00080090, "ReferringPhysicianName", "PN", _O, "2"),
    MwlAttribute(0x00402016, "PlacerOrderNumberImagingServiceRequest", "LO", _O, "3"),
    MwlAttribute(0x00402017, "FillerOrderNumberImagingServiceRequest", "LO", _O, "3"),
    MwlAttribute(0x00321033, "RequestingService", "LO", _O, "3"),
    MwlAttribute(0x00402400, "ImagingServiceRequestComments", "LT", _O, "3"),
    # Visit
    MwlAttribute(0x00380010, "AdmissionID", "LO", _O, "2"),
    MwlAttribute(0x00380014, "IssuerOfAdmissionIDSequence", "SQ", _O, "3"),
    MwlAttribute(0x00380300, "CurrentPatientLocation", "LO", _O, "2"),
    MwlAttribute(0x00081120, "ReferencedPatientSequence", "SQ", _O, "2"),
    # Patient
    MwlAttribute(0x00100010, "PatientName", "PN", _P, "1"),
    MwlAttribute(0x00100020, "PatientID", "LO", _P, "1"),
    MwlAttribute(0x00100021, "IssuerOfPatientID", "LO", _P, "3"),
    MwlAttribute(0x00100024, "IssuerOfPatientIDQualifiersSequence", "SQ", _P, "3"),
    MwlAttribute(0x00101002, "OtherPatientIDsSequence", "SQ", _P, "3"),
    MwlAttribute(0x00100030, "PatientBirthDate", "DA", _P, "2"),
    MwlAttribute(0x00100040, "PatientSex", "CS", _P, "2"),
    MwlAttribute(0x00101030, "PatientWeight", "DS", _P, "2"),
    MwlAttribute(0x00101020, "PatientSize", "DS", _P, "3"),
    MwlAttribute(0x00403001, "ConfidentialityConstraintOnPatientDataDescription", "LO", _P, "2"),
    MwlAttribute(0x00380500, "PatientState", "LO", _P, "2"),
    MwlAttribute(0x001021C0, "PregnancyStatus", "US", _P, "2"),
    MwlAttribute(0x00102000, "MedicalAlerts", "LO", _P, "2"),
    MwlAttribute(0x00102110, "Allergies", "LO", _P, "2"),
    MwlAttribute(0x00380050, "SpecialNeeds", "LO", _P, "2"),
    MwlAttribute(0x00104000, "PatientComments", "LT", _P, "3"),
)

SPS_SEQUENCE_TAG = 0x00400100
SPS_SEQUENCE_KEY = f"{SPS_SEQUENCE_TAG:08X}"
SPECIFIC_CHARACTER_SET_TAG = 0x00080005
TIMEZONE_OFFSET_TAG = 0x00080201

BY_TAG: dict[int, MwlAttribute] = {a.tag: a for a in MWL_ATTRIBUTES}
BY_KEYWORD: dict[str, MwlAttribute] = {a.keyword: a for a in MWL_ATTRIBUTES}
STEP_ATTRIBUTES: tuple[MwlAttribute, ...] = tuple(a for a in MWL_ATTRIBUTES if a.level is _S)
TOP_LEVEL_ATTRIBUTES: tuple[MwlAttribute, ...] = tuple(
    a for a in MWL_ATTRIBUTES if a.level is not _S
)


def level_of(tag: int) -> Level:
    """The level a top-level tag is kept at; attributes outside the table go with the procedure."""
    attribute = BY_TAG.get(tag)
    return attribute.level if attribute else Level.PROCEDURE
