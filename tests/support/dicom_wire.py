"""Raw DICOM Upper Layer bytes (PS3.8 9.3) for tests that must send what no toolkit would:
stalled headers, huge declared lengths, stray PDUs, malformed data sets.

``RawPeer`` is a plain TCP client with PDU helpers; ``associate_rq``/``p_data`` build PDUs;
``rss_bytes`` reads this process's resident set (the servers under test run in-process).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pynetdicom.dsutils import encode

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
VERIFICATION = "1.2.840.10008.1.1"
MWL_FIND = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_ABORT = 0x07


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _uid(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def pdu(pdu_type: int, body: bytes, declared: int | None = None) -> bytes:
    """A PDU; ``declared`` overrides the length field (a lie, for the tests)."""
    length = len(body) if declared is None else declared
    return struct.pack(">BBL", pdu_type, 0, length) + body


def associate_rq(
    calling: str = "MODALITY",
    called: str = "MWLBROKER",
    contexts: tuple[tuple[int, str], ...] = ((1, VERIFICATION), (3, MWL_FIND), (5, MPPS)),
    transfer_syntax: str = IMPLICIT_LE,
    max_length: int = 16384,
    padding: int = 0,
) -> bytes:
    """An A-ASSOCIATE-RQ; ``padding`` bytes of an unknown user-information sub-item make it
    as large as a test needs (PS3.8 9.3.2)."""
    body = struct.pack(">HH", 1, 0)
    body += called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32)
    body += _item(0x10, APPLICATION_CONTEXT)
    for context_id, abstract in contexts:
        sub = _item(0x30, _uid(abstract)) + _item(0x40, _uid(transfer_syntax))
        body += _item(0x20, struct.pack(">BBBB", context_id, 0, 0, 0) + sub)
    user = _item(0x51, struct.pack(">L", max_length))
    while padding > 0:
        chunk = min(padding, 0xFFF0)
        user += _item(0x5F, bytes(chunk))
        padding -= chunk
    # A user information item longer than 65535 cannot be stated: such RQs lie in the item too.
    body += struct.pack(">BBH", 0x50, 0, min(len(user), 0xFFFF)) + user
    return pdu(0x01, body)


def p_data(context_id: int, payload: bytes, *, command: bool, last: bool = True) -> bytes:
    header = (1 if command else 0) | (2 if last else 0)
    pdv = struct.pack(">LBB", len(payload) + 2, context_id, header) + payload
    return pdu(P_DATA_TF, pdv)


def command_set(**elements: object) -> bytes:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    body = encode(ds, True, True)
    assert body is not None
    group = Dataset()
    group.CommandGroupLength = len(body)
    head = encode(group, True, True)
    assert head is not None
    return head + body


def c_find_rq(message_id: int = 1) -> bytes:
    return command_set(
        AffectedSOPClassUID=MWL_FIND,
        CommandField=0x0020,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
    )


def c_echo_rq(message_id: int = 1) -> bytes:
    return command_set(
        AffectedSOPClassUID=VERIFICATION,
        CommandField=0x0030,
        MessageID=message_id,
        CommandDataSetType=0x0101,
    )


def n_create_rq(instance_uid: str, message_id: int = 1) -> bytes:
    return command_set(
        AffectedSOPClassUID=MPPS,
        CommandField=0x0140,
        MessageID=message_id,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=instance_uid,
    )


def n_set_rq(instance_uid: str, message_id: int = 1) -> bytes:
    return command_set(
        RequestedSOPClassUID=MPPS,
        CommandField=0x0120,
        MessageID=message_id,
        CommandDataSetType=0x0000,
        RequestedSOPInstanceUID=instance_uid,
    )


def implicit(ds: Dataset) -> bytes:
    raw = encode(ds, True, True)
    assert raw is not None
    return raw


def overrun(raw: bytes, by: int = 40) -> bytes:
    """``raw`` with its last element's length (Implicit VR LE) claiming ``by`` more bytes."""
    pos = 0
    last = 0
    while pos < len(raw):
        last = pos
        (length,) = struct.unpack_from("<L", raw, pos + 4)
        pos += 8 + length
    (length,) = struct.unpack_from("<L", raw, last + 4)
    return raw[: last + 4] + struct.pack("<L", length + by) + raw[last + 8 :]


@dataclass
class Received:
    pdu_type: int
    body: bytes


class RawPeer:
    """A TCP client speaking bytes to the listener."""

    def __init__(self, port: int, *, rcvbuf: int | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))

    def send(self, data: bytes) -> bool:
        """``False`` once the broker has closed (reset or broken pipe)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def read_pdu(self) -> Received:
        pdu_type, _, length = struct.unpack(">BBL", self._exactly(6))
        return Received(pdu_type, self._exactly(length))

    def associate(self, rq: bytes | None = None) -> Received:
        self.sock.sendall(rq or associate_rq())
        return self.read_pdu()

    def closed_within(self, seconds: float) -> bool:
        """Read and drop until the broker closes; ``True`` if it did within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def dimse_response(self) -> Dataset:
        """The next whole command set the broker sends (P-DATA fragments joined)."""
        command = b""
        while True:
            got = self.read_pdu()
            assert got.pdu_type == P_DATA_TF, f"PDU 0x{got.pdu_type:02X} instead of P-DATA"
            pos = 0
            while pos < len(got.body):
                length, _, header = struct.unpack_from(">LBB", got.body, pos)
                fragment = got.body[pos + 6 : pos + 4 + length]
                pos += 4 + length
                if header & 1:
                    command += fragment
                    if header & 2:
                        return read_dataset(DicomBytesIO(command), True, True)

    def close(self) -> None:
        self.sock.close()


def rss_bytes() -> int:
    """This process's resident set size (VmRSS in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
