"""DICOM over TLS (PS3.15 B.9) with DCMTK ``echoscu +tls`` / ``findscu +tls`` against the
in-process listener: the same AE and services as the plain port, client certificates, old TLS
versions and plain clients refused, and a refused client never stops the port serving."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import Certificates, Pair, tls_overrides
from tests.support.net import wait_until
from tests.support.scp import Scp, start_scp
from tests.support.tools import echo, findscu

pytestmark = pytest.mark.interop

AE_TITLE = "MWLBROKER"
CLIENT_TIMEOUT = 10.0


def with_cert(pair: Pair, ca: Path) -> list[str]:
    """DCMTK options: TLS with this key and certificate, the server checked against ``ca``."""
    return ["+tls", str(pair.key), str(pair.cert), "+cf", str(ca)]


def without_cert(ca: Path) -> list[str]:
    return ["+tla", "+cf", str(ca)]


def start(sqlite_url: str, tmp_path: Path, certs: Certificates, client_cert: str) -> Scp:
    overrides = tls_overrides(certs, client_cert)
    scp = start_scp(sqlite_url, tmp_path, dicom_tls_port=0, **overrides)
    assert scp.tls_port is not None and scp.tls_port != scp.port
    return scp


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path, certs: Certificates) -> Iterator[Scp]:
    server = start(sqlite_url, tmp_path, certs, "optional")
    yield server
    server.stop()


@pytest.fixture
def strict_scp(sqlite_url: str, tmp_path: Path, certs: Certificates) -> Iterator[Scp]:
    server = start(sqlite_url, tmp_path, certs, "required")
    yield server
    server.stop()


def output(done: object) -> str:
    return f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"


def test_echo_and_find_over_tls_reach_the_same_ae(
    scp: Scp, certs: Certificates, tmp_path: Path
) -> None:
    scp.add(patient_id="TLS1", name="SECURE^SAM")
    assert scp.tls_port is not None
    done = echo(scp.tls_port, AE_TITLE, tls=with_cert(certs.client, certs.ca))
    assert done.returncode == 0, output(done)
    found = findscu(
        scp.tls_port,
        AE_TITLE,
        tmp_path / "out",
        keys=["PatientID", "PatientName"],
        tls=with_cert(certs.client, certs.ca),
    )
    assert found.returncode == 0, found.output
    assert [str(r.PatientID) for r in found.responses] == ["TLS1"]
    # the plain port keeps serving plain DICOM beside it
    assert echo(scp.port, AE_TITLE).returncode == 0


def test_optional_client_certificate_lets_a_client_without_one_in(
    scp: Scp, certs: Certificates
) -> None:
    assert scp.tls_port is not None
    done = echo(scp.tls_port, AE_TITLE, tls=without_cert(certs.ca))
    assert done.returncode == 0, output(done)


def test_a_client_checking_against_another_ca_refuses_the_broker(
    scp: Scp, certs: Certificates
) -> None:
    assert scp.tls_port is not None
    done = echo(scp.tls_port, AE_TITLE, tls=without_cert(certs.stranger_ca))
    assert done.returncode != 0


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    """Whether the broker (any of its loggers) logged ``text``: the server's own reason."""
    return any(text in r.getMessage() for r in caplog.records)


def test_required_client_certificate(
    strict_scp: Scp, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = strict_scp.tls_port
    assert port is not None
    assert echo(port, AE_TITLE, tls=with_cert(certs.client, certs.ca)).returncode == 0
    assert echo(port, AE_TITLE, tls=without_cert(certs.ca)).returncode != 0
    wait_until(lambda: logged(caplog, "PEER_DID_NOT_RETURN_A_CERTIFICATE"), what="the refusal")
    assert echo(port, AE_TITLE, tls=with_cert(certs.stranger, certs.ca)).returncode != 0
    wait_until(lambda: logged(caplog, "CERTIFICATE_VERIFY_FAILED"), what="the refusal")
    assert echo(port, AE_TITLE, tls=with_cert(certs.client, certs.ca)).returncode == 0


def old_tls_client(ca: Path) -> ssl.SSLContext:
    """A client that speaks at most TLS 1.1 (OpenSSL allows it only at security level 0)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_a_tls_1_1_client_is_refused_by_the_server(scp: Scp, certs: Certificates) -> None:
    assert scp.tls_port is not None
    context = old_tls_client(certs.ca)
    address = ("127.0.0.1", scp.tls_port)
    with (
        socket.create_connection(address, timeout=CLIENT_TIMEOUT) as raw,
        pytest.raises(ssl.SSLError) as info,
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    # the server's alert, not a client-side refusal to offer TLS 1.1
    assert "alert protocol version" in str(info.value).lower(), info.value
    assert echo(scp.tls_port, AE_TITLE, tls=with_cert(certs.client, certs.ca)).returncode == 0


def test_a_plain_client_on_the_tls_port_fails_and_the_port_keeps_serving(
    scp: Scp, certs: Certificates
) -> None:
    assert scp.tls_port is not None
    plain = echo(scp.tls_port, AE_TITLE)
    assert plain.returncode != 0
    assert echo(scp.tls_port, AE_TITLE, tls=with_cert(certs.client, certs.ca)).returncode == 0


def test_a_silent_connection_does_not_hold_up_other_handshakes(
    scp: Scp, certs: Certificates
) -> None:
    """pynetdicom alone shakes hands on the accepting thread: one idle peer would block all."""
    assert scp.tls_port is not None
    with socket.create_connection(("127.0.0.1", scp.tls_port), timeout=CLIENT_TIMEOUT):
        done = echo(scp.tls_port, AE_TITLE, tls=with_cert(certs.client, certs.ca))
        assert done.returncode == 0, output(done)
