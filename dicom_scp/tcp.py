"""Socket options of every DICOM connection, accepted or opened by the broker.

All of it is bound as pynetdicom event handlers (``HANDLERS``): one place to merge with any
rework of the transport.

DIMSE messages are small (a C-FIND response, an N-SET status): with Nagle's algorithm on, the
second small segment of a message waits for the peer's delayed ACK (~40 ms on Linux), which
dominated short C-FIND and MPPS exchanges. pynetdicom sets no such option, so the broker sets
``TCP_NODELAY`` when pynetdicom reports a connection open (``evt.EVT_CONN_OPEN``, on both the
acceptor and the requestor side), before the first PDU goes out.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

from pynetdicom import evt

LOG = logging.getLogger(__name__)


def tune_socket(sock: Any) -> None:
    """``TCP_NODELAY`` on a TCP socket (a plain or TLS ``socket.socket``); others untouched."""
    if sock is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # closed already: the association fails on its own
        LOG.debug("TCP_NODELAY not set: %s", exc)


def _socket_of(event: evt.Event) -> Any:
    transport = getattr(event.assoc.dul, "socket", None)
    return getattr(transport, "socket", None)


def on_connection_open(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler: tune the association's socket."""
    tune_socket(_socket_of(event))


def on_data_received(event: evt.Event) -> None:
    """``EVT_DATA_RECV`` handler (Linux): acknowledge the PDU just read at once.

    A peer that keeps Nagle's algorithm on (DCMTK does unless ``TCP_NODELAY=1`` is set in its
    environment; pynetdicom always) holds the second PDU of its request (the identifier after
    the command) until the first is acknowledged, and Linux delays that ACK by up to 40 ms.
    ``TCP_QUICKACK`` sends a pending ACK now; the kernel drops the mode again by itself, so it
    is set after every PDU read.
    """
    sock = _socket_of(event)
    if _QUICKACK is None or sock is None:
        return
    with contextlib.suppress(OSError):  # closed meanwhile: the association ends by itself
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
HANDLERS: list[Any] = [
    (evt.EVT_CONN_OPEN, on_connection_open),
    (evt.EVT_DATA_RECV, on_data_received),
]
