"""app/tls.py: the TLS policy of every listener and client, and certificate problems reported
as settings errors that name the variable (never a trace)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from app.config import SettingsError, TlsSettings
from app.tls import client_context, server_context
from tests.support.certs import Certificates


def tls(certs: Certificates, **values: object) -> TlsSettings:
    base: dict[str, object] = {"cert": certs.server.cert, "key": certs.server.key, "ca": certs.ca}
    return TlsSettings.model_validate({**base, **values})


def test_server_context_is_tls_1_2_or_later_with_forward_secret_aead_suites(
    certs: Certificates,
) -> None:
    context = server_context(tls(certs))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["aead"] and c["kea"] in ("kx-ecdhe", "kx-dhe") for c in tls12)
    # the four suites of PS3.15 B.9 are offered
    names = {c["name"] for c in tls12}
    assert {"ECDHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384"} <= names
    assert context.options & ssl.OP_NO_COMPRESSION


@pytest.mark.parametrize(
    ("client_cert", "mode"),
    [("optional", ssl.CERT_OPTIONAL), ("required", ssl.CERT_REQUIRED)],
)
def test_client_certificates_are_asked_for_as_configured(
    certs: Certificates, client_cert: str, mode: ssl.VerifyMode
) -> None:
    assert server_context(tls(certs, client_cert=client_cert)).verify_mode is mode


def test_client_context_checks_the_peer_and_presents_the_brokers_certificate(
    certs: Certificates,
) -> None:
    context = client_context(tls(certs))
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert not client_context(tls(certs, check_hostname=False)).check_hostname
    assert client_context(TlsSettings()).verify_mode is ssl.CERT_REQUIRED  # system CAs


def test_a_missing_certificate_names_the_variable(certs: Certificates, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"BROKER_TLS_CERT: cannot read .*gone\.pem"):
        server_context(tls(certs, cert=tmp_path / "gone.pem"))
    with pytest.raises(SettingsError, match="BROKER_TLS_KEY: cannot read"):
        server_context(tls(certs, key=tmp_path / "gone.key"))
    with pytest.raises(SettingsError, match="BROKER_TLS_CA: cannot read"):
        client_context(tls(certs, ca=tmp_path / "gone-ca.pem"))


def test_an_unusable_certificate_names_the_variables(certs: Certificates, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match="BROKER_TLS_CERT / BROKER_TLS_KEY: cannot use"):
        server_context(tls(certs, cert=junk))
    with pytest.raises(SettingsError, match="BROKER_TLS_CERT / BROKER_TLS_KEY"):
        server_context(tls(certs, key=certs.client.key))  # not the certificate's key
    with pytest.raises(SettingsError, match=r"BROKER_TLS_CA: .* no usable PEM"):
        server_context(tls(certs, ca=junk))


def test_a_listener_without_a_certificate_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="BROKER_TLS_CERT and BROKER_TLS_KEY"):
        server_context(TlsSettings())
