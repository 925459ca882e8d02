"""Commands of order and patient intake (HL7 v2 ORM/OMI/OMG and ADT), as plain data.

The HL7 adapter decodes a message into one of these; the services apply it. Nothing here knows
HL7 syntax: an ``OrderMessage`` says "this order control, this order status, this patient, these
requested procedures with their steps", whatever segment each value came from.

Values a message may leave out are empty strings (or an empty tuple of station AE titles): the
service fills them by policy (Study Instance UID generated or refused, SPS ID derived, station
titles from the station table) and reports what it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.items import OrderData, PatientData, ProcedureData, StepData
from app.domain.mwl_attributes import BY_KEYWORD

# Descriptive attributes (names of stations and locations, descriptions, reasons, comments) that
# intake shortens to their VR's length instead of refusing the order; identifiers (Patient ID,
# Accession Number, Requested Procedure ID, SPS ID, Study Instance UID) are never shortened.
DESCRIPTIVE = frozenset(
    {
        "ScheduledStationName",
        "ScheduledProcedureStepLocation",
        "ScheduledProcedureStepDescription",
        "RequestedProcedureDescription",
        "ReasonForTheRequestedProcedure",
        "PatientTransportArrangements",
        "PatientState",
        "MedicalAlerts",
        "CurrentPatientLocation",
    }
)
_VR_LENGTH = {"SH": 16, "LO": 64}


def descriptive_limit(keyword: str) -> int:
    """The most characters a descriptive attribute may hold (its VR's maximum length)."""
    if keyword not in DESCRIPTIVE:
        raise KeyError(f"{keyword} is not a descriptive attribute")
    return _VR_LENGTH[BY_KEYWORD[keyword].vr]


@dataclass(frozen=True)
class OrderGroup:
    """One requested procedure and its scheduled step (one OBR, or one OBR with its IPC)."""

    order: OrderData  # accession, placer/filler order numbers, physicians, visit
    procedure: ProcedureData  # study_instance_uid / requested_procedure_id may be ""
    step: StepData  # station_ae_titles may be (); sps_id may be ""; status unused


@dataclass(frozen=True)
class OrderMessage:
    """ORM^O01, OMI^O23 or OMG^O19: what to do (ORC-1, ORC-5) with which patient and procedures."""

    order_control: str  # ORC-1 (HL7 table 0119), e.g. NW, XO, CA, DC, SC
    order_status: str  # ORC-5 (HL7 table 0038), e.g. SC, IP, CM, CA, DC; may be ""
    patient: PatientData
    groups: tuple[OrderGroup, ...]


@dataclass(frozen=True)
class PatientRegistration:
    """ADT A01/A04/A05/A28: the patient exists (created, or demographics merged in)."""

    patient: PatientData


@dataclass(frozen=True)
class PatientUpdate:
    """ADT A08/A31: new demographics for an existing (or new) patient; the worklist shows them."""

    patient: PatientData


@dataclass(frozen=True)
class PatientMerge:
    """ADT A40: the prior patient (MRG-1) is merged into the surviving one (PID-3)."""

    surviving: PatientData
    prior_patient_id: str
    prior_issuer: str = ""


@dataclass(frozen=True)
class PatientIdentifierChange:
    """ADT A47: the patient known as MRG-1 is now known as PID-3."""

    patient: PatientData
    prior_patient_id: str
    prior_issuer: str = ""


@dataclass(frozen=True)
class PatientDeletion:
    """ADT A29 (delete person information): the patient is removed if it has no orders."""

    patient: PatientData


IntakeCommand = (
    OrderMessage
    | PatientRegistration
    | PatientUpdate
    | PatientMerge
    | PatientIdentifierChange
    | PatientDeletion
)
