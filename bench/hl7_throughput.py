"""HL7 intake throughput: new orders over one persistent MLLP connection, ACK by ACK.

    .venv/bin/python bench/hl7_throughput.py --messages 500

Starts the broker in-process (SQLite in a temp folder, every listener on a free loopback port),
sends ``--messages`` ORM^O01 NW orders (two procedures each, distinct patients and control IDs)
in original acknowledgement mode, and prints messages per second and the median round trip.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.db import session_scope  # noqa: E402
from app.domain.status import AuditSource  # noqa: E402
from app.migrations import upgrade  # noqa: E402
from app.runtime import Broker  # noqa: E402
from app.services import stations  # noqa: E402
from hl7_ingest.mllp import END_BLOCK, frame  # noqa: E402

TEMPLATE = (ROOT / "tests" / "data" / "hl7" / "orm_o01_nw.hl7").read_text("latin-1")


def order(index: int) -> bytes:
    text = TEMPLATE.replace("MSG00001", f"BENCH{index}").replace("PAT001^", f"B{index}^")
    for old in ("ACC0001", "ACC0002", "RP0001", "RP0002", "SPS0001"):
        text = text.replace(old, f"{old[:2]}{index}{old[-1]}")
    uid = f"2.55.3.{index + 1}"  # no leading zero in a UID component
    text = text.replace("2.55.3.1001", f"{uid}1").replace("2.55.3.1002", f"{uid}2")
    return frame(text.encode("latin-1"))


def read_ack(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END_BLOCK):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("connection closed by the broker")
        data += chunk
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'broker.db'}"
        upgrade(url)
        settings = Settings(
            _env_file=None,
            database_url=url,
            bind_host="127.0.0.1",  # type: ignore[call-arg]
            dicom_port=0,
            hl7_port=0,
            http_port=0,
            log_level="WARNING",
        )
        broker = Broker(settings, only="hl7")
        ports = broker.start()
        try:
            with session_scope(broker.session_factory) as session:
                for modality in ("CT", "CR"):
                    stations.create_station(
                        session,
                        data=stations.StationData(modality, "BENCH"),
                        source=AuditSource.CLI,
                    )
            messages = [order(i) for i in range(args.messages)]
            rtts = []
            with socket.create_connection(("127.0.0.1", ports["hl7"])) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                start = time.perf_counter()
                for payload in messages:
                    sent = time.perf_counter()
                    sock.sendall(payload)
                    ack = read_ack(sock)
                    rtts.append(time.perf_counter() - sent)
                    if b"MSA|AA|" not in ack:
                        raise SystemExit(f"not accepted: {ack!r}")
                elapsed = time.perf_counter() - start
        finally:
            broker.stop()
    print(f"{args.messages} orders (2 procedures each) over one connection, SQLite")
    print(
        f"{args.messages / elapsed:.0f} messages/s, median round trip "
        f"{statistics.median(rtts) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
