"""The whole broker in-process with TLS: its DICOM and MLLP TLS ports on free ports beside the
plain ones, and its outbound paths over TLS: status messages to a TLS RIS (BROKER_RIS_HL7_TLS)
and MPPS forwarded to a TLS archive because its ``remote_ae`` row says ``tls``. Every peer
requires the broker's client certificate. A certificate that cannot be used stops start-up."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from app.cli import main
from app.config import SettingsError, TlsSettings
from app.db import session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.models import RemoteAe
from app.runtime import Broker
from app.services import worklist
from app.tls import client_context, server_context
from hl7_ingest.mllp import frame
from hl7_ingest.server import MllpServer
from tests.support.certs import Certificates, tls_overrides
from tests.support.items import mwl_item
from tests.support.mpps import n_create
from tests.support.net import wait_until
from tests.support.settings import make_settings

MPPS = ModalityPerformedProcedureStep
VERIFICATION = "1.2.840.10008.1.1"
TIMEOUT = 10.0


def peer_context(certs: Certificates) -> ssl.SSLContext:
    """A peer's server side: the same test CA, and the broker's certificate required."""
    settings = TlsSettings(
        cert=certs.server.cert, key=certs.server.key, ca=certs.ca, client_cert="required"
    )
    return server_context(settings)


class TlsRis:
    """An MLLP-over-TLS receiver that records MSH-10 and answers AA."""

    def __init__(self, certs: Certificates) -> None:
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.server = MllpServer(
            self.handle,
            reject=lambda _reason: None,
            host="127.0.0.1",
            port=0,
            max_frame_bytes=1 << 20,
            idle_timeout=10.0,
            tls_port=0,
            ssl_context=peer_context(certs),
        )
        self.server.start()
        assert self.server.tls_port is not None
        self.port = self.server.tls_port

    def handle(self, payload: bytes) -> bytes:
        msh = payload.decode().split("\r")[0].split("|")
        with self.lock:
            self.received.append(msh[9])
        return f"MSH|^~\\&|RIS|H|MWL|R|20260101||ACK|A1|P|2.3.1\rMSA|AA|{msh[9]}\r".encode()


class TlsArchive:
    """A pynetdicom MPPS SCP on TLS that records the Calling AE of each N-CREATE."""

    def __init__(self, certs: Certificates) -> None:
        self.callers: list[str] = []
        ae = AE(ae_title="ARCHIVE")
        ae.add_supported_context(MPPS)
        handlers = [(evt.EVT_N_CREATE, self._record)]
        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers, ssl_context=peer_context(certs)
        )
        assert self.server is not None
        self.port = int(self.server.server_address[1])

    def _record(self, event: evt.Event) -> tuple[int, Dataset]:
        self.callers.append(event.assoc.requestor.ae_title)
        return 0x0000, Dataset()


@pytest.fixture
def ris(certs: Certificates) -> Iterator[TlsRis]:
    receiver = TlsRis(certs)
    yield receiver
    receiver.server.stop()


@pytest.fixture
def archive(certs: Certificates) -> Iterator[TlsArchive]:
    scp = TlsArchive(certs)
    yield scp
    scp.server.shutdown()


def tls_settings(database_url: str, tmp_path: Path, certs: Certificates, **extra: Any) -> Any:
    values = {
        "dicom_tls_port": 0,
        "hl7_tls_port": 0,
        "outbox_retry_min": 0.05,
        "outbox_retry_max": 0.2,
        **tls_overrides(certs),
        **extra,
    }
    return make_settings(database_url, tmp_path, **values)


def echo_over_tls(port: int, certs: Certificates) -> int:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(VERIFICATION)
    context = client_context(TlsSettings(ca=certs.ca))
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER", tls_args=(context, "localhost"))
    assert assoc.is_established
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def test_the_broker_serves_tls_ports_beside_the_plain_ones_and_stops(
    sqlite_url: str, tmp_path: Path, certs: Certificates
) -> None:
    broker = Broker(tls_settings(sqlite_url, tmp_path, certs))
    ports = broker.start()
    try:
        assert set(ports) == {"dicom", "dicom_tls", "hl7", "hl7_tls", "http"}
        assert len(set(ports.values())) == 5 and all(ports.values())
        assert echo_over_tls(ports["dicom_tls"], certs) == 0x0000
        context = client_context(TlsSettings(ca=certs.ca))
        raw = socket.create_connection(("127.0.0.1", ports["hl7_tls"]), timeout=TIMEOUT)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(frame(b"MSH|^~\\&|RIS|H|MWLBROKER|R|2026||ADT^A08|C1|P|2.5\r"))
            assert b"MSA|" in sock.recv(65536)
    finally:
        broker.stop()
    for name in ("dicom_tls", "hl7_tls"):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", ports[name]), timeout=2).close()


def test_status_to_the_ris_and_mpps_forwarding_go_over_tls(
    database_url: str, tmp_path: Path, certs: Certificates, ris: TlsRis, archive: TlsArchive
) -> None:
    settings = tls_settings(
        database_url,
        tmp_path,
        certs,
        ris_hl7_endpoint=f"localhost:{ris.port}",
        ris_hl7_tls=True,
        mpps_forward=f"ARCHIVE@127.0.0.1:{archive.port}",
    )
    broker = Broker(settings, only="dicom")
    broker.start()
    try:
        with session_scope(broker.session_factory) as session:
            session.add(
                RemoteAe(
                    ae_title="ARCHIVE",
                    host="127.0.0.1",
                    port=archive.port,
                    tls=True,
                    services=["mpps"],
                )
            )
            worklist.upsert_item(
                session, data=item_from_json(mwl_item()), actor=Actor(AuditSource.CLI)
            )
        ae = AE(ae_title="CT01")
        ae.add_requested_context(MPPS)
        assoc = ae.associate("127.0.0.1", broker.ports["dicom"], ae_title="MWLBROKER")
        assert assoc.is_established
        status, _ = assoc.send_n_create(n_create(), MPPS, "1.2.9.77")
        assoc.release()
        assert status.Status == 0x0000
        wait_until(lambda: len(ris.received) == 1, timeout=20, what="the status over TLS")
        wait_until(lambda: archive.callers == ["MWLBROKER"], timeout=20, what="the forward")
    finally:
        broker.stop()


def test_a_tls_port_with_an_unreadable_certificate_stops_start_up(
    sqlite_url: str, tmp_path: Path, certs: Certificates
) -> None:
    settings = tls_settings(sqlite_url, tmp_path, certs, tls_key=str(tmp_path / "missing.key"))
    broker = Broker(settings)
    try:
        with pytest.raises(SettingsError, match="BROKER_TLS_KEY: cannot read"):
            broker.start()
        assert broker.ports == {}  # nothing started listening
    finally:
        broker.stop()


def test_serve_reports_an_unusable_certificate_without_a_trace(
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    tmp_path: Path,
    certs: Certificates,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    for name, value in {
        "BROKER_DATABASE_URL": sqlite_url,
        "BROKER_BIND_HOST": "127.0.0.1",
        "BROKER_DICOM_PORT": "0",
        "BROKER_HL7_PORT": "0",
        "BROKER_HTTP_PORT": "0",
        "BROKER_DICOM_TLS_PORT": "0",
        "BROKER_TLS_CERT": str(junk),
        "BROKER_TLS_KEY": str(certs.server.key),
    }.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main(["serve"]) == 2  # configures logging for the process: undone below
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "ERROR mwl_broker: BROKER_TLS_CERT / BROKER_TLS_KEY: cannot use" in err
    assert "Traceback" not in err
