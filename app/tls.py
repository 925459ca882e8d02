"""The one place TLS contexts are built from the settings, for every listener and every client.

Policy (PS3.15 B.9 "BCP 195 Non-Downgrading TLS Secure Transport Connection Profile", BCP 195 =
RFC 9325 + RFC 8996): TLS 1.2 or 1.3 only; on TLS 1.2 only ephemeral (EC)DHE key exchange with
AEAD ciphers (AES-GCM, ChaCha20-Poly1305), which includes the four suites the profile names
(TLS_ECDHE_RSA_WITH_AES_{128,256}_GCM_SHA{256,384}, TLS_DHE_RSA_WITH_AES_{128,256}_GCM_...);
TLS 1.3 suites are all AEAD; no compression, no renegotiation.

``server_context`` serves the DICOM and MLLP TLS ports; ``client_context`` is for every
connection the broker opens (RIS over MLLP, MPPS forwarding, and later C-MOVE and storage
commitment peers). Both raise :class:`~app.config.SettingsError` naming the setting when a file
cannot be read or used, so a bad certificate stops start-up with a sentence, not a trace.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from app.config import ClientCertificates, SettingsError, TlsSettings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# TLS 1.2 suites in OpenSSL names: forward secrecy and AEAD only (the four suites of PS3.15 B.9
# first, ECDSA certificates and ChaCha20 next). TLS 1.3 suites are OpenSSL's defaults (all AEAD).
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
PROFILE = "BCP 195 Non-Downgrading TLS Secure Transport Connection Profile (PS3.15 B.9)"

_VERIFY_MODE = {
    ClientCertificates.NONE: ssl.CERT_NONE,
    ClientCertificates.OPTIONAL: ssl.CERT_OPTIONAL,
    ClientCertificates.REQUIRED: ssl.CERT_REQUIRED,
}


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _readable(path: Path, variable: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None


def _load_chain(context: ssl.SSLContext, settings: TlsSettings) -> None:
    assert settings.cert is not None and settings.key is not None
    _readable(settings.cert, "BROKER_TLS_CERT")
    _readable(settings.key, "BROKER_TLS_KEY")
    try:
        context.load_cert_chain(settings.cert, settings.key)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"BROKER_TLS_CERT / BROKER_TLS_KEY: cannot use {settings.cert} with "
            f"{settings.key} (a PEM certificate and its unencrypted PEM key): {exc}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path) -> None:
    _readable(ca, "BROKER_TLS_CA")
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(f"BROKER_TLS_CA: {ca} holds no usable PEM certificate: {exc}") from None


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context of the broker's TLS listeners: its certificate, and peers' certificates
    asked for and checked against ``BROKER_TLS_CA`` as ``BROKER_TLS_CLIENT_CERT`` says."""
    if not settings.has_certificate:
        raise SettingsError("a TLS listener needs BROKER_TLS_CERT and BROKER_TLS_KEY")
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_chain(context, settings)
    if settings.ca is not None:
        _load_ca(context, settings.ca)
    context.verify_mode = _VERIFY_MODE[settings.client_cert]
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context of connections the broker opens: the peer's certificate must chain to
    ``BROKER_TLS_CA`` (the system's CAs when unset) and, unless ``BROKER_TLS_CHECK_HOSTNAME``
    is off, name the host; the broker's own certificate goes along when it has one."""
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if settings.ca is not None:
        _load_ca(context, settings.ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = settings.check_hostname
    if settings.has_certificate:
        _load_chain(context, settings)
    return context


def failure_reason(exc: BaseException) -> str:
    """A failed handshake in a few words for the log: OpenSSL's reason when there is one
    (``UNSUPPORTED_PROTOCOL``, ``PEER_DID_NOT_RETURN_A_CERTIFICATE``...)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def session_summary(version: str | None, cipher: str | None, peer_cert: Any) -> str:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384, client certificate CN=CT01`` for the log (the CN of
    a verified client certificate names a device, not a patient)."""
    text = f"{version or '?'} {cipher or '?'}"
    if peer_cert:
        subject = peer_cert.get("subject", ())
        names = [f"CN={v}" for rdn in subject for k, v in rdn if k == "commonName"]
        text += f", client certificate {', '.join(names) or 'without CN'}"
    return text
