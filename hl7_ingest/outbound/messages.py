"""Status messages to the RIS (the Order Filler), built from a :class:`StatusReport`.

The broker reports each MPPS state change of an order (SPEC_DIGEST 3.3; IHE RAD-6/RAD-7 carried
as HL7 the way Order Fillers accept it) in one of three forms (``BROKER_RIS_HL7_MESSAGE``):

* ``ORM`` — ORM^O01 v2.3.1: MSH, PID, then per requested procedure ORC (ORC-1 ``SC``, ORC-5
  ``IP``/``CM``/``DC``), OBR and ZDS (IHE RAD-4 style: the ORM structure allows one OBR per ORC);
* ``ORU`` — ORU^R01 v2.5.1: MSH, PID, per procedure ORC ``SC``, OBR with OBR-25 ``I``/``F``/``X``
  and one OBX whose OBX-5 is the status text;
* ``OMI`` — OMI^O23 v2.5.1: MSH, PID, per procedure ORC ``SC``, TQ1, OBR and IPC-1..5.

Order status (HL7 table 0038): ``IP`` in process, ``CM`` completed, ``DC`` discontinued. A
discontinuation reason (PS3.4 F.7.2.2, (0040,0281)) goes to ORC-16 as a CE. Segments are
written with :mod:`hl7_ingest.segments`, like the ACKs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from app.config import Settings
from app.domain.mpps import MppsStatus
from app.domain.reports import (
    ReportedPatient,
    ReportedProcedure,
    StatusReport,
)
from hl7_ingest.segments import components, escape, message, msh, segment, sparse_segment

UTF8_CHARSET = "UNICODE UTF-8"  # MSH-18 (HL7 table 0211)

# PPS Status (0040,0252) -> ORC-5 (table 0038) and OBR-25 / OBX-11 (tables 0123 / 0085).
ORDER_STATUS: Mapping[MppsStatus, str] = {
    MppsStatus.IN_PROGRESS: "IP",
    MppsStatus.COMPLETED: "CM",
    MppsStatus.DISCONTINUED: "DC",
}
RESULT_STATUS: Mapping[MppsStatus, str] = {
    MppsStatus.IN_PROGRESS: "I",
    MppsStatus.COMPLETED: "F",
    MppsStatus.DISCONTINUED: "X",
}

# message type setting -> (MSH-9 components, MSH-12)
MESSAGE_TYPES: Mapping[str, tuple[tuple[str, ...], str]] = {
    "ORM": (("ORM", "O01"), "2.3.1"),
    "ORU": (("ORU", "R01", "ORU_R01"), "2.5.1"),
    "OMI": (("OMI", "O23", "OMI_O23"), "2.5.1"),
}
_PN_GROUP_CODES = ("", "I", "P")  # PN groups alphabetic=ideographic=phonetic -> XPN-8
_NO_PROCEDURE = ReportedProcedure()


def xpn(pn: str) -> str:
    """DICOM PN (``family^given^middle^prefix^suffix`` per group, groups ``=``-separated) ->
    PID-5 XPN repetitions (``family^given^middle^suffix^prefix``, PS3.5 6.2 vs HL7 2.A.88).

    The ideographic and phonetic groups become further repetitions with XPN-8 ``I`` / ``P``.
    """
    repetitions = []
    for code, group in zip(_PN_GROUP_CODES, pn.split("="), strict=False):
        parts = (group.split("^") + [""] * 5)[:5]
        if not any(parts):
            continue
        family, given, middle, prefix, suffix = parts
        rep = components(family, given, middle, suffix, prefix, "", "", code)
        repetitions.append(rep)
    return "~".join(repetitions)


def _pid(patient: ReportedPatient) -> str:
    identifier = components(patient.patient_id, "", "", patient.issuer_of_patient_id)
    return sparse_segment(
        "PID",
        {
            1: "1",
            3: identifier,
            5: xpn(patient.name),
            7: escape(patient.birth_date),
            8: escape(patient.sex),
        },
    )


def _reason(report: StatusReport) -> str:
    """ORC-16 Order Control Code Reason (CE) from the discontinuation reason, if any."""
    code = report.discontinuation_reason
    if code is None:
        return ""
    return components(code.code_value, code.code_meaning, code.coding_scheme)


def _orc(report: StatusReport) -> str:
    return sparse_segment(
        "ORC",
        {
            1: "SC",
            2: escape(report.order.placer_order_number),
            3: escape(report.order.filler_order_number),
            5: ORDER_STATUS[report.status],
            9: escape(report.at),
            16: _reason(report),
        },
    )


def _obr(report: StatusReport, procedure: ReportedProcedure, set_id: int, *, result: bool) -> str:
    order = report.order
    values = {
        1: str(set_id),
        2: escape(order.placer_order_number),
        3: escape(order.filler_order_number),
        18: escape(order.accession_number),
        19: escape(procedure.requested_procedure_id),
        20: escape(procedure.sps_id),
        24: escape(procedure.modality),
    }
    if result:  # ORU: status change time (OBR-22) and result status (OBR-25, table 0123)
        values[22] = escape(report.at)
        values[25] = RESULT_STATUS[report.status]
    return sparse_segment("OBR", values)


def _zds(procedure: ReportedProcedure, settings: Settings) -> str | None:
    """ZDS-1 (IHE RAD TF-2 4.4): ``<Study Instance UID>^<application>^Application^DICOM``."""
    uid = procedure.study_instance_uid
    if not uid:
        return None
    return segment("ZDS", components(uid, settings.hl7_sending_application, "Application", "DICOM"))


def _obx(report: StatusReport) -> str:
    """The status as text: OBX-3 a local code, OBX-5 the PPS status, OBX-11 as OBR-25."""
    return sparse_segment(
        "OBX",
        {
            1: "1",
            2: "ST",
            3: components("PPS-STATUS", "Performed Procedure Step Status", "L"),
            5: escape(report.status.value),
            11: RESULT_STATUS[report.status],
            14: escape(report.at),
        },
    )


def _ipc(report: StatusReport, procedure: ReportedProcedure) -> str:
    """IPC-1..5 (HL7 v2.5.1 4.5.6): accession, requested procedure, study, step, modality."""
    return segment(
        "IPC",
        escape(report.order.accession_number),
        escape(procedure.requested_procedure_id),
        escape(procedure.study_instance_uid),
        escape(procedure.sps_id),
        escape(procedure.modality),
    )


def _order_groups(report: StatusReport, message_type: str, settings: Settings) -> list[str]:
    segments: list[str] = []
    for set_id, procedure in enumerate(report.procedures or (_NO_PROCEDURE,), start=1):
        segments.append(_orc(report))
        if message_type == "OMI":
            segments += [segment("TQ1", "1"), _obr(report, procedure, set_id, result=False)]
            segments.append(_ipc(report, procedure))
        elif message_type == "ORU":
            segments += [_obr(report, procedure, set_id, result=True), _obx(report)]
        else:
            segments.append(_obr(report, procedure, set_id, result=False))
            zds = _zds(procedure, settings)
            if zds is not None:
                segments.append(zds)
    return segments


def status_message(
    report: StatusReport,
    *,
    message_type: str,
    settings: Settings,
    control_id: str,
    now: datetime | None = None,
) -> str:
    """The ER7 status message (segments ``\\r``-terminated, not framed) for a report;
    ``message_type`` is ``ORM``, ``ORU`` or ``OMI``.

    Raises ``ValueError`` for an unknown message type.
    """
    kind = message_type.upper()
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"unknown status message type '{message_type}'")
    msh9, version = MESSAGE_TYPES[kind]
    body = [_pid(report.patient), *_order_groups(report, kind, settings)]
    header = msh(
        sending_application=settings.hl7_sending_application,
        sending_facility=settings.hl7_sending_facility,
        now=now or datetime.now(),
        message_type=msh9,
        control_id=control_id,
        processing_id="P",
        version=version,
        charset="" if all(s.isascii() for s in body) else UTF8_CHARSET,
    )
    return message([header, *body])
