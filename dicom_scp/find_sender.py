"""Sending C-FIND Pending responses whose identifiers are already encoded.

pynetdicom's Find SCP (``service_class._c_find_scp``) encodes each yielded identifier Dataset
and sends each response with ``dimse.send_msg``, which builds and encodes a new command set
Dataset per response and queues the command and the data set as two P-DATA-TF PDUs: about a
millisecond per match. Here (``serve_find``, the handler bound to ``EVT_C_FIND``):

- the Pending command set is built once by pynetdicom's own message classes per SOP Class and
  status, and only Message ID Being Responded To is patched per request (PS3.7 9.3.2.2);
- each response is one P-DATA-TF PDU holding two PDVs, command and data set (PS3.8 9.3.5
  allows several PDVs per PDU), when it fits the peer's Maximum Length; larger ones are
  fragmented like pynetdicom does;
- the PDUs go through the association's DUL queue (``dul.send_pdu``), the same path
  ``send_msg`` takes, so they stay in order with everything pynetdicom sends.

Several *responses* per PDU would save more, but pynetdicom as a receiver
(``DIMSEMessage.decode_msg``) returns at the first complete message of a P-DATA and drops the
PDVs after it, so a pynetdicom SCU would lose matches: one response per PDU it is.

Final, cancel and failure statuses are still yielded to pynetdicom, which sends them after
the Pendings (a generator that yields nothing makes it send Success). ``EVT_DIMSE_SENT`` is
not triggered for the Pendings sent here (the broker binds no handler to it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA

# (0000,0120) Message ID Being Responded To, US, implicit VR little endian: tag and length 2
_MESSAGE_ID_HEADER = b"\x00\x00\x20\x01\x02\x00\x00\x00"
_COMMAND_LAST = 0x03
_COMMAND_MORE = 0x01
_DATA_LAST = 0x02
_DATA_MORE = 0x00
_PDV_OVERHEAD = 6  # item length (4), presentation context ID (1), message control header (1)

_TEMPLATES: dict[tuple[str, int], tuple[bytes, int]] = {}
_TEMPLATES_LOCK = threading.Lock()


def _template(sop_class_uid: str, status: int) -> tuple[bytes, int]:
    """A C-FIND-RSP command set with a data set, as pynetdicom encodes it, and the offset of
    the Message ID Being Responded To value in it."""
    key = (sop_class_uid, status)
    with _TEMPLATES_LOCK:
        found = _TEMPLATES.get(key)
        if found is None:
            primitive = C_FIND()
            primitive.MessageIDBeingRespondedTo = 1
            primitive.AffectedSOPClassUID = sop_class_uid
            primitive.Status = status
            primitive.Identifier = BytesIO(b"\x00")  # present: Command Data Set Type 0x0001
            message = C_FIND_RSP()
            message.primitive_to_message(primitive)
            encoded = encode(message.command_set, True, True)
            assert encoded is not None
            offset = encoded.index(_MESSAGE_ID_HEADER) + len(_MESSAGE_ID_HEADER)
            found = (encoded, offset)
            _TEMPLATES[key] = found
    return found


def pending_command(sop_class_uid: str, message_id: int, status: int) -> bytes:
    """The encoded command set of a Pending response to request ``message_id``."""
    encoded, offset = _template(sop_class_uid, status)
    return encoded[:offset] + message_id.to_bytes(2, "little") + encoded[offset + 2 :]


def _fragments(data: bytes, max_pdu: int, more: int, last: int) -> list[bytes]:
    """PDV values (control header + fragment), each fitting a PDU of ``max_pdu`` (0: any)."""
    size = max_pdu - _PDV_OVERHEAD if max_pdu else len(data) or 1
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [bytes([more]) + c for c in chunks[:-1]] + [bytes([last]) + chunks[-1]]


def pdata_of(context_id: int, command: bytes, dataset: bytes, max_pdu: int) -> list[P_DATA]:
    """One response as P-DATA primitives: one holding both PDVs when they fit ``max_pdu``."""
    values = _fragments(command, max_pdu, _COMMAND_MORE, _COMMAND_LAST)
    values += _fragments(dataset, max_pdu, _DATA_MORE, _DATA_LAST)
    out: list[P_DATA] = []
    current: P_DATA | None = None
    used = 0
    for value in values:
        cost = len(value) + _PDV_OVERHEAD - 1  # the control header is part of ``value``
        if current is None or (max_pdu and used + cost > max_pdu):
            current = P_DATA()
            out.append(current)
            used = 0
        current.presentation_data_value_list.append((context_id, value))
        used += cost
    return out


class PendingSender:
    """Sends Pending responses with encoded identifiers on the event's association."""

    def __init__(self, event: evt.Event) -> None:
        context = event.context
        self._context_id = int(context.context_id)
        self._sop_class = str(context.abstract_syntax)
        self._message_id = int(event.request.MessageID or 0)
        self._dul: Any = event.assoc.dul
        self._max_pdu = int(event.assoc.dimse.maximum_pdu_size or 0)
        self._commands: dict[int, bytes] = {}

    def send(self, status: int, identifier: bytes) -> None:
        command = self._commands.get(status)
        if command is None:
            command = pending_command(self._sop_class, self._message_id, status)
            self._commands[status] = command
        for pdata in pdata_of(self._context_id, command, identifier, self._max_pdu):
            self._dul.send_pdu(pdata)


Result = tuple[Any, Any]


def serve_find(stream: Iterator[Result], event: evt.Event) -> Iterator[Result]:
    """Send the encoded Pendings of ``stream`` here; yield every other result to pynetdicom."""
    sender: PendingSender | None = None
    for status, payload in stream:
        if isinstance(payload, bytes):
            if not event.assoc.is_established:
                return  # aborted or released meanwhile, as pynetdicom's own loop checks
            sender = sender or PendingSender(event)
            sender.send(int(status), payload)
            continue
        yield status, payload
