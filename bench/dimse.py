"""Modality-like C-FIND and MPPS clients on a raw socket: they time the server, not themselves.

One call of ``find`` is one whole association as a modality makes it: A-ASSOCIATE-RQ with one
presentation context (Modality Worklist FIND, Implicit VR Little Endian), one C-FIND-RQ whose
command set and identifier were encoded once up front, the responses read until the final
status, A-RELEASE. Of the answers only the PDU and PDV headers and the command set's Status
(0000,0900) are parsed (PS3.8 9.3, PS3.7 E.1): decoding each identifier, as the pynetdicom SCU
does (about 2 ms per response), would hide the server's own time.

``MppsClient`` does the same for MPPS (PS3.4 F.7): one association, then N-CREATE / N-SET
requests whose command sets and data sets are all encoded before the clock starts; of each
answer only the Status is read (the pynetdicom SCU spends more CPU per pair than the server).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
MWL_FIND = b"1.2.840.10008.5.1.4.31"
MPPS = b"1.2.840.10008.3.1.2.3.3"
IMPLICIT_LE = b"1.2.840.10008.1.2"
IMPLEMENTATION_UID = b"1.2.826.0.1.3680043.10.9999.1"
MAX_PDU = 262144
CONTEXT_ID = 1
PENDING = (0xFF00, 0xFF01)


class AssociationError(Exception):
    pass


@dataclass(frozen=True)
class FindResult:
    matches: int
    status: int


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16)[:16]


def associate_rq(called: str, calling: str, abstract_syntax: bytes = MWL_FIND) -> bytes:
    context = struct.pack(">BBBB", CONTEXT_ID, 0, 0, 0)
    context += _item(0x30, abstract_syntax) + _item(0x40, IMPLICIT_LE)
    user = _item(0x51, struct.pack(">I", MAX_PDU)) + _item(0x52, IMPLEMENTATION_UID)
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    body += _item(0x10, APPLICATION_CONTEXT) + _item(0x20, context) + _item(0x50, user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _element(group: int, element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, element, len(value)) + value


def find_command(message_id: int = 1) -> bytes:
    """C-FIND-RQ command set, Implicit VR Little Endian (PS3.7 Table 9.1-2)."""
    rest = (
        _element(0, 0x0002, MWL_FIND)
        + _element(0, 0x0100, struct.pack("<H", 0x0020))
        + _element(0, 0x0110, struct.pack("<H", message_id))
        + _element(0, 0x0700, struct.pack("<H", 0))
        + _element(0, 0x0800, struct.pack("<H", 0x0102))
    )
    return _element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def encode_identifier(identifier: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = True
    write_dataset(buffer, identifier)
    return buffer.getvalue()


def _pdv(payload: bytes, command: bool) -> bytes:
    header = struct.pack(">IBB", len(payload) + 2, CONTEXT_ID, (1 if command else 0) | 2)
    return header + payload


def p_data(payload: bytes, command: bool) -> bytes:
    body = _pdv(payload, command)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBII", 0x05, 0, 4, 0)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise AssociationError("connection closed by the server")
        chunks += chunk
    return bytes(chunks)


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    kind, _, length = struct.unpack(">BBI", _read_exact(sock, 6))
    return kind, _read_exact(sock, length)


def command_us(command: bytes, tag_element: int) -> int | None:
    """A US element (0000,xxxx) of an Implicit VR Little Endian command set, if present."""
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        offset += 8
        if (group, element) == (0, tag_element):
            return int(struct.unpack_from("<H", command, offset)[0])
        offset += length
    return None


def command_status(command: bytes) -> int:
    """(0000,0900) of an Implicit VR Little Endian command set."""
    status = command_us(command, 0x0900)
    if status is None:
        raise AssociationError("response without Status")
    return status


class FindClient:
    """Repeats one C-FIND, one association each time, against ``host:port``."""

    def __init__(
        self, host: str, port: int, called: str, identifier: Dataset, calling: str = "BENCHSCU"
    ) -> None:
        self.address = (host, port)
        self.associate = associate_rq(called, calling)
        self.request = p_data(find_command(), True) + p_data(encode_identifier(identifier), False)

    def find(self) -> FindResult:
        with socket.create_connection(self.address, timeout=120) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(self.associate)
            kind, _ = read_pdu(sock)
            if kind != 0x02:
                raise AssociationError(f"association not accepted (PDU type {kind:#x})")
            sock.sendall(self.request)
            result = self._responses(sock)
            sock.sendall(RELEASE_RQ)
            kind, _ = read_pdu(sock)
            if kind != 0x06:
                raise AssociationError(f"no A-RELEASE-RP (PDU type {kind:#x})")
            return result

    def _responses(self, sock: socket.socket) -> FindResult:
        matches = 0
        command = bytearray()
        while True:
            kind, body = read_pdu(sock)
            if kind != 0x04:
                raise AssociationError(f"unexpected PDU type {kind:#x} during C-FIND")
            offset = 0
            while offset < len(body):
                length, _context, control = struct.unpack_from(">IBB", body, offset)
                fragment = body[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if not control & 1:
                    continue  # an identifier: not decoded on purpose
                command += fragment
                if not control & 2:
                    continue
                status = command_status(bytes(command))
                command.clear()
                if status not in PENDING:
                    return FindResult(matches, status)
                matches += 1


# --- MPPS -------------------------------------------------------------------------------------

N_CREATE_RQ, N_SET_RQ = 0x0140, 0x0120
NO_DATA_SET = 0x0101


def _uid_value(uid: str) -> bytes:
    return uid.encode("ascii")  # _element pads an odd length with NUL (PS3.5 9.1)


def n_command(command_field: int, message_id: int, uid: str) -> bytes:
    """N-CREATE-RQ (PS3.7 Table 10.3-9) or N-SET-RQ (Table 10.3-5) with a data set, Implicit VR
    Little Endian, elements in tag order: the SOP Class UID is Affected (0000,0002) for N-CREATE
    and Requested (0000,0003) for N-SET, and so is the SOP Instance UID (0000,1000 / 0000,1001)."""
    create = command_field == N_CREATE_RQ
    rest = (
        _element(0, 0x0002 if create else 0x0003, MPPS)
        + _element(0, 0x0100, struct.pack("<H", command_field))
        + _element(0, 0x0110, struct.pack("<H", message_id & 0xFFFF))
        + _element(0, 0x0800, struct.pack("<H", 0))  # a data set follows
        + _element(0, 0x1000 if create else 0x1001, _uid_value(uid))
    )
    return _element(0, 0x0000, struct.pack("<I", len(rest))) + rest


def n_request(command_field: int, message_id: int, uid: str, data_set: Dataset) -> bytes:
    """One request's P-DATA-TF PDUs (command, then data set), ready to send."""
    command = n_command(command_field, message_id, uid)
    return p_data(command, True) + p_data(encode_identifier(data_set), False)


