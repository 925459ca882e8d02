"""Test certificates made on the fly with ``cryptography`` (never committed): a CA, a server
certificate for 127.0.0.1/localhost, a client certificate, and a stranger from another CA.

RSA keys, since the cipher suites PS3.15 B.9 names for TLS 1.2 are the ECDHE/DHE-RSA ones."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = rsa.RSAPrivateKey
KEY_BITS = 2048  # RSA: the key type of the suites PS3.15 B.9 names


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA of everything but the stranger
    server: Pair  # CN=mwl-broker, SAN 127.0.0.1 and localhost, server and client use
    client: Pair  # CN=modality, client use
    stranger: Pair  # CN=stranger, from another CA
    stranger_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: Key, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject: str, issuer: x509.Name, key: Key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _ca(folder: Path, name: str) -> tuple[x509.Certificate, Key, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    cert = (
        _builder(name, _name(name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key, _write_cert(cert, folder / f"{name}.pem")


def _leaf(
    folder: Path,
    name: str,
    ca: tuple[x509.Certificate, Key, Path],
    *,
    server: bool,
) -> Pair:
    ca_cert, ca_key, _ = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = _builder(name, ca_cert.subject, key)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pair(_write_cert(cert, folder / f"{name}.crt"), _write_key(key, folder / f"{name}.key"))


def make_certificates(folder: Path) -> Certificates:
    """Write a fresh CA and its certificates under ``folder`` (a tmp_path)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    other = _ca(folder, "other-ca")
    return Certificates(
        ca=ca[2],
        server=_leaf(folder, "mwl-broker", ca, server=True),
        client=_leaf(folder, "modality", ca, server=False),
        stranger=_leaf(folder, "stranger", other, server=False),
        stranger_ca=other[2],
    )


def tls_overrides(certs: Certificates, client_cert: str = "none") -> dict[str, object]:
    """Flat settings overrides: the server certificate and the CA, as users configure them."""
    return {
        "tls_cert": str(certs.server.cert),
        "tls_key": str(certs.server.key),
        "tls_ca": str(certs.ca),
        "tls_client_cert": client_cert,
    }
