"""ORM^O01 (v2.3.1 + ZDS), OMI^O23 (v2.5.1 + TQ1/IPC) and OMG^O19 -> ``OrderMessage``.

IHE RAD-2/RAD-4/RAD-13 (SPEC_DIGEST 3.1, 3.4). The message is read by plain splitting (see
``hl7_ingest.parse``): the walk below groups segments instead of relying on hl7apy's group
finder, which is slow (~6 ms per message) and trips over Z-segments. Grouping:

* each ORC starts an order; a TQ1 after it (before or after its OBR) gives timing;
* each OBR starts a requested procedure (ZDS after it carries its Study Instance UID);
* each IPC after an OBR is one scheduled step of it. An OBR with k IPC yields k groups, an
  OBR without IPC one group, an ORC without OBR one group with only order identifiers (a
  cancel that names the order by ORC-2/ORC-3).

IPC values, when present, win over OBR/ZDS values, so OMI, ORM and OMG share one mapping. The
order control (ORC-1) and status (ORC-5) of the message are those of its first ORC; every ORC of
a message must carry the same ORC-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from app.domain.dicom_json import JsonDataset, element
from app.domain.intake import OrderGroup, OrderMessage
from app.domain.items import OrderData, PatientData, ProcedureData, StepData
from hl7_ingest.datatypes import (
    coded,
    fit_text,
    hl7_datetime,
    issuer_item,
    location,
    patient_from_pid,
    person_name,
    pid_segment,
    xcn_to_pn,
)
from hl7_ingest.errors import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    FieldWarning,
    MessageError,
)
from hl7_ingest.parse import Envelope, Hl7Message, Segment

# ORC-7.6 / TQ1-9 priority (HL7 table 0027) -> Requested Procedure Priority (0040,1003).
PRIORITY_MAP = {"S": "STAT", "A": "HIGH", "P": "HIGH", "C": "HIGH", "R": "ROUTINE", "T": "MEDIUM"}
NEW_ORDER = "NW"


@dataclass(frozen=True)
class Located:
    """A segment and its sequence among segments of the same name (for ERR locations)."""

    segment: Segment
    seq: int

    def at(self, field_no: int, *more: int) -> str:
        return location(self.segment.name, self.seq, field_no, *more)


@dataclass
class _Service:
    obr: Located
    tq1: Located | None
    zds: Located | None = None
    ipcs: list[Located] = field(default_factory=list)


@dataclass
class _Order:
    orc: Located
    tq1: Located | None = None
    services: list[_Service] = field(default_factory=list)


@dataclass(frozen=True)
class _Context:
    """What every group of the message shares."""

    control: str
    pv1: Segment | None
    warnings: list[FieldWarning] = field(default_factory=list)  # this message's, for its ACK


def _walk(msg: Hl7Message) -> list[_Order]:
    """Group ORC / TQ1 / OBR / ZDS / IPC segments in message order."""
    counts: dict[str, int] = {}
    orders: list[_Order] = []
    for segment in msg.segments:
        counts[segment.name] = counts.get(segment.name, 0) + 1
        here = Located(segment, counts[segment.name])
        if segment.name == "ORC":
            orders.append(_Order(here))
        elif not orders:
            continue  # patient and visit segments before the first ORC
        elif segment.name == "TQ1":
            _attach_tq1(orders[-1], here)
        elif segment.name == "OBR":
            orders[-1].services.append(_Service(here, orders[-1].tq1))
        elif segment.name == "ZDS" and orders[-1].services:
            orders[-1].services[-1].zds = orders[-1].services[-1].zds or here
        elif segment.name == "IPC" and orders[-1].services:
            orders[-1].services[-1].ipcs.append(here)
    return orders


def _attach_tq1(order: _Order, tq1: Located) -> None:
    if order.tq1 is None:
        order.tq1 = tq1
    if order.services and order.services[-1].tq1 is None:
        order.services[-1].tq1 = tq1


# ---------------------------------------------------------------------------------------------
# Values


def _fit(ctx: _Context, keyword: str, text: str, where: str) -> str:
    return fit_text(ctx.warnings, keyword, text, where)


def _first_xcn(segment: Segment | None, field_no: int) -> str:
    if segment is None:
        return ""
    reps = segment.repetitions(field_no)
    return xcn_to_pn(reps[0], segment.seps) if reps else ""


def _technician(obr: Segment) -> str:
    """OBR-34.1 (NDL.1 = CNN id&family&given&middle&suffix&prefix) -> PN."""
    if obr.get(34, 1, 2) or obr.get(34, 1, 3):
        return person_name(*(obr.get(34, 1, s) for s in (2, 3, 4, 5, 6)))
    return person_name(obr.get(34, 1, 1), "", "", "", "")


def _sequence(*items: JsonDataset) -> dict[str, Any]:
    return {"vr": "SQ", "Value": list(items)}


def _put_issuer(attrs: JsonDataset, key: str, segment: Segment, field_no: int) -> None:
    """EI/CX issuer components (.2 namespace, .3 universal id, .4 type) -> issuer sequence."""
    namespace = segment.get(field_no, 2)
    if namespace or segment.get(field_no, 3):
        attrs[key] = _sequence(
            issuer_item(namespace, segment.get(field_no, 3), segment.get(field_no, 4))
        )


# ---------------------------------------------------------------------------------------------
# Levels


def _order_data(
    order: _Order, obr: Segment | None, ipc: Segment | None, ctx: _Context
) -> OrderData:
    orc = order.orc.segment
    pv1 = ctx.pv1
    attrs: JsonDataset = {}
    placer_src = orc if orc.get(2) or obr is None else obr
    filler_src = orc if orc.get(3) or obr is None else obr
    _put_issuer(attrs, "00400026", placer_src, 2)
    _put_issuer(attrs, "00400027", filler_src, 3)
    if ipc is not None:
        _put_issuer(attrs, "00080051", ipc, 1)
    admission_id = ""
    current_location = ""
    if pv1 is not None:
        admission_id = pv1.get(19)
        if pv1.get(19, 4):
            attrs["00380014"] = _sequence(issuer_item(pv1.get(19, 4)))
        parts = [pv1.get(3, c) for c in (1, 2, 3)]
        current_location = _fit(
            ctx, "CurrentPatientLocation", "^".join(parts).rstrip("^"), "PV1^1^3"
        )
    return OrderData(
        accession_number=ipc.get(1) if ipc is not None else (obr.get(18) if obr else ""),
        placer_order_number=placer_src.get(2),
        filler_order_number=filler_src.get(3),
        requesting_physician=_first_xcn(obr, 16) or _first_xcn(orc, 12),
        referring_physician_name=_first_xcn(pv1, 8),
        admission_id=admission_id,
        current_patient_location=current_location,
        attributes=attrs,
    )


def _priority(service: _Service | None, orc: Segment) -> str:
    candidates = [orc.get(7, 6)]
    if service is not None:
        candidates.append(service.obr.segment.get(27, 6))
        if service.tq1 is not None:
            candidates.insert(0, service.tq1.segment.get(9))
    for code in candidates:
        if code:
            return PRIORITY_MAP.get(code.upper(), "")
    return ""


def _procedure_data(
    order: _Order, service: _Service | None, ipc: Segment | None, ctx: _Context
) -> ProcedureData:
    obr = service.obr.segment if service else None
    zds = service.zds.segment if service and service.zds else None
    attrs: JsonDataset = {}
    description = ""
    if service is not None:
        obr_at = service.obr.at
        obr = service.obr.segment
        code_field = 44 if obr.get(44) else 4
        code_value = obr.get(code_field, 1)
        description = _fit(
            ctx, "RequestedProcedureDescription", obr.get(code_field, 2), obr_at(code_field, 1, 2)
        )
        if code_value:
            attrs["00321064"] = _sequence(
                coded(code_value, obr.get(code_field, 3), obr.get(code_field, 2))
            )
        reason_component = 2 if obr.get(31, 2) else 1
        reason = obr.get(31, reason_component)
        if reason:
            where = obr_at(31, 1, reason_component)
            attrs["00401002"] = element(
                "LO", _fit(ctx, "ReasonForTheRequestedProcedure", reason, where)
            )
        if obr.get(30):
            transport = _fit(ctx, "PatientTransportArrangements", obr.get(30), obr_at(30))
            attrs["00401004"] = element("LO", transport)
    if ipc is not None:
        rp_id, study_uid = ipc.get(2), ipc.get(3)
    else:
        rp_id = obr.get(19) if obr else ""
        study_uid = zds.get(1) if zds else ""
    return ProcedureData(
        requested_procedure_id=rp_id,
        study_instance_uid=study_uid,
        description=description,
        priority=_priority(service, order.orc.segment),
        attributes=attrs,
    )


def _start(order: _Order, service: _Service | None) -> str:
    """SPS start: TQ1-7, else ORC-7.4 (TQ start), else OBR-27.4 -> ``YYYYMMDDHHMMSS``."""
    candidates: list[tuple[str, str]] = []
    tq1 = service.tq1 if service else order.tq1
    if tq1 is not None:
        candidates.append((tq1.segment.get(7), tq1.at(7)))
    candidates.append((order.orc.segment.get(7, 4), order.orc.at(7, 1, 4)))
    if service is not None:
        candidates.append((service.obr.segment.get(27, 4), service.obr.at(27, 1, 4)))
    for value, where in candidates:
        if value:
            return hl7_datetime(value, where, "SPS start date/time")
    return ""  # none: the service applies BROKER_HL7_MISSING_START (now, or refuse)


def _step_data(
    order: _Order, service: _Service | None, ipc: Located | None, ctx: _Context
) -> StepData:
    obr = service.obr.segment if service else None
    attrs: JsonDataset = {}
    description, description_at = "", ""
    if ipc is not None and ipc.segment.get(6):
        seg = ipc.segment
        attrs["00400008"] = _sequence(coded(seg.get(6, 1), seg.get(6, 3), seg.get(6, 2)))
        description, description_at = seg.get(6, 2), ipc.at(6, 1, 2)
    elif service is not None and obr is not None:
        if obr.get(4, 4):
            attrs["00400008"] = _sequence(coded(obr.get(4, 4), obr.get(4, 6), obr.get(4, 5)))
        component = 5 if obr.get(4, 5) else 2
        description, description_at = obr.get(4, component), service.obr.at(4, 1, component)
    if ipc is not None:
        modality, where = ipc.segment.get(5), ipc.at(5)
    else:
        modality = obr.get(24) if obr else ""
        where = service.obr.at(24) if service else location("OBR", order.orc.seq, 24)
    if ctx.control == NEW_ORDER and not modality:
        raise MessageError(REQUIRED_FIELD_MISSING, "the modality is missing", where)
    station = ipc.segment.get(9) if ipc else ""
    station_name = _fit(ctx, "ScheduledStationName", ipc.segment.get(7), ipc.at(7)) if ipc else ""
    sps_location = (
        _fit(ctx, "ScheduledProcedureStepLocation", ipc.segment.get(8), ipc.at(8)) if ipc else ""
    )
    return StepData(
        sps_id=ipc.segment.get(4) if ipc else (obr.get(20) if obr else ""),
        station_ae_titles=(station,) if station else (),
        start_datetime=_start(order, service),
        modality=modality.upper(),
        performing_physician=_technician(obr) if obr else "",
        description=_fit(ctx, "ScheduledProcedureStepDescription", description, description_at),
        station_name=station_name,
        location=sps_location,
        attributes=attrs,
    )


def _groups(order: _Order, ctx: _Context) -> list[OrderGroup]:
    if not order.services:
        if ctx.control == NEW_ORDER:
            raise MessageError(
                SEGMENT_SEQUENCE,
                f"ORC {order.orc.seq} of a new order has no OBR",
                f"ORC^{order.orc.seq}",
            )
        return [_group(order, None, None, ctx)]
    groups: list[OrderGroup] = []
    for service in order.services:
        ipcs: list[Located | None] = [*service.ipcs] or [None]
        groups.extend(_group(order, service, ipc, ctx) for ipc in ipcs)
    return groups


def _group(
    order: _Order, service: _Service | None, ipc: Located | None, ctx: _Context
) -> OrderGroup:
    obr = service.obr.segment if service else None
    ipc_segment = ipc.segment if ipc else None
    return OrderGroup(
        order=_order_data(order, obr, ipc_segment, ctx),
        procedure=_procedure_data(order, service, ipc_segment, ctx),
        step=_step_data(order, service, ipc, ctx),
    )


# ---------------------------------------------------------------------------------------------
# Message


def _control(orders: list[_Order]) -> tuple[str, str]:
    """ORC-1 and ORC-5 of the first ORC; 101 at ORC^1^1 if missing, one ORC-1 per message."""
    if not orders:
        raise MessageError(SEGMENT_SEQUENCE, "the message has no ORC segment", "ORC^1")
    control = orders[0].orc.segment.get(1).upper()
    if not control:
        raise MessageError(REQUIRED_FIELD_MISSING, "ORC-1 Order Control is missing", "ORC^1^1")
    for order in orders[1:]:
        other = order.orc.segment.get(1).upper()
        if other != control:
            raise MessageError(
                APPLICATION_INTERNAL_ERROR,
                f"ORC-1 '{other}' differs from the first ORC's '{control}'; "
                "send one order control per message",
                order.orc.at(1),
            )
    return control, orders[0].orc.segment.get(5).upper()


def _patient_extras(patient: PatientData, orders: list[_Order], ctx: _Context) -> PatientData:
    """OBR-12 Danger Code -> Patient State, OBR-13 Relevant Clinical Info -> Medical Alerts."""
    located = next((o.services[0].obr for o in orders if o.services), None)
    if located is None:
        return patient
    first = located.segment
    attrs = dict(patient.attributes)
    danger_component = 2 if first.get(12, 2) else 1
    danger = first.get(12, danger_component)
    if danger:
        where = located.at(12, 1, danger_component)
        attrs["00380500"] = element("LO", _fit(ctx, "PatientState", danger, where))
    if first.get(13):
        alerts = _fit(ctx, "MedicalAlerts", first.get(13), located.at(13))
        attrs["00102000"] = element("LO", alerts)
    return replace(patient, attributes=attrs) if attrs != patient.attributes else patient


def order_command(
    msg: Hl7Message, env: Envelope, warnings: list[FieldWarning] | None = None
) -> OrderMessage:
    """ORM^O01 / OMI^O23 / OMG^O19 -> OrderMessage (see the module docstring for grouping).

    For a new order (ORC-1 NW) PID-3, PID-5 and the modality are required (101); a missing
    start is left empty for the service's policy.
    Descriptive values longer than their VR are cut, each with a warning appended to
    ``warnings`` (for the ACK).
    """
    orders = _walk(msg)
    control, status = _control(orders)
    is_new = control == NEW_ORDER
    patient = patient_from_pid(pid_segment(msg), require_id=is_new, require_name=is_new)
    ctx = _Context(
        control=control,
        pv1=msg.first("PV1"),
        warnings=warnings if warnings is not None else [],
    )
    groups = tuple(group for order in orders for group in _groups(order, ctx))
    return OrderMessage(
        order_control=control,
        order_status=status,
        patient=_patient_extras(patient, orders, ctx),
        groups=groups,
    )
