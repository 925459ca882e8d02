"""SIU^S12-S15 (scheduling information unsolicited, HL7 chapter 10) -> ``OrderMessage``.

Some RIS schedule with SIU instead of ORM/OMI. IHE Radiology Scheduled Workflow defines no SIU
transaction, and dcm4chee acknowledges S12/S13/S15 without creating worklist items (d4c-hl7cs
``siu/inbound.rst``), so this mapping is the broker's own, documented in docs/hl7-interface.md.
It yields the same intake command as an order, so the same policies apply (Study Instance UID,
Accession Number, start, station, order control table):

* the event picks the order control: S12 new booking -> ``NW``; S13 rescheduling and S14
  modification -> ``XO`` (update); S15 cancellation -> ``CA``;
* each AIS (service of the appointment) is one scheduled step of the appointment's requested
  procedure, with the AIG / AIL / AIP of its RGS group (else the message's first ones);
* an ``OBR`` / ``ZDS`` / ``IPC`` a RIS adds to its SIU wins over the scheduling segments, as
  IPC wins in orders.

Structure (v2.5.1): MSH SCH [TQ1] [NTE] [PID [PD1] [PV1] [PV2] [OBX] [DG1]] {RGS [AIS] [AIG]
[AIL] [AIP]}; segments are read in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.dicom_json import JsonDataset, element
from app.domain.intake import OrderGroup, OrderMessage
from app.domain.items import OrderData, ProcedureData, StepData
from hl7_ingest.datatypes import (
    coded,
    fit_text,
    hl7_datetime,
    location,
    patient_from_pid,
    pid_segment,
    xcn_to_pn,
)
from hl7_ingest.errors import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    FieldWarning,
    MessageError,
)
from hl7_ingest.orders import PRIORITY_MAP, Located
from hl7_ingest.parse import Envelope, Hl7Message, Segment

# Trigger event -> ORC-1 equivalent (looked up in BROKER_HL7_ORDER_CONTROL like an order's).
EVENT_CONTROL = {"S12": "NW", "S13": "XO", "S14": "XO", "S15": "CA"}


@dataclass
class _Resources:
    """One RGS group: its services (AIS), general (AIG), location (AIL), personnel (AIP)."""

    ais: list[Located] = field(default_factory=list)
    aig: list[Located] = field(default_factory=list)
    ail: list[Located] = field(default_factory=list)
    aip: list[Located] = field(default_factory=list)


@dataclass
class _Message:
    first: dict[str, Located]
    groups: list[_Resources]
    warnings: list[FieldWarning]

    def seg(self, name: str) -> Segment | None:
        found = self.first.get(name)
        return found.segment if found else None


def _walk(msg: Hl7Message) -> tuple[dict[str, Located], list[_Resources]]:
    counts: dict[str, int] = {}
    first: dict[str, Located] = {}
    groups: list[_Resources] = []
    for segment in msg.segments:
        counts[segment.name] = counts.get(segment.name, 0) + 1
        here = Located(segment, counts[segment.name])
        first.setdefault(segment.name, here)
        if segment.name == "RGS":
            groups.append(_Resources())
        elif segment.name in ("AIS", "AIG", "AIL", "AIP"):
            if not groups:
                groups.append(_Resources())
            getattr(groups[-1], segment.name.lower()).append(here)
    return first, groups or [_Resources()]


def _services(group: _Resources) -> list[Located | None]:
    return [*group.ais] if group.ais else [None]


def _pick(group: list[Located], m: _Message, name: str) -> Located | None:
    return group[0] if group else m.first.get(name)


def _accession(m: _Message) -> str:
    """IPC-1, else OBR-18, else SCH-2.1 Filler Appointment ID, else SCH-1.1 Placer's."""
    ipc, obr, sch = m.seg("IPC"), m.seg("OBR"), m.seg("SCH")
    for segment, field_no in ((ipc, 1), (obr, 18), (sch, 2), (sch, 1)):
        if segment is not None and segment.get(field_no):
            return segment.get(field_no)
    return ""