@dataclass(frozen=True)
class MppsPair:
    """One step's pre-encoded N-CREATE and N-SET."""

    uid: str
    create: bytes
    set: bytes


class MppsClient:
    """One association to ``host:port`` over which ``pair`` sends N-CREATE then N-SET."""

    def __init__(
        self, host: str, port: int, called: str, calling: str = "BENCHSCU", timeout: float = 120
    ) -> None:
        self.address = (host, port)
        self.associate = associate_rq(called, calling, MPPS)
        self.timeout = timeout
        self.message_id = 0
        self.sock: socket.socket | None = None

    def __enter__(self) -> MppsClient:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(self.associate)
        kind, _ = read_pdu(sock)
        if kind != 0x02:
            sock.close()
            raise AssociationError(f"association not accepted (PDU type {kind:#x})")
        self.sock = sock
        return self

    def __exit__(self, *exc: object) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            sock.sendall(RELEASE_RQ)
            kind, _ = read_pdu(sock)
            if kind != 0x06:
                raise AssociationError(f"no A-RELEASE-RP (PDU type {kind:#x})")
        finally:
            sock.close()

    def encode(self, uid: str, create: Dataset, modifications: Dataset) -> MppsPair:
        """Encode one pair now (fresh Message IDs), so that sending it costs no client CPU."""
        first, second = self.message_id + 1, self.message_id + 2
        self.message_id = second
        return MppsPair(
            uid,
            n_request(N_CREATE_RQ, first, uid, create),
            n_request(N_SET_RQ, second, uid, modifications),
        )

    def pair(self, pair: MppsPair) -> tuple[int, int]:
        """Send the N-CREATE, await its answer, then the N-SET: both Status values."""
        return self.send(pair.create), self.send(pair.set)

    def send(self, request: bytes) -> int:
        """One pre-encoded request; the Status of its response (data set skipped, not decoded)."""
        if self.sock is None:
            raise AssociationError("not associated")
        self.sock.sendall(request)
        return _n_response(self.sock)


def _n_response(sock: socket.socket) -> int:
    """Read one N-xxx-RSP: its command set, then its data set if the command says one follows."""
    command = bytearray()
    status: int | None = None
    while True:
        kind, body = read_pdu(sock)
        if kind != 0x04:
            raise AssociationError(f"unexpected PDU type {kind:#x} awaiting an N-RSP")
        offset = 0
        while offset < len(body):
            length, _context, control = struct.unpack_from(">IBB", body, offset)
            fragment = body[offset + 6 : offset + 4 + length]
            offset += 4 + length
            last = bool(control & 2)
            if not control & 1:
                if last and status is not None:
                    return status  # the data set's last fragment
                continue
            command += fragment
            if not last:
                continue
            status = command_status(bytes(command))
            if command_us(bytes(command), 0x0800) == NO_DATA_SET:
                return status
