"""Socket options of every DICOM connection, accepted or opened by the broker.

DIMSE messages are small (a C-FIND response, an N-SET status): with Nagle's algorithm on, the
second small segment of a message waits for the peer's delayed ACK (~40 ms on Linux), which
dominated short C-FIND and MPPS exchanges. pynetdicom sets no such option, so the broker sets
``TCP_NODELAY`` when pynetdicom reports a connection open (``evt.EVT_CONN_OPEN``, on both the
acceptor and the requestor side), before the first PDU goes out.
"""

from __future__ import annotations

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


def on_connection_open(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler: tune the association's socket."""
    transport = getattr(event.assoc.dul, "socket", None)
    tune_socket(getattr(transport, "socket", None))


HANDLERS: list[Any] = [(evt.EVT_CONN_OPEN, on_connection_open)]