def _order(m: _Message) -> OrderData:
    sch, obr, pv1 = m.seg("SCH"), m.seg("OBR"), m.seg("PV1")
    placer = (sch.get(26) if sch else "") or (obr.get(2) if obr else "")
    filler = (sch.get(27) if sch else "") or (obr.get(3) if obr else "")
    current_location, admission_id = "", ""
    if pv1 is not None:
        joined = "^".join(pv1.get(3, c) for c in (1, 2, 3)).rstrip("^")
        current_location = fit_text(m.warnings, "CurrentPatientLocation", joined, "PV1^1^3")
        admission_id = pv1.get(19)
    referring = pv1.repetitions(8) if pv1 else []
    requesting = obr.repetitions(16) if obr else []
    return OrderData(
        accession_number=_accession(m),
        placer_order_number=placer,
        filler_order_number=filler,
        requesting_physician=xcn_to_pn(requesting[0], obr.seps) if obr and requesting else "",
        referring_physician_name=xcn_to_pn(referring[0], pv1.seps) if pv1 and referring else "",
        admission_id=admission_id,
        current_patient_location=current_location,
    )


def _service_code(m: _Message, ais: Located | None) -> tuple[Segment, int, str] | None:
    """Where the requested procedure's code is: OBR-44, else OBR-4, else AIS-3."""
    obr = m.first.get("OBR")
    if obr is not None:
        field_no = 44 if obr.segment.get(44) else 4
        if obr.segment.get(field_no):
            return obr.segment, field_no, obr.at(field_no, 1, 2)
    if ais is not None and ais.segment.get(3):
        return ais.segment, 3, ais.at(3, 1, 2)
    return None


def _priority(m: _Message) -> str:
    tq1, sch = m.seg("TQ1"), m.seg("SCH")
    code = (tq1.get(9) if tq1 else "") or (sch.get(11, 6) if sch else "")
    return PRIORITY_MAP.get(code.upper(), "") if code else ""


def _procedure(m: _Message, ais: Located | None) -> ProcedureData:
    ipc, obr, zds, sch = m.seg("IPC"), m.seg("OBR"), m.seg("ZDS"), m.seg("SCH")
    attrs: JsonDataset = {}
    description = ""
    code = _service_code(m, ais)
    if code is not None:
        segment, field_no, where = code
        description = fit_text(
            m.warnings, "RequestedProcedureDescription", segment.get(field_no, 2), where
        )
        attrs["00321064"] = _sequence(
            coded(segment.get(field_no, 1), segment.get(field_no, 3), segment.get(field_no, 2))
        )
    if sch is not None:
        component = 2 if sch.get(7, 2) else 1
        if sch.get(7, component):
            reason = fit_text(
                m.warnings,
                "ReasonForTheRequestedProcedure",
                sch.get(7, component),
                location("SCH", 1, 7, 1, component),
            )
            attrs["00401002"] = element("LO", reason)
    return ProcedureData(
        requested_procedure_id=(ipc.get(2) if ipc else "") or (obr.get(19) if obr else ""),
        study_instance_uid=(ipc.get(3) if ipc else "") or (zds.get(1) if zds else ""),
        description=description,
        priority=_priority(m),
        attributes=attrs,
    )


def _sequence(*items: JsonDataset) -> dict[str, object]:
    return {"vr": "SQ", "Value": list(items)}


def _start(m: _Message, ais: Located | None) -> str:
    """AIS-4 Start Date/Time, else TQ1-7, else SCH-11.4 (TQ start) -> ``YYYYMMDDHHMMSS``."""
    tq1, sch = m.first.get("TQ1"), m.first.get("SCH")
    candidates: list[tuple[str, str]] = []
    if ais is not None:
        candidates.append((ais.segment.get(4), ais.at(4)))
    if tq1 is not None:
        candidates.append((tq1.segment.get(7), tq1.at(7)))
    if sch is not None:
        candidates.append((sch.segment.get(11, 4), sch.at(11, 1, 4)))
    for value, where in candidates:
        if value:
            return hl7_datetime(value, where, "SPS start date/time")
    return ""  # the service applies BROKER_HL7_MISSING_START


