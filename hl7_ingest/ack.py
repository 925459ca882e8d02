"""HL7 acknowledgements (original mode, SPEC_DIGEST 3.2) and the domain -> HL7 error table.

An ACK is MSH + MSA [+ ERR], ``\\r``-terminated, not MLLP-framed:

* MSH-3/4 the broker (settings), MSH-5/6 the sender's MSH-3/4, MSH-9 ``ACK^<event>^ACK`` for
  v2.4+ (plain ``ACK`` before), MSH-10 a new id, MSH-11/12/18 echo the message (2.5.1 default);
* MSA-1 AA/AE/AR, MSA-2 the message's MSH-10; before v2.5 MSA-3 carries the error text;
* ERR for v2.5+: ``ERR||<ERL>|<code>^<text>^HL70357|E||||<user message>``; before v2.5 only
  ERR-1 (ELD) ``<SEG>^<seq>^<field>^<code>&<text>&HL70357``.

Segments are written with :mod:`hl7_ingest.segments` (escaping, MSH), shared with the status
messages to the RIS.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime

from app.config import Hl7Settings
from app.domain.errors import (
    ConflictError,
    DomainError,
    InvalidQueryError,
    InvalidTransitionError,
    MissingValueError,
    NotFoundError,
    UnknownCodeError,
    ValidationError,
    lookup,
)
from hl7_ingest.errors import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    AckCode,
    FieldWarning,
    Hl7Error,
    error_class,
)
from hl7_ingest.parse import Envelope, version_tuple
from hl7_ingest.segments import components, escape, message, msh, segment

DEFAULT_VERSION = "2.5.1"
CODING_SYSTEM = "HL70357"
_MAX_CONTROL_ID = 20  # MSH-10 is ST(20)


def new_control_id() -> str:
    """A fresh MSH-10: 20 upper-case hex digits of a random UUID."""
    return uuid.uuid4().hex[:_MAX_CONTROL_ID].upper()


def _msh(env: Envelope | None, settings: Hl7Settings, now: datetime, control_id: str) -> str:
    version = (env.version if env else "") or DEFAULT_VERSION
    trigger = env.trigger_event if env else ""
    if trigger and version_tuple(version) >= (2, 4):
        message_type: tuple[str, ...] = ("ACK", trigger, "ACK")
    else:
        message_type = ("ACK",)
    return msh(
        sending_application=settings.sending_application,
        sending_facility=settings.sending_facility,
        receiving_application=env.sending_application if env else "",
        receiving_facility=env.sending_facility if env else "",
        now=now,
        message_type=message_type,
        control_id=control_id,
        processing_id=(env.processing_id if env else "") or "P",
        version=version,
        charset=env.charset if env else "",
    )


def _split_location(location: str) -> list[str]:
    return location.split("^") if location else []


def _err(error: Hl7Error | FieldWarning, version: str, severity: str = "E") -> str:
    """One ERR: v2.5+ ERR-2 location, ERR-3 code, ERR-4 severity (table 0516), ERR-8 text;
    before v2.5 ERR-1 only (no severity: MSA-1 tells AA from AE)."""
    code = str(error.code)
    parts = _split_location(error.location)
    if version_tuple(version) >= (2, 5):
        where = "^".join(escape(p) for p in parts)
        cwe = components(code, error.description, CODING_SYSTEM)
        return segment("ERR", "", where, cwe, severity, "", "", "", escape(error.text), trim=False)
    eld = "^".join(escape(p) for p in [*parts, "", "", ""][:3])
    code_text = "&".join((code, escape(error.description), CODING_SYSTEM))
    return segment("ERR", f"{eld}^{code_text}", trim=False)


def build_ack(
    env: Envelope | None,
    code: AckCode,
    *,
    settings: Hl7Settings,
    error: Hl7Error | None = None,
    warnings: tuple[FieldWarning, ...] = (),
    now: datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The ACK for a message (``env`` None when even its MSH could not be read), as ER7 text
    with ``\\r`` segment terminators, not framed.

    ``warnings`` (an accepted message whose values were shortened, say) each add an ERR with
    severity ``W``; they are left out of an ACK that reports an ``error`` (nothing applied).
    """
    version = (env.version if env else "") or DEFAULT_VERSION
    header = _msh(env, settings, now or datetime.now(), control_id or new_control_id())
    msa = [str(code), escape(env.control_id) if env else ""]
    if error is not None and version_tuple(version) < (2, 5):
        msa.append(escape(error.text))  # MSA-3: before v2.5 the text has no place in ERR
    segments = [header, segment("MSA", *msa, trim=False)]
    if error is not None:
        segments.append(_err(error, version))
    elif warnings and version_tuple(version) < (2, 5):
        # the v2.3.1 ACK has one ERR; its ERR-1 repeats
        elds = [_err(warning, version)[len("ERR|") :] for warning in warnings]
        segments.append("ERR|" + "~".join(elds))
    else:
        segments.extend(_err(warning, version, "W") for warning in warnings)
    return message(segments)


