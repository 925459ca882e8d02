"""Broker settings: one validated object, read once at start-up and passed down in sections.

Every setting is an environment variable prefixed ``BROKER_`` (a ``.env`` file in the working
directory is read too). Nothing below ``app/`` reads ``os.environ`` itself.

The settings come in sections (``dicom``, ``worklist``, ``hl7``, ``http``, ``storage``,
``outbox``) and each server is handed only its own. The environment variable names stay flat as
they always were (``BROKER_DICOM_PORT`` is ``settings.dicom.port``): ``ENV`` is the one table
from a variable's name to its place, and ``Settings(dicom_port=0)`` takes the flat names too.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.domain.status import SpsStatus
from app.domain.worklist_policy import PolicyKind

DEFAULT_DATA_DIR = Path("data")

# ORC-1 (table 0119) with optional ORC-5 (table 0038) -> SPS Status, or "update" (SPEC_DIGEST 3.3).
UPDATE_ACTION = "update"
DEFAULT_ORDER_CONTROL: dict[str, str] = {
    "NW": "SCHEDULED",
    "NW_IP": "STARTED",
    "XO": UPDATE_ACTION,
    "XO_SC": UPDATE_ACTION,
    "XO_CM": "COMPLETED",
    "CA": "CANCELED",
    "OC": "CANCELED",
    "DC": "DISCONTINUED",
    "OD": "DISCONTINUED",
    "SC": UPDATE_ACTION,
    "SC_SC": "SCHEDULED",
    "SC_IP": "STARTED",
    "SC_CM": "COMPLETED",
    "SC_CA": "CANCELED",
    "SC_DC": "DISCONTINUED",
}

# PS3.5 6.2: AE is at most 16 characters of the default repertoire, no backslash or control chars.
_AE_MAX_LENGTH = 16


def _validate_ae_title(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError("an AE title must not be empty")
    if len(stripped) > _AE_MAX_LENGTH:
        raise ValueError(
            f"an AE title has at most {_AE_MAX_LENGTH} characters, got {len(stripped)}"
        )
    if "\\" in stripped or not stripped.isascii() or not stripped.isprintable():
        raise ValueError("an AE title is printable ASCII without backslash")
    return stripped


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{value}' is not host:port")
    return host, int(port)


def parse_endpoint(value: str) -> tuple[str, int]:
    """``host:port`` as validated in the settings."""
    return _host_port(value)


# Services a Calling AE can be allowed (BROKER_ALLOWED_CALLING_AES=CT1:echo+find,MR1).
DICOM_SERVICES = ("echo", "find", "mpps", "store", "commit", "move", "get")


def _parse_ae_services(entry: str) -> tuple[str, frozenset[str] | None]:
    """``AE`` or ``AE:service+service``; ``None`` is every service."""
    ae, sep, listed = entry.rpartition(":")
    if not sep:
        return _validate_ae_title(entry), None
    parts = [s.strip().lower() for s in listed.split("+")]
    services = frozenset(parts)
    if not all(parts) or not services <= set(DICOM_SERVICES):
        raise ValueError(
            f"'{entry}': services are {'+'.join(DICOM_SERVICES)}, got '{listed.strip()}'"
        )
    return _validate_ae_title(ae), services


def _format_ae_services(ae: str, services: frozenset[str] | None) -> str:
    if services is None:
        return ae
    return ae + ":" + "+".join(s for s in DICOM_SERVICES if s in services)


OFF = "off"


def _optional_port(value: object) -> object:
    """A TLS port: "off" (or empty) is no listener; 0 picks a free port, as for every port."""
    if value is None or (isinstance(value, str) and value.strip().lower() in (OFF, "")):
        return None
    return value


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part for part in (p.strip() for p in value.split(",")) if part]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


REMOTE_SERVICES = ("store", "commit", "mpps")  # app.services.remote_aes.RemoteService
DEFAULT_REMOTE_SERVICES = ("store", "commit")


class RemoteAeSeed(BaseModel):
    """A known remote AE from ``BROKER_REMOTE_AES``, upserted into the table at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ae_title: str
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    services: tuple[str, ...] = DEFAULT_REMOTE_SERVICES
    description: str = Field(default="", max_length=128)

    @field_validator("ae_title")
    @classmethod
    def _check_title(cls, value: str) -> str:
        return _validate_ae_title(value)

    @field_validator("services")
    @classmethod
    def _check_services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if v not in REMOTE_SERVICES]
        if bad:
            raise ValueError(f"services are {', '.join(REMOTE_SERVICES)}; got {bad}")
        return tuple(dict.fromkeys(value))


