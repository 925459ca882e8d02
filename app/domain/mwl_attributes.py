"""Attributes of the Modality Worklist Information Model (PS3.4 Table K.6-1) the broker keeps.

Each attribute has the level of the data model it lives at, so an item posted as one DICOM JSON
object can be split into patient, order (imaging service request and visit), requested procedure
and scheduled step, and reassembled for a response.

The return type decides what a stored item (and so the REST API) carries of the attributes kept
in columns: Type 1, 1C, 2 and 2C always (empty when unknown), Type 3 only when known; all other
attributes are kept as they were given. Over C-FIND it decides how a
requested key the item has no value for is answered (``dicom_scp.mwl``, PS3.5 7.4): Type 1 and
2 zero length, 2C zero length only when the item was given the element, 1C and 3 left out.
``TABLE_K6_1`` below lists every key of PS3.4 Table K.6-1, for the conformance statement.
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


# ---------------------------------------------------------------------------------------------
# PS3.4 Table K.6-1, row by row (as condensed in SPEC_DIGEST 1.3), for the conformance statement:
# every key of the model with its matching key type and return key type. The attributes the
# broker keeps (``MWL_ATTRIBUTES``) each have a row here, with the same return type (a unit test
# holds them together); rows without a tag stand for "all other Attributes" of a module.


@dataclass(frozen=True)
class ModelKey:
    """One row of PS3.4 Table K.6-1."""

    name: str
    tag: int | None  # None: "all other Attributes" of a module or sequence item
    matching: str  # matching key type: R (required), O (optional) or - (never a matching key)
    return_type: str  # 1, 1C, 2, 2C or 3
    depth: int = 0  # 1: inside the Scheduled Procedure Step Sequence item; 2: one level deeper
    remark: str = ""


_OTHER = "one of the 'all other Attributes' of its module"

TABLE_K6_1: tuple[ModelKey, ...] = (
    # Scheduled Procedure Step
    ModelKey("Scheduled Procedure Step Sequence", 0x00400100, "R", "1", 0, "one item per match"),
    ModelKey("Scheduled Station AE Title", 0x00400001, "R", "1", 1),
    ModelKey("Scheduled Procedure Step Start Date", 0x00400002, "R", "1", 1),
    ModelKey("Scheduled Procedure Step Start Time", 0x00400003, "R", "1", 1),
    ModelKey("Modality", 0x00080060, "R", "1", 1),
    ModelKey("Scheduled Performing Physician's Name", 0x00400006, "R", "2", 1),
    ModelKey(
        "Scheduled Procedure Step Description",
        0x00400007,
        "O",
        "1C",
        1,
        "the SCP supports it and/or the Scheduled Protocol Code Sequence",
    ),
    ModelKey("Scheduled Protocol Code Sequence", 0x00400008, "O", "1C", 1),
    ModelKey("Protocol Context Sequence", 0x00400440, "-", "3", 2, "never a matching key"),
    ModelKey("Scheduled Station Name", 0x00400010, "O", "2", 1),
    ModelKey("Scheduled Procedure Step Location", 0x00400011, "O", "2", 1),
    ModelKey("Pre-Medication", 0x00400012, "O", "2C", 1, "if pre-medication applies"),
    ModelKey("Scheduled Procedure Step ID", 0x00400009, "O", "1", 1),
    ModelKey("Requested Contrast Agent", 0x00321070, "O", "2C", 1, "if contrast applies"),
    ModelKey("Scheduled Procedure Step Status", 0x00400020, "O", "3", 1),
    ModelKey("Referenced Defined Protocol Sequence", 0x0018990C, "O", "3", 1),
    ModelKey("Referenced Performed Protocol Sequence", 0x0018990D, "O", "3", 1),
    ModelKey("Scheduled Procedure Step End Date", 0x00400004, "O", "3", 1, _OTHER),
    ModelKey("Scheduled Procedure Step End Time", 0x00400005, "O", "3", 1, _OTHER),
    ModelKey("Comments on the Scheduled Procedure Step", 0x00400400, "O", "3", 1, _OTHER),
    ModelKey("All other Attributes of the Scheduled Procedure Step", None, "O", "3", 1),
    ModelKey("Scheduled Specimen Sequence", 0x00400500, "O", "3"),
    # Requested Procedure
    ModelKey("Requested Procedure ID", 0x00401001, "O", "1"),
    ModelKey(
        "Requested Procedure Description",
        0x00321060,
        "O",
        "1C",
        0,
        "the SCP supports it and/or the Requested Procedure Code Sequence",
    ),
    ModelKey("Requested Procedure Code Sequence", 0x00321064, "O", "1C"),
    ModelKey("Study Instance UID", 0x0020000D, "O", "1"),
    ModelKey("Study Date", 0x00080020, "O", "3"),
    ModelKey("Study Time", 0x00080030, "O", "3"),
    ModelKey("Referenced Study Sequence", 0x00081110, "O", "2"),
    ModelKey("Requested Procedure Priority", 0x00401003, "O", "2"),
    ModelKey("Patient Transport Arrangements", 0x00401004, "O", "2"),
    ModelKey("Reason for the Requested Procedure", 0x00401002, "O", "3", 0, _OTHER),
    ModelKey("Requested Procedure Comments", 0x00401400, "O", "3", 0, _OTHER),
    ModelKey("Confidentiality Code", 0x00401008, "O", "3", 0, _OTHER),
    ModelKey("All other Attributes of the Requested Procedure Module", None, "O", "3"),
    # Imaging Service Request
    ModelKey("Accession Number", 0x00080050, "O", "2"),
    ModelKey("Issuer of Accession Number Sequence", 0x00080051, "O", "3"),
    ModelKey("Requesting Physician", 0x00321032, "O", "2"),
    ModelKey("Referring Physician's Name", 0x00080090, "O", "2"),
    ModelKey("Placer Order Number / Imaging Service Request", 0x00402016, "O", "3", 0, _OTHER),
    ModelKey("Filler Order Number / Imaging Service Request", 0x00402017, "O", "3", 0, _OTHER),
    ModelKey("Requesting Service", 0x00321033, "O", "3", 0, _OTHER),
    ModelKey("Imaging Service Request Comments", 0x00402400, "O", "3", 0, _OTHER),
    ModelKey("All other Attributes of the Imaging Service Request Module", None, "O", "3"),
    # Visit
    ModelKey("Admission ID", 0x00380010, "O", "2"),
    ModelKey("Issuer of Admission ID Sequence", 0x00380014, "O", "3"),
    ModelKey("Current Patient Location", 0x00380300, "O", "2"),
    ModelKey("Referenced Patient Sequence", 0x00081120, "O", "2"),
    ModelKey(
        "All other Attributes of the Visit Identification, Visit Status, Visit Relationship "
        "and Visit Admission Modules",
        None,
        "O",
        "3",
    ),
    # Patient
    ModelKey("Patient's Name", 0x00100010, "R", "1"),
    ModelKey("Patient ID", 0x00100020, "R", "1"),
    ModelKey("Issuer of Patient ID", 0x00100021, "O", "3"),
    ModelKey("Issuer of Patient ID Qualifiers Sequence", 0x00100024, "O", "3"),
    ModelKey("Other Patient IDs Sequence", 0x00101002, "O", "3"),
    ModelKey("Patient's Birth Date", 0x00100030, "O", "2"),
    ModelKey("Patient's Sex", 0x00100040, "O", "2"),
    ModelKey("Patient's Weight", 0x00101030, "O", "2"),
    ModelKey("Patient's Size", 0x00101020, "O", "3"),
    ModelKey("Confidentiality Constraint on Patient Data Description", 0x00403001, "O", "2"),
    ModelKey("Patient State", 0x00380500, "O", "2"),
    ModelKey("Pregnancy Status", 0x001021C0, "O", "2"),
    ModelKey("Medical Alerts", 0x00102000, "O", "2"),
    ModelKey("Allergies", 0x00102110, "O", "2"),
    ModelKey("Special Needs", 0x00380050, "O", "2"),
    ModelKey("Pertinent Documents Sequence", 0x00380100, "O", "3", 0, "Universal Matching only"),
    ModelKey("Patient Comments", 0x00104000, "O", "3", 0, _OTHER),
    ModelKey(
        "All other Attributes of the Patient Relationship, Patient Identification, Patient "
        "Demographic and Patient Medical Modules",
        None,
        "O",
        "3",
    ),
)