# ---------------------------------------------------------------------------------------------
# Domain errors -> HL7 errors: the one table.

_COMMON_LOCATIONS: dict[str, str] = {
    "PatientID": "PID^1^3",
    "IssuerOfPatientID": "PID^1^3",
    "OtherPatientIDsSequence": "PID^1^3",
    "PatientName": "PID^1^5",
    "PatientBirthDate": "PID^1^7",
    "PatientSex": "PID^1^8",
    "PriorPatientID": "MRG^1^1",
    "ReferringPhysicianName": "PV1^1^8",
    "CurrentPatientLocation": "PV1^1^3",
    "AdmissionID": "PV1^1^19",
    "OrderControl": "ORC^1^1",
    "PlacerOrderNumberImagingServiceRequest": "ORC^1^2",
    "FillerOrderNumberImagingServiceRequest": "ORC^1^3",
    "ScheduledProcedureStepStatus": "ORC^1^5",
    "RequestingPhysician": "OBR^1^16",
    "MedicalAlerts": "OBR^1^13",
    "ScheduledPerformingPhysicianName": "OBR^1^34",
    "RequestedProcedureDescription": "OBR^1^44",
    "RequestedProcedureCodeSequence": "OBR^1^44",
}
_ORM_LOCATIONS: dict[str, str] = {
    "AccessionNumber": "OBR^1^18",
    "RequestedProcedureID": "OBR^1^19",
    "StudyInstanceUID": "ZDS^1^1",
    "ScheduledProcedureStepID": "OBR^1^20",
    "Modality": "OBR^1^24",
    "ScheduledStationAETitle": "OBR^1^24",  # not in ORM: chosen by modality (station table)
    "ScheduledStationName": "OBR^1^24",
    "ScheduledProcedureStepLocation": "",
    "ScheduledProcedureStepStartDate": "ORC^1^7",
    "ScheduledProcedureStepStartTime": "ORC^1^7",
    "RequestedProcedurePriority": "ORC^1^7",
    "ScheduledProcedureStepDescription": "OBR^1^4",
    "ScheduledProtocolCodeSequence": "OBR^1^4",
}
_OMG_LOCATIONS: dict[str, str] = {
    **_ORM_LOCATIONS,
    "ScheduledProcedureStepStartDate": "TQ1^1^7",
    "ScheduledProcedureStepStartTime": "TQ1^1^7",
    "RequestedProcedurePriority": "TQ1^1^9",
}
_OMI_LOCATIONS: dict[str, str] = {
    **_OMG_LOCATIONS,
    "AccessionNumber": "IPC^1^1",
    "RequestedProcedureID": "IPC^1^2",
    "StudyInstanceUID": "IPC^1^3",
    "ScheduledProcedureStepID": "IPC^1^4",
    "Modality": "IPC^1^5",
    "ScheduledProcedureStepDescription": "IPC^1^6",
    "ScheduledProtocolCodeSequence": "IPC^1^6",
    "ScheduledStationName": "IPC^1^7",
    "ScheduledProcedureStepLocation": "IPC^1^8",
    "ScheduledStationAETitle": "IPC^1^9",
}
_SIU_LOCATIONS: dict[str, str] = {
    **_ORM_LOCATIONS,
    "AccessionNumber": "SCH^1^2",
    "RequestedProcedureID": "SCH^1^2",
    "ScheduledProcedureStepID": "AIS^1^1",
    "Modality": "AIG^1^4",
    "ScheduledStationAETitle": "AIL^1^3",  # chosen by modality and AIL-3 (station table)
    "ScheduledStationName": "AIG^1^3",
    "ScheduledProcedureStepLocation": "AIL^1^3",
    "ScheduledProcedureStepStartDate": "AIS^1^4",
    "ScheduledProcedureStepStartTime": "AIS^1^4",
    "RequestedProcedurePriority": "SCH^1^11",
    "ScheduledProcedureStepDescription": "AIS^1^3",
    "ScheduledProtocolCodeSequence": "AIS^1^3",
    "RequestedProcedureDescription": "AIS^1^3",
    "RequestedProcedureCodeSequence": "AIS^1^3",
}
_BY_TYPE = {"OMI": _OMI_LOCATIONS, "OMG": _OMG_LOCATIONS, "SIU": _SIU_LOCATIONS}
_HL7_FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})[-.^](\d+)$")
_HL7_LOCATION = re.compile(r"^[A-Z][A-Z0-9]{2}(\^\d*)+$")