def _parse_remote_entry(entry: str) -> dict[str, Any]:
    """``AE@host:port[:tls][=service+service]`` -> the fields of a :class:`RemoteAeSeed`."""
    target, _, services = entry.partition("=")
    ae_title, sep, address = target.partition("@")
    if not sep:
        raise ValueError(f"'{entry}' is not AE@host:port[:tls][=services]")
    tls = address.lower().endswith(":tls")
    host, port = _host_port(address[: -len(":tls")] if tls else address)
    values: dict[str, Any] = {"ae_title": ae_title, "host": host, "port": port, "tls": tls}
    if services.strip():
        values["services"] = tuple(s.strip().lower() for s in services.split("+") if s.strip())
    return values


def parse_remote_aes(value: object) -> object:
    """A JSON list of objects, or comma-separated ``AE@host:port[:tls][=store+commit+mpps]``."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [_parse_remote_entry(part) for part in _items(text)]


class DicomSettings(_Section):
    """The DICOM listener: association policy (PS3.8 9.3.4; the conformance statement reports
    these)."""

    ae_title: str = Field(default="MWLBROKER", description="the broker's own AE title")
    bind_host: str = Field(default="0.0.0.0", description="address the DICOM listeners bind to")
    port: int = Field(default=11112, ge=0, le=65535, description="DICOM DIMSE port")
    tls_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="DICOM over TLS port (PS3.15 B.9), same AE and services; 'off' for none",
    )
    require_called_ae: bool = Field(
        default=True, description="reject associations whose Called AE is not BROKER_AE_TITLE"
    )
    allowed_calling_aes: tuple[str, ...] = Field(
        default=(),
        description="comma-separated Calling AE titles allowed, each optionally with the "
        "services it may use (AE:echo+find+mpps+store+commit+move+get); empty accepts any",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="processes serving the DICOM ports (Linux SO_REUSEPORT; one per core "
        "for many modalities at once); the association and connection limits are per process",
    )
    max_associations: int = Field(
        default=20, ge=1, description="established associations at once (2/3/2 past it)"
    )
    max_associations_per_ae: int = Field(
        default=10, ge=0, description="established associations of one Calling AE; 0 = no limit"
    )
    max_connections: int = Field(
        default=100, ge=1, description="TCP connections open at once; more are closed at once"
    )
    artim_timeout: float = Field(
        default=5.0,
        gt=0,
        description="seconds from connect to an answered A-ASSOCIATE-RQ (ARTIM, PS3.8 9.1.5)",
    )
    max_association_seconds: float = Field(
        default=3600.0, gt=0, description="hard limit on the life of one association"
    )
    max_associate_rq_bytes: int = Field(
        default=65536, ge=1024, description="largest A-ASSOCIATE-RQ PDU accepted"
    )
    dimse_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for a DIMSE")
    acse_timeout: float = Field(default=30.0, gt=0, description="seconds for association setup")
    network_timeout: float = Field(
        default=60.0, gt=0, description="idle seconds before the association is aborted"
    )
    max_pdu_size: int = Field(
        default=262144, ge=0, description="largest P-DATA PDU the broker receives (0 = no limit)"
    )
    remote_aes: tuple[RemoteAeSeed, ...] = Field(
        default=(),
        description="known remote AEs seeded at start-up: a JSON list, or comma-separated "
        "AE@host:port[:tls][=store+commit+mpps] (services default to store+commit)",
    )
    stgcmt_report_delay: float = Field(
        default=1.0,
        ge=0,
        description="seconds a storage commitment requester has to release its association "
        "before the report is sent on it instead of on a new association",
    )

    @field_validator("ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        return _validate_ae_title(value)

    @field_validator("workers")
    @classmethod
    def _workers_need_reuse_port(cls, value: int) -> int:
        if value > 1 and not sys.platform.startswith("linux"):
            raise ValueError("several DICOM workers need Linux (SO_REUSEPORT spreads connections)")
        return value

    @field_validator("remote_aes", mode="before")
    @classmethod
    def _parse_remote_aes(cls, value: object) -> object:
        return parse_remote_aes(value)

    @field_validator("tls_port", mode="before")
    @classmethod
    def _port_or_off(cls, value: object) -> object:
        return _optional_port(value)

    @field_validator("allowed_calling_aes", mode="before")
    @classmethod
    def _split_aes(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("allowed_calling_aes")
    @classmethod
    def _check_aes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_format_ae_services(*_parse_ae_services(v)) for v in value)

    @property
    def calling_ae_services(self) -> dict[str, frozenset[str] | None]:
        """The allow-list as Calling AE -> its services (``None``: every service)."""
        return dict(_parse_ae_services(entry) for entry in self.allowed_calling_aes)


class WorklistSettings(_Section):
    """Worklist matching, for C-FIND and REST alike (PS3.4 K.6.1.3.2: in the conformance
    statement)."""

    name_case_insensitive: bool = Field(
        default=True, description="match Patient's and Performing Physician's Name ignoring case"
    )
    max_results: int = Field(
        default=1000, ge=0, description="most C-FIND matches per query; 0 = no limit"
    )
    default_policy: PolicyKind = Field(
        default=PolicyKind.NONE,
        description="worklist policy of calling AEs without one of their own: none, "
        "calling_ae or restrict",
    )


class Hl7Settings(_Section):
    """HL7 v2 over MLLP: intake, and the header of every message the broker sends."""

    bind_host: str = Field(default="0.0.0.0", description="address the MLLP listeners bind to")
    port: int = Field(default=2575, ge=0, le=65535, description="HL7 v2 MLLP port")
    tls_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="MLLP over TLS port, same rules as the plain one; 'off' for none",
    )
    # Order control: "ORC1" or "ORC1_ORC5" -> an SPS Status the steps take (creating them when
    # new), or "update" (change the order, keep the status).
    order_control: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ORDER_CONTROL),
        description="JSON object: ORC-1[_ORC-5] -> SPS Status or 'update'",
    )
    missing_study_uid: str = Field(
        default="generate", description="'generate' or 'reject' an order without ZDS/IPC UID"
    )
    missing_accession: str = Field(
        default="reject",
        description="'reject' (AE 101, IHE RAD-4) or 'accept' an order without Accession Number",
    )
    missing_start: str = Field(
        default="now",
        description="'now' (as dcm4chee) or 'reject' (AE 101) a new order without SPS start",
    )
    max_frame_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest MLLP frame accepted"
    )
    idle_timeout: float = Field(
        default=60.0, gt=0, description="seconds before an idle MLLP connection is closed"
    )
    max_connections: int = Field(
        default=200, ge=1, description="MLLP connections open at a time; more are closed at once"
    )
    max_connections_per_address: int = Field(
        default=20, ge=1, description="MLLP connections open at a time from one source address"
    )
    db_down: str = Field(
        default="close",
        description="database unavailable: 'close' the connection without an ACK (the sender "
        "resends) or answer 'ae' (AE 207)",
    )
    allowed_senders: str = Field(
        default="",
        description="comma-separated MSH-3 or MSH-3^MSH-4 accepted (empty: any); others get AR",
    )
    allowed_addresses: str = Field(
        default="",
        description="comma-separated IP addresses or CIDR networks that may connect (empty: any)",
    )
    message_retention_days: int = Field(
        default=90, ge=1, description="days inbound HL7 messages are kept in the message log"
    )
    sending_application: str = Field(
        default="MWLBROKER", description="MSH-3 of the broker's acknowledgements"
    )
    sending_facility: str = Field(default="RADIOLOGY", description="MSH-4 of the ACKs")

    @field_validator("tls_port", mode="before")
    @classmethod
    def _port_or_off(cls, value: object) -> object:
        return _optional_port(value)

    @field_validator("order_control", mode="before")
    @classmethod
    def _decode_order_control(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("order_control")
    @classmethod
    def _check_order_control(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {UPDATE_ACTION, *(s.value for s in SpsStatus)}
        bad = {k: v for k, v in value.items() if v not in allowed}
        if bad:
            raise ValueError(f"actions must be one of {sorted(allowed)}; got {bad}")
        return {k.upper(): v for k, v in value.items()}

    @field_validator("missing_study_uid")
    @classmethod
    def _check_uid_policy(cls, value: str) -> str:
        if value not in ("generate", "reject"):
            raise ValueError("is 'generate' or 'reject'")
        return value

    @field_validator("missing_start")
    @classmethod
    def _check_start_policy(cls, value: str) -> str:
        if value not in ("now", "reject"):
            raise ValueError("is 'now' or 'reject'")
        return value

    @field_validator("missing_accession")
    @classmethod
    def _check_accession_policy(cls, value: str) -> str:
        if value not in ("reject", "accept"):
            raise ValueError("is 'reject' or 'accept'")
        return value

    @field_validator("db_down")
    @classmethod
    def _check_db_down(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("close", "ae"):
            raise ValueError("is 'close' or 'ae'")
        return value

    @field_validator("allowed_addresses")
    @classmethod
    def _check_addresses(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR network") from None
        return value

    @property
    def sender_allow_list(self) -> frozenset[tuple[str, str | None]]:
        """(MSH-3, MSH-4 or ``None`` for any facility) pairs; empty: every sender."""
        pairs: set[tuple[str, str | None]] = set()
        for item in _items(self.allowed_senders):
            app, _, facility = item.partition("^")
            pairs.add((app.strip(), facility.strip() if facility else None))
        return frozenset(pairs)

    @property
    def address_allow_list(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks that may connect; empty: every address."""
        return tuple(ipaddress.ip_network(i, strict=False) for i in _items(self.allowed_addresses))


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class HttpSettings(_Section):
    """The REST API and the staff page, with sign-in."""

    bind_host: str = Field(
        default="0.0.0.0", description="address the REST API and web page bind to"
    )
    port: int = Field(default=8000, ge=0, le=65535, description="REST API and web port")
    session_lifetime_hours: float = Field(
        default=12.0, gt=0, description="idle hours before a sign-in session expires (sliding)"
    )
    cookie_secure: bool = Field(
        default=False, description="mark the session cookie Secure; set true behind TLS"
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="failed sign-ins per user name or address per window"
    )
    login_window_seconds: int = Field(
        default=300, ge=1, description="window of the login rate limit, seconds"
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="largest REST request body, bytes; a bigger one gets 413 before it is parsed",
    )
    metrics_public: bool = Field(
        default=False,
        description="serve GET /metrics without sign-in; by default it needs a viewer token",
    )


