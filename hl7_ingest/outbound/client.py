"""The MLLP client that delivers a message to the RIS and reads its acknowledgement.

Original-mode acknowledgement over MLLP: one connection per message; MSA-1 ``AA`` (or ``CA``)
for this message's MSH-10 is delivered, anything else raises :class:`DeliveryError` and the
outbox retries. With an SSL context (``app.tls.client_context``, ``BROKER_RIS_HL7_TLS``) the
connection is MLLP over TLS; a certificate the context does not trust is a failed try too.
"""

from __future__ import annotations

import socket
import ssl
import time

from hl7_ingest.mllp import Frame, FrameDecoder, frame
from hl7_ingest.parse import decode

ACK_TIMEOUT = 30.0  # seconds to connect, send and receive the ACK
MAX_ACK_BYTES = 1_048_576
READ_SIZE = 65536


class DeliveryError(Exception):
    """The RIS could not be reached, did not acknowledge, or refused: retry later."""


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

    def __init__(
        self, *, max_ack_bytes: int = MAX_ACK_BYTES, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._max_ack_bytes = max_ack_bytes
        self._ssl_context = ssl_context

    def send(self, host: str, port: int, message: str, *, timeout: float) -> str:
        """Send ``message`` framed; return the ACK text once it accepts the message (AA/CA).

        Raises :class:`DeliveryError` when the connection fails, no ACK arrives in ``timeout``
        seconds, or the ACK is not a positive one for this message's MSH-10.
        """
        deadline = time.monotonic() + timeout
        try:
            with self._connect(host, port, timeout) as sock:
                sock.sendall(frame(message.encode("utf-8")))
                ack = _decode_ack(self._read_ack(sock, deadline))
        except TimeoutError:
            raise DeliveryError(f"{host}:{port} timed out (no ACK within {timeout} s)") from None
        except OSError as exc:
            raise DeliveryError(f"cannot deliver to {host}:{port}: {exc}") from None
        check_ack(ack, _control_id(message))
        return ack

    def _connect(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                return self._ssl_context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return sock

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