def hl7_location(field: str | None, env: Envelope) -> str:
    """The ERR location of a DICOM keyword (or an HL7 position: ``PID-3``, ``ORC^1^1``)."""
    if not field:
        return ""
    table = _BY_TYPE.get(env.message_type, _ORM_LOCATIONS)
    if field in table:
        return table[field]
    if field in _COMMON_LOCATIONS:
        return _COMMON_LOCATIONS[field]
    if _HL7_LOCATION.match(field):
        return field
    match = _HL7_FIELD.match(field)
    return f"{match.group(1)}^1^{match.group(2)}" if match else ""


# Domain error -> (MSA-1, HL7 table 0357 code). lookup() walks the class hierarchy, so a
# subclass (e.g. MissingAttributeError of a MissingValueError) answers like its parent.
DOMAIN_ERRORS: Mapping[type[DomainError], tuple[AckCode, int]] = {
    UnknownCodeError: (AckCode.AE, TABLE_VALUE_NOT_FOUND),
    MissingValueError: (AckCode.AE, REQUIRED_FIELD_MISSING),
    ValidationError: (AckCode.AE, DATA_TYPE_ERROR),
    InvalidQueryError: (AckCode.AE, DATA_TYPE_ERROR),
    NotFoundError: (AckCode.AE, UNKNOWN_KEY_IDENTIFIER),
    ConflictError: (AckCode.AE, DUPLICATE_KEY_IDENTIFIER),
    # the order's state forbids the change (not a key clash)
    InvalidTransitionError: (AckCode.AE, APPLICATION_INTERNAL_ERROR),
}
UNMAPPED = (AckCode.AE, APPLICATION_INTERNAL_ERROR)


def error_for_domain(exc: DomainError, env: Envelope) -> Hl7Error:
    """A service's DomainError as the HL7 error (ACK AE) to report for this message.

    Codes from ``DOMAIN_ERRORS``: UnknownCodeError (an order control missing from the
    configured table) -> 103; MissingValueError -> 101; other ValidationError and
    InvalidQueryError -> 102; NotFoundError -> 204; InvalidTransitionError -> 207; other
    ConflictError -> 205; anything else -> 207. The location comes from ``exc.field`` for the
    message's structure.
    """
    ack_code, code = lookup(DOMAIN_ERRORS, exc, UNMAPPED)
    return error_class(ack_code)(code, exc.message, hl7_location(exc.field, env))