def _step(
    m: _Message, group: _Resources, ais: Located | None, several: bool, control: str
) -> StepData:
    ipc, obr = m.seg("IPC"), m.seg("OBR")
    aig, ail, aip = (
        _pick(group.aig, m, "AIG"),
        _pick(group.ail, m, "AIL"),
        _pick(group.aip, m, "AIP"),
    )
    modality, where = "", "AIG^1^4"
    for segment, field_no in ((ipc, 5), (obr, 24)):
        if segment is not None and segment.get(field_no):
            modality = segment.get(field_no)
    if not modality and aig is not None:
        modality, where = aig.segment.get(4), aig.at(4)
    if control == "NW" and not modality:
        raise MessageError(
            REQUIRED_FIELD_MISSING,
            "the modality is missing (AIG-4 Resource Type, OBR-24 or IPC-5)",
            where,
        )
    attrs: JsonDataset = {}
    description = ""
    if ais is not None and ais.segment.get(3):
        seg = ais.segment
        attrs["00400008"] = _sequence(coded(seg.get(3, 1), seg.get(3, 3), seg.get(3, 2)))
        description = fit_text(
            m.warnings, "ScheduledProcedureStepDescription", seg.get(3, 2), ais.at(3, 1, 2)
        )
    station_name = ""
    if ipc is not None and ipc.get(7):
        station_name = fit_text(m.warnings, "ScheduledStationName", ipc.get(7), "IPC^1^7")
    elif aig is not None:
        component = 2 if aig.segment.get(3, 2) else 1
        station_name = fit_text(
            m.warnings,
            "ScheduledStationName",
            aig.segment.get(3, component),
            aig.at(3, 1, component),
        )
    sps_location = ""
    if ipc is not None and ipc.get(8):
        sps_location = fit_text(m.warnings, "ScheduledProcedureStepLocation", ipc.get(8), "IPC^1^8")
    elif ail is not None:
        sps_location = fit_text(
            m.warnings, "ScheduledProcedureStepLocation", ail.segment.get(3), ail.at(3, 1, 1)
        )
    sps_id = (ipc.get(4) if ipc else "") or (obr.get(20) if obr else "")
    if not sps_id and several and ais is not None:
        sps_id = ais.segment.get(1) or str(ais.seq)  # one step per service of the appointment
    performer = aip.segment.repetitions(3) if aip else []
    station = ipc.get(9) if ipc else ""
    return StepData(
        sps_id=sps_id,
        station_ae_titles=(station,) if station else (),
        start_datetime=_start(m, ais),
        modality=modality.upper(),
        performing_physician=xcn_to_pn(performer[0], aip.segment.seps) if aip and performer else "",
        description=description,
        station_name=station_name,
        location=sps_location,
        attributes=attrs,
    )


def siu_command(
    msg: Hl7Message, env: Envelope, warnings: list[FieldWarning] | None = None
) -> OrderMessage:
    """SIU^S12/S13/S14/S15 -> OrderMessage (order control NW / XO / XO / CA).

    SCH is required (100 at ``SCH^1``); for S12 PID-3, PID-5 and the modality are (101).
    """
    control = EVENT_CONTROL[env.trigger_event]
    first, groups = _walk(msg)
    if "SCH" not in first:
        raise MessageError(SEGMENT_SEQUENCE, "the SCH segment is missing", "SCH^1")
    m = _Message(first, groups, warnings if warnings is not None else [])
    is_new = control == "NW"
    patient = patient_from_pid(pid_segment(msg), require_id=True, require_name=is_new)
    order = _order(m)
    services: list[tuple[_Resources, Located | None]] = [
        (group, ais) for group in groups for ais in _services(group)
    ]
    several = len(services) > 1
    procedure = _procedure(m, services[0][1])  # the appointment's one requested procedure
    out = tuple(
        OrderGroup(order=order, procedure=procedure, step=_step(m, group, ais, several, control))
        for group, ais in services
    )
    return OrderMessage(order_control=control, order_status="", patient=patient, groups=out)