class DuplicatePolicy(StrEnum):
    """What the Storage SCP does with a SOP Instance UID it holds already."""

    KEEP = "keep"  # keep the first copy, answer Success
    REPLACE = "replace"  # the new copy replaces file and index row


class ClientCertificates(StrEnum):
    """Whether TLS listeners ask connecting peers for a certificate (checked against the CA)."""

    NONE = "none"  # not asked for
    OPTIONAL = "optional"  # checked when the peer sends one
    REQUIRED = "required"  # a peer without a valid certificate is refused


class TlsSettings(_Section):
    """Certificates for every TLS listener and TLS client of the broker (``app/tls.py``).

    The files are read when a TLS listener or connection is set up; that they are present is
    checked here, whether they can be read and used at start-up (a clear error, not a trace)."""

    cert: Path | None = Field(
        default=None, description="PEM certificate (chain) the broker presents"
    )
    key: Path | None = Field(default=None, description="PEM private key of that certificate")
    ca: Path | None = Field(
        default=None,
        description="PEM CA certificates that peers' certificates must chain to; empty: the "
        "system's CAs (outbound only)",
    )
    client_cert: ClientCertificates = Field(
        default=ClientCertificates.NONE,
        description="ask TLS clients for a certificate: none, optional or required",
    )
    check_hostname: bool = Field(
        default=True,
        description="outbound TLS: the peer's certificate must name the host connected to",
    )

    @field_validator("cert", "key", "ca", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("client_cert", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_pairs(self) -> TlsSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("BROKER_TLS_CERT and BROKER_TLS_KEY go together")
        if self.client_cert is not ClientCertificates.NONE and self.ca is None:
            raise ValueError(
                f"BROKER_TLS_CLIENT_CERT={self.client_cert.value} needs BROKER_TLS_CA "
                "(the CA client certificates are checked against)"
            )
        return self

    @property
    def has_certificate(self) -> bool:
        return self.cert is not None and self.key is not None


class StorageSettings(_Section):
    """The Storage SCP (C-STORE, PS3.4 Annex B): where instances go and how long they stay."""

    dir: Path = Field(
        default=DEFAULT_DATA_DIR / "storage", description="where received instances are kept"
    )
    duplicate: DuplicatePolicy = Field(
        default=DuplicatePolicy.KEEP,
        description="a SOP Instance UID received again: 'keep' the first copy or 'replace' it "
        "(both answer Success)",
    )
    retention_days: int = Field(
        default=0,
        ge=0,
        description="delete a study this many days after its last instance arrived; 0 keeps "
        "studies forever",
    )
    retention_requires_commitment: bool = Field(
        default=False,
        description="retention deletes only studies whose every instance a reported storage "
        "commitment covers",
    )

    @field_validator("duplicate", mode="before")
    @classmethod
    def _lower_duplicate(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class OutboxSettings(_Section):
    """Status back to the RIS and MPPS forwarding, through the durable outbox."""

    ris_hl7_endpoint: str = Field(
        default="", description="host:port of the RIS's MLLP listener; empty: no status messages"
    )
    ris_hl7_tls: bool = Field(
        default=False, description="send to the RIS over TLS (certificates: BROKER_TLS_*)"
    )
    ris_hl7_message: str = Field(
        default="ORM", description="status message type: ORM (ORM^O01 SC), ORU (ORU^R01), OMI"
    )
    mpps_forward: tuple[str, ...] = Field(
        default=(),
        description="comma-separated AE@host:port of downstream MPPS SCPs to forward to",
    )
    retry_min: float = Field(default=2.0, gt=0, description="first retry delay, seconds")
    retry_max: float = Field(default=300.0, gt=0, description="longest retry delay")

    @field_validator("ris_hl7_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        value = value.strip()
        if value:
            _host_port(value)
        return value

    @field_validator("ris_hl7_message")
    @classmethod
    def _check_message(cls, value: str) -> str:
        if value.upper() not in ("ORM", "ORU", "OMI"):
            raise ValueError("is ORM, ORU or OMI")
        return value.upper()

    @field_validator("mpps_forward", mode="before")
    @classmethod
    def _split_forward(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("mpps_forward")
    @classmethod
    def _check_forward(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for target in value:
            ae, sep, address = target.partition("@")
            if not sep:
                raise ValueError(f"'{target}' is not AE@host:port")
            _validate_ae_title(ae)
            _host_port(address)
        return value


# The environment: BROKER_<NAME> -> (section, field); a section of None is the top level.
# BROKER_BIND_HOST is the address of every listener whose own (BROKER_DICOM_BIND_HOST...) is not
# given.
ENV: dict[str, tuple[str | None, str]] = {
    "database_url": (None, "database_url"),
    "log_level": (None, "log_level"),
    "ae_title": ("dicom", "ae_title"),
    "dicom_bind_host": ("dicom", "bind_host"),
    "dicom_port": ("dicom", "port"),
    "dicom_tls_port": ("dicom", "tls_port"),
    "dicom_workers": ("dicom", "workers"),
    "require_called_ae": ("dicom", "require_called_ae"),
    "allowed_calling_aes": ("dicom", "allowed_calling_aes"),
    "max_associations": ("dicom", "max_associations"),
    "max_associations_per_ae": ("dicom", "max_associations_per_ae"),
    "dicom_max_connections": ("dicom", "max_connections"),
    "dicom_artim_timeout": ("dicom", "artim_timeout"),
    "max_association_seconds": ("dicom", "max_association_seconds"),
    "max_associate_rq_bytes": ("dicom", "max_associate_rq_bytes"),
    "dimse_timeout": ("dicom", "dimse_timeout"),
    "acse_timeout": ("dicom", "acse_timeout"),
    "network_timeout": ("dicom", "network_timeout"),
    "max_pdu_size": ("dicom", "max_pdu_size"),
    "stgcmt_report_delay": ("dicom", "stgcmt_report_delay"),
    "mwl_name_case_insensitive": ("worklist", "name_case_insensitive"),
    "mwl_max_results": ("worklist", "max_results"),
    "mwl_default_policy": ("worklist", "default_policy"),
    "hl7_bind_host": ("hl7", "bind_host"),
    "hl7_port": ("hl7", "port"),
    "hl7_tls_port": ("hl7", "tls_port"),
    "hl7_order_control": ("hl7", "order_control"),
    "hl7_missing_study_uid": ("hl7", "missing_study_uid"),
    "hl7_missing_accession": ("hl7", "missing_accession"),
    "hl7_missing_start": ("hl7", "missing_start"),
    "hl7_max_frame_bytes": ("hl7", "max_frame_bytes"),
    "hl7_idle_timeout": ("hl7", "idle_timeout"),
    "hl7_max_connections": ("hl7", "max_connections"),
    "hl7_max_connections_per_address": ("hl7", "max_connections_per_address"),
    "hl7_db_down": ("hl7", "db_down"),
    "hl7_allowed_senders": ("hl7", "allowed_senders"),
    "hl7_allowed_addresses": ("hl7", "allowed_addresses"),
    "hl7_message_retention_days": ("hl7", "message_retention_days"),
    "hl7_sending_application": ("hl7", "sending_application"),
    "hl7_sending_facility": ("hl7", "sending_facility"),
    "http_bind_host": ("http", "bind_host"),
    "http_port": ("http", "port"),
    "session_lifetime_hours": ("http", "session_lifetime_hours"),
    "cookie_secure": ("http", "cookie_secure"),
    "login_max_failures": ("http", "login_max_failures"),
    "login_window_seconds": ("http", "login_window_seconds"),
    "http_max_body_bytes": ("http", "max_body_bytes"),
    "remote_aes": ("dicom", "remote_aes"),
    "metrics_public": ("http", "metrics_public"),
    "tls_cert": ("tls", "cert"),
    "tls_key": ("tls", "key"),
    "tls_ca": ("tls", "ca"),
    "tls_client_cert": ("tls", "client_cert"),
    "tls_check_hostname": ("tls", "check_hostname"),
    "storage_dir": ("storage", "dir"),
    "storage_duplicate": ("storage", "duplicate"),
    "storage_retention_days": ("storage", "retention_days"),
    "storage_retention_requires_commitment": ("storage", "retention_requires_commitment"),
    "ris_hl7_endpoint": ("outbox", "ris_hl7_endpoint"),
    "ris_hl7_tls": ("outbox", "ris_hl7_tls"),
    "ris_hl7_message": ("outbox", "ris_hl7_message"),
    "mpps_forward": ("outbox", "mpps_forward"),
    "outbox_retry_min": ("outbox", "retry_min"),
    "outbox_retry_max": ("outbox", "retry_max"),
}
BIND_HOST = "bind_host"
LISTENER_SECTIONS = ("dicom", "hl7", "http")


def env_name(section: str | None, field: str) -> str:
    """The environment variable of a setting, e.g. ``("dicom", "port")`` -> BROKER_DICOM_PORT."""
    for flat, place in ENV.items():
        if place == (section, field):
            return f"BROKER_{flat.upper()}"
    return "BROKER_" + "_".join(p for p in (section, field) if p).upper()


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat names (``dicom_port``) to their sections; unknown and nested keys pass through.

    Section dicts go in first, then ``bind_host`` (every listener's), then the other flat names
    (a listener's own bind host among them): the environment arrives already nested, so a flat
    name here is a keyword override, and an override wins; the more specific name wins over
    ``bind_host``.
    """
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if key in ENV or key == BIND_HOST:
            continue
        nested[key] = dict(value) if isinstance(value, dict) else value
    if BIND_HOST in flat:
        for listener in LISTENER_SECTIONS:
            nested.setdefault(listener, {})[BIND_HOST] = flat[BIND_HOST]
    for key, value in flat.items():
        if key in ENV and (section := ENV[key][0]) is not None:
            nested.setdefault(section, {})[ENV[key][1]] = value
        elif key in ENV:
            nested[key] = value
    return nested


class _FlatEnvironment(PydanticBaseSettingsSource):
    """The BROKER_* variables of the environment and the .env file, by the names in ``ENV``."""

    def __init__(self, settings_cls: type[BaseSettings], *sources: Any) -> None:
        super().__init__(settings_cls)
        self._sources = sources  # highest priority first

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for source in reversed(self._sources):
            for key, value in getattr(source, "env_vars", {}).items():
                name = key.lower().removeprefix("broker_")
                if key.lower().startswith("broker_") and (name in ENV or name == BIND_HOST):
                    found[name] = value
        return _nest(found)


class Settings(BaseSettings):
    """All configuration of the broker, in sections; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="BROKER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DATA_DIR / 'mwl-broker.db'}",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    worklist: WorklistSettings = Field(default_factory=WorklistSettings)
    hl7: Hl7Settings = Field(default_factory=Hl7Settings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _FlatEnvironment(settings_cls, env_settings, dotenv_settings))

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        return _nest(data) if isinstance(data, dict) else data

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log level is one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @model_validator(mode="after")
    def _tls_listeners_have_a_certificate(self) -> Settings:
        on = [
            env_name(section, "tls_port")
            for section, port in (("dicom", self.dicom.tls_port), ("hl7", self.hl7.tls_port))
            if port is not None
        ]
        if on and not self.tls.has_certificate:
            verb = "needs" if len(on) == 1 else "need"
            raise ValueError(f"{' and '.join(on)} {verb} BROKER_TLS_CERT and BROKER_TLS_KEY")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _where(loc: tuple[int | str, ...]) -> str:
    """``BROKER_NAME: `` of an error's place; "" for a rule between settings (its message
    names them)."""
    parts = [str(p) for p in loc]
    if not parts:
        return ""
    if parts[0] in ("dicom", "worklist", "hl7", "http", "tls", "storage", "outbox"):
        if len(parts) == 1:
            return ""
        return f"{env_name(parts[0], parts[1])}: "
    return f"{env_name(None, parts[0])}: "


class SettingsError(Exception):
    """Raised with a readable message when the configuration is invalid."""


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; turn pydantic's report into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            lines.append(f"  {_where(err['loc'])}{err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
