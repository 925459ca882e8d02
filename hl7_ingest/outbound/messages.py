"""Status messages to the RIS (the Order Filler) and the MLLP client that delivers them.

The broker reports each MPPS state change of an order (SPEC_DIGEST 3.3; IHE RAD-6/RAD-7 carried
as HL7 the way Order Fillers accept it), built from an outbox ``mpps-status`` payload (see
:mod:`app.services.outbox`) in one of three forms (``BROKER_RIS_HL7_MESSAGE``):

* ``ORM`` — ORM^O01 v2.3.1: MSH, PID, then per requested procedure ORC (ORC-1 ``SC``, ORC-5
  ``IP``/``CM``/``DC``), OBR and ZDS (IHE RAD-4 style: the ORM structure allows one OBR per ORC);
* ``ORU`` — ORU^R01 v2.5.1: MSH, PID, per procedure ORC ``SC``, OBR with OBR-25 ``I``/``F``/``X``
  and one OBX whose OBX-5 is the status text;
* ``OMI`` — OMI^O23 v2.5.1: MSH, PID, per procedure ORC ``SC``, TQ1, OBR and IPC-1..5.

Order status (HL7 table 0038): ``IP`` in process, ``CM`` completed, ``DC`` discontinued. A
discontinuation reason (PS3.4 F.7.2.2, (0040,0281)) goes to ORC-16 as a CE.

Delivery is original-mode acknowledgement over MLLP: one connection per message, MSA-1 ``AA``
(or ``CA``) is delivered; anything else raises :class:`DeliveryError` and the outbox retries.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.config import Settings, parse_endpoint
from app.delivery import OutboxMessageView
from hl7_ingest.ack import escape
from hl7_ingest.mllp import Frame, FrameDecoder, frame
from hl7_ingest.parse import decode

MPPS_STATUS = "mpps-status"
ACK_TIMEOUT = 30.0  # seconds to connect, send and receive the ACK
MAX_ACK_BYTES = 1_048_576
READ_SIZE = 65536
UTF8_CHARSET = "UNICODE UTF-8"  # MSH-18 (HL7 table 0211)

# PPS Status (0040,0252) -> ORC-5 (table 0038) and OBR-25 / OBX-11 (tables 0123 / 0085).
ORDER_STATUS: Mapping[str, str] = {"IN PROGRESS": "IP", "COMPLETED": "CM", "DISCONTINUED": "DC"}
RESULT_STATUS: Mapping[str, str] = {"IN PROGRESS": "I", "COMPLETED": "F", "DISCONTINUED": "X"}

# message type setting -> (MSH-9, MSH-12)
MESSAGE_TYPES: Mapping[str, tuple[str, str]] = {
    "ORM": ("ORM^O01", "2.3.1"),
    "ORU": ("ORU^R01^ORU_R01", "2.5.1"),
    "OMI": ("OMI^O23^OMI_O23", "2.5.1"),
}
_PN_GROUP_CODES = ("", "I", "P")  # PN groups alphabetic=ideographic=phonetic -> XPN-8


class DeliveryError(Exception):
    """The RIS could not be reached, did not acknowledge, or refused: retry later."""


# ---------------------------------------------------------------------------------------------
# Building


def _fields(name: str, *values: str) -> str:
    """A segment from already-escaped field values, without trailing empty fields."""
    return "|".join((name, *values)).rstrip("|")


def _components(*values: str) -> str:
    """Escaped components joined with ``^``, without trailing empty ones."""
    return "^".join(escape(v) for v in values).rstrip("^")


def _place(values: dict[int, str]) -> list[str]:
    """Sparse ``{field number: escaped value}`` -> the list of field values 1..max."""
    out = [""] * max(values)
    for index, value in values.items():
        out[index - 1] = value
    return out


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
        rep = _components(family, given, middle, suffix, prefix, "", "", code)
        repetitions.append(rep)
    return "~".join(repetitions)


def _msh(settings: Settings, message_type: str, control_id: str, now: datetime) -> str:
    msh9, version = MESSAGE_TYPES[message_type]
    return _fields(
        "MSH",
        "^~\\&",
        escape(settings.hl7_sending_application),
        escape(settings.hl7_sending_facility),
        "",
        "",
        now.strftime("%Y%m%d%H%M%S"),
        "",
        msh9,
        escape(control_id),
        "P",
        version,
    )


def _pid(patient: Mapping[str, Any]) -> str:
    identifier = _components(
        str(patient.get("patient_id") or ""), "", "", str(patient.get("issuer_of_patient_id") or "")
    )
    values = {
        1: "1",
        3: identifier,
        5: xpn(str(patient.get("name") or "")),
        7: escape(str(patient.get("birth_date") or "")),
        8: escape(str(patient.get("sex") or "")),
    }
    return _fields("PID", *_place(values))


def _reason(payload: Mapping[str, Any]) -> str:
    """ORC-16 Order Control Code Reason (CE) from the discontinuation reason, if any."""
    code = payload.get("discontinuation_reason") or {}
    return _components(
        str(code.get("code_value") or ""),
        str(code.get("code_meaning") or ""),
        str(code.get("coding_scheme") or ""),
    )


def _orc(payload: Mapping[str, Any]) -> str:
    order = payload.get("order") or {}
    values = {
        1: "SC",
        2: escape(str(order.get("placer_order_number") or "")),
        3: escape(str(order.get("filler_order_number") or "")),
        5: ORDER_STATUS[payload["status"]],
        9: escape(str(payload.get("at") or "")),
        16: _reason(payload),
    }
    return _fields("ORC", *_place(values))


def _obr(
    payload: Mapping[str, Any], procedure: Mapping[str, Any], set_id: int, *, result: bool
) -> str:
    order = payload.get("order") or {}
    values = {
        1: str(set_id),
        2: escape(str(order.get("placer_order_number") or "")),
        3: escape(str(order.get("filler_order_number") or "")),
        18: escape(str(order.get("accession_number") or "")),
        19: escape(str(procedure.get("requested_procedure_id") or "")),
        20: escape(str(procedure.get("sps_id") or "")),
        24: escape(str(procedure.get("modality") or "")),
    }
    if result:  # ORU: status change time (OBR-22) and result status (OBR-25, table 0123)
        values[22] = escape(str(payload.get("at") or ""))
        values[25] = RESULT_STATUS[payload["status"]]
    return _fields("OBR", *_place(values))


def _zds(procedure: Mapping[str, Any], settings: Settings) -> str | None:
    """ZDS-1 (IHE RAD TF-2 4.4): ``<Study Instance UID>^<application>^Application^DICOM``."""
    uid = str(procedure.get("study_instance_uid") or "")
    if not uid:
        return None
    return f"ZDS|{_components(uid, settings.hl7_sending_application, 'Application', 'DICOM')}"


def _obx(payload: Mapping[str, Any]) -> str:
    """The status as text: OBX-3 a local code, OBX-5 the PPS status, OBX-11 as OBR-25."""
    values = {
        1: "1",
        2: "ST",
        3: _components("PPS-STATUS", "Performed Procedure Step Status", "L"),
        5: escape(str(payload["status"])),
        11: RESULT_STATUS[payload["status"]],
        14: escape(str(payload.get("at") or "")),
    }
    return _fields("OBX", *_place(values))


def _ipc(payload: Mapping[str, Any], procedure: Mapping[str, Any]) -> str:
    """IPC-1..5 (HL7 v2.5.1 4.5.6): accession, requested procedure, study, step, modality."""
    order = payload.get("order") or {}
    return _fields(
        "IPC",
        escape(str(order.get("accession_number") or "")),
        escape(str(procedure.get("requested_procedure_id") or "")),
        escape(str(procedure.get("study_instance_uid") or "")),
        escape(str(procedure.get("sps_id") or "")),
        escape(str(procedure.get("modality") or "")),
    )


def _order_groups(payload: Mapping[str, Any], message_type: str, settings: Settings) -> list[str]:
    procedures: Sequence[Mapping[str, Any]] = payload.get("procedures") or [{}]
    segments: list[str] = []
    for set_id, procedure in enumerate(procedures, start=1):
        segments.append(_orc(payload))
        if message_type == "OMI":
            segments += ["TQ1|1", _obr(payload, procedure, set_id, result=False)]
            segments.append(_ipc(payload, procedure))
        elif message_type == "ORU":
            segments += [_obr(payload, procedure, set_id, result=True), _obx(payload)]
        else:
            segments.append(_obr(payload, procedure, set_id, result=False))
            zds = _zds(procedure, settings)
            if zds is not None:
                segments.append(zds)
    return segments


def status_message(
    payload: dict[str, Any],
    *,
    message_type: str,
    settings: Settings,
    control_id: str,
    now: datetime | None = None,
) -> str:
    """The ER7 status message (segments ``\\r``-terminated, not framed) for an ``mpps-status``
    payload; ``message_type`` is ``ORM``, ``ORU`` or ``OMI``.

    Raises ``ValueError`` for an unknown message type or PPS status.
    """
    kind = message_type.upper()
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"unknown status message type '{message_type}'")
    if payload.get("status") not in ORDER_STATUS:
        raise ValueError(f"unknown PPS status '{payload.get('status')}'")
    body = [_pid(payload.get("patient") or {}), *_order_groups(payload, kind, settings)]
    msh = _msh(settings, kind, control_id, now or datetime.now())
    if not all(segment.isascii() for segment in body):
        msh += "|" * (17 - msh.count("|")) + UTF8_CHARSET  # MSH-18 follows the 17th "|"
    return "".join(segment + "\r" for segment in [msh, *body])


# ---------------------------------------------------------------------------------------------
# Sending


def _segment_fields(message: str, name: str) -> list[str]:
    for segment in message.replace("\n", "\r").split("\r"):
        if segment.startswith(name + "|"):
            return segment.split("|")
    return []


def _control_id(message: str) -> str:
    msh = _segment_fields(message, "MSH")
    return msh[9] if len(msh) > 9 else ""


def check_ack(ack: str, control_id: str) -> None:
    """Raise :class:`DeliveryError` unless ``ack`` accepts the message ``control_id``."""
    msa = _segment_fields(ack, "MSA")
    if not msa:
        raise DeliveryError("the reply has no MSA segment")
    code = msa[1] if len(msa) > 1 else ""
    acked = msa[2] if len(msa) > 2 else ""
    if control_id and acked != control_id:
        raise DeliveryError(f"the ACK is for message '{acked}', not '{control_id}'")
    if code not in ("AA", "CA"):
        raise DeliveryError(f"the RIS answered {code or 'no code'}: {_ack_error(ack, msa)}")


def _ack_error(ack: str, msa: list[str]) -> str:
    """MSA-3 (before v2.5) or ERR-8 / ERR-3 text (v2.5+) of a negative ACK."""
    err = _segment_fields(ack, "ERR")
    candidates = [
        msa[3] if len(msa) > 3 else "",
        err[8] if len(err) > 8 else "",
        err[3] if len(err) > 3 else "",
        err[1] if len(err) > 1 else "",
    ]
    return next((c for c in candidates if c), "no error text")


def _decode_ack(raw: bytes) -> str:
    """The ACK as text in its MSH-18 character set; Latin-1 when that fails (only MSA matters)."""
    try:
        return decode(raw)
    except Exception:
        return raw.decode("latin-1")


class MllpClient:
    """Sends one message per connection and waits for its acknowledgement."""

    def __init__(self, *, max_ack_bytes: int = MAX_ACK_BYTES) -> None:
        self._max_ack_bytes = max_ack_bytes

    def send(self, host: str, port: int, message: str, *, timeout: float) -> str:
        """Send ``message`` framed; return the ACK text once it accepts the message (AA/CA).

        Raises :class:`DeliveryError` when the connection fails, no ACK arrives in ``timeout``
        seconds, or the ACK is not a positive one for this message's MSH-10.
        """
        deadline = time.monotonic() + timeout
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(frame(message.encode("utf-8")))
                ack = _decode_ack(self._read_ack(sock, deadline))
        except TimeoutError:
            raise DeliveryError(f"{host}:{port} timed out (no ACK within {timeout} s)") from None
        except OSError as exc:
            raise DeliveryError(f"cannot deliver to {host}:{port}: {exc}") from None
        check_ack(ack, _control_id(message))
        return ack

    def _read_ack(self, sock: socket.socket, deadline: float) -> bytes:
        decoder = FrameDecoder(self._max_ack_bytes)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            data = sock.recv(READ_SIZE)
            if not data:
                raise DeliveryError("the connection closed before an ACK arrived")
            for event in decoder.feed(data):
                if isinstance(event, Frame):
                    return event.payload


def hl7_sender(
    settings: Settings,
    *,
    client: MllpClient | None = None,
    timeout: float = ACK_TIMEOUT,
) -> Callable[[OutboxMessageView], None]:
    """The outbox sender of channel ``hl7``: status message to ``view.destination`` (host:port).

    MSH-10 is ``MWL<outbox id>``: a resend after a lost ACK carries the same control ID, so the
    RIS can recognise the duplicate.
    """
    mllp = client or MllpClient()

    def send(view: OutboxMessageView) -> None:
        if view.kind != MPPS_STATUS:
            raise ValueError(f"the hl7 channel does not send '{view.kind}'")
        host, port = parse_endpoint(view.destination)
        message = status_message(
            view.payload,
            message_type=settings.ris_hl7_message,
            settings=settings,
            control_id=f"MWL{view.id}",
        )
        mllp.send(host, port, message, timeout=timeout)

    return send
