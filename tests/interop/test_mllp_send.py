"""An independent MLLP client (``mllp_send`` of the PyPI ``hl7`` package) against MllpServer.

``mllp_send`` opens ONE connection, sends every message of the file in turn and waits for each
reply (original acknowledgement mode), printing the raw reply bytes. Its file formats (read from
``hl7/client.py`` 0.4.5): MLLP-framed messages (split on ``0x1C``, then ``0x0B``/``\\r`` stripped
from both ends), or with ``--loose`` plain text where each message starts with ``MSH|^~\\&|`` and
``\\n``/``\\r\\n`` become ``\\r``. Either way the trailing segment terminator is stripped.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hl7_ingest.mllp import frame
from hl7_ingest.server import MllpServer
from tests.support.tools import mllp_send_executable

pytestmark = pytest.mark.interop

SEND_TIMEOUT = 60.0

SEGMENTS = [
    [
        "MSH|^~\\&|RIS|HOSP|MWL|HOSP|20250101120000||ORM^O01^ORM_O01|CTRL-1|P|2.5",
        "PID|1||P1^^^HOSP||DOE^JANE",
        "ORC|NW|A1",
    ],
    [
        "MSH|^~\\&|RIS|HOSP|MWL|HOSP|20250101120100||ORM^O01^ORM_O01|CTRL-2|P|2.5",
        "PID|1||P2^^^HOSP||ROE^RICHARD",
        "ORC|CA|A2",
    ],
    [
        "MSH|^~\\&|RIS|HOSP|MWL|HOSP|20250101120200||ADT^A08^ADT_A01|CTRL-3|P|2.5",
        "PID|1||P1^^^HOSP||DOE^JANE^Q",
    ],
]
CONTROL_IDS = ["CTRL-1", "CTRL-2", "CTRL-3"]
# What the server must receive: segments separated by \r, the last terminator stripped by mllp_send.
EXPECTED_PAYLOADS = ["\r".join(segments).encode() for segments in SEGMENTS]


def minimal_ack(payload: bytes) -> bytes:
    msh = payload.split(b"\r", 1)[0].split(b"|")
    control_id = msh[9]
    return (
        b"MSH|^~\\&|MWL|HOSP|RIS|HOSP|20250101120000||ACK|ACK-" + control_id + b"|P|2.5\r"
        b"MSA|AA|" + control_id + b"\r"
    )


class Recorder:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, payload: bytes) -> bytes:
        with self.lock:
            self.payloads.append(payload)
        return minimal_ack(payload)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server_port(recorder: Recorder) -> Iterator[int]:
    server = MllpServer(
        recorder,
        reject=lambda reason: None,
        host="127.0.0.1",
        port=0,
        max_frame_bytes=1 << 20,
        idle_timeout=SEND_TIMEOUT,
    )
    port = server.start()
    yield port
    server.stop()


def loose_file(path: Path) -> Path:
    path.write_text("\n".join("\n".join(segments) for segments in SEGMENTS) + "\n")
    return path


def framed_file(path: Path) -> Path:
    path.write_bytes(
        b"".join(frame(("\r".join(segments) + "\r").encode()) for segments in SEGMENTS)
    )
    return path


@pytest.mark.parametrize("mode", ["loose", "framed"])
def test_mllp_send_three_messages_over_one_connection(
    mode: str,
    tmp_path: Path,
    recorder: Recorder,
    server_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hl7_ingest.server")
    executable = mllp_send_executable()
    if mode == "loose":
        options = ["--loose", "--file", str(loose_file(tmp_path / "messages.hl7"))]
    else:
        options = ["--file", str(framed_file(tmp_path / "messages.mllp"))]

    result = subprocess.run(
        [str(executable), *options, "--port", str(server_port), "127.0.0.1"],
        capture_output=True,
        timeout=SEND_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert recorder.payloads == EXPECTED_PAYLOADS
    # mllp_send prints each raw reply (still MLLP-framed), one per line, in order.
    replies = [line for line in result.stdout.split(b"\n") if line]
    assert replies == [frame(minimal_ack(p)) for p in EXPECTED_PAYLOADS]
    assert [b"MSA|AA|" + c.encode() in r for r, c in zip(replies, CONTROL_IDS, strict=True)] == [
        True
    ] * 3
    connects = [r for r in caplog.records if r.msg == "MLLP connection from %s"]
    assert len(connects) == 1
