"""A modality-like C-FIND client on a raw socket: it times the server, not itself.

One call of ``find`` is one whole association as a modality makes it: A-ASSOCIATE-RQ with one
presentation context (Modality Worklist FIND, Implicit VR Little Endian), one C-FIND-RQ whose
command set and identifier were encoded once up front, the responses read until the final
status, A-RELEASE. Of the answers only the PDU and PDV headers and the command set's Status
(0000,0900) are parsed (PS3.8 9.3, PS3.7 E.1): decoding each identifier, as the pynetdicom SCU
does (about 2 ms per response), would hide the server's own time.
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


def associate_rq(called: str, calling: str) -> bytes:
    context = struct.pack(">BBBB", CONTEXT_ID, 0, 0, 0)
    context += _item(0x30, MWL_FIND) + _item(0x40, IMPLICIT_LE)
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


def command_status(command: bytes) -> int:
    """(0000,0900) of an Implicit VR Little Endian command set."""
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        offset += 8
        if (group, element) == (0, 0x0900):
            return int(struct.unpack_from("<H", command, offset)[0])
        offset += length
    raise AssociationError("response without Status")


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
