"""Broker settings: one validated object, read once at start-up and passed down.

Every setting is an environment variable prefixed ``BROKER_`` (a ``.env`` file in the working
directory is read too). Nothing below ``app/`` reads ``os.environ`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.domain.status import SpsStatus

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


class Settings(BaseSettings):
    """All configuration of the broker; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="BROKER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DATA_DIR / 'mwl-broker.db'}",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    ae_title: str = Field(default="MWLBROKER", description="the broker's own AE title")
    bind_host: str = Field(default="0.0.0.0", description="address every listener binds to")
    dicom_port: int = Field(default=11112, ge=0, le=65535, description="DICOM DIMSE port")
    hl7_port: int = Field(default=2575, ge=0, le=65535, description="HL7 v2 MLLP port")
    http_port: int = Field(default=8000, ge=0, le=65535, description="REST API and web port")
    storage_dir: Path = Field(
        default=DEFAULT_DATA_DIR / "storage", description="where received instances are kept"
    )

    # Association policy (PS3.8 9.3.4; the conformance statement reports these).
    require_called_ae: bool = Field(
        default=True, description="reject associations whose Called AE is not BROKER_AE_TITLE"
    )
    allowed_calling_aes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated Calling AE titles allowed; empty accepts any",
    )
    max_associations: int = Field(default=20, ge=1, description="concurrent associations")
    dimse_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for a DIMSE")
    acse_timeout: float = Field(default=30.0, gt=0, description="seconds for association setup")
    network_timeout: float = Field(
        default=60.0, gt=0, description="idle seconds before the association is aborted"
    )
    max_pdu_size: int = Field(
        default=262144, ge=0, description="largest P-DATA PDU the broker receives (0 = no limit)"
    )

    # Worklist behaviour (PS3.4 K.6.1.3.2: stated in the conformance statement).
    mwl_name_case_insensitive: bool = Field(
        default=True, description="match Patient's and Performing Physician's Name ignoring case"
    )
    mwl_max_results: int = Field(
        default=1000, ge=0, description="most C-FIND matches per query; 0 = no limit"
    )

    # HL7 v2 intake (MLLP). Order control: "ORC1" or "ORC1_ORC5" -> an SPS Status the steps take
    # (creating them when new), or "update" (change the order, keep the status).
    hl7_order_control: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ORDER_CONTROL),
        description="JSON object: ORC-1[_ORC-5] -> SPS Status or 'update'",
    )
    hl7_missing_study_uid: str = Field(
        default="generate", description="'generate' or 'reject' an order without ZDS/IPC UID"
    )
    hl7_max_frame_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest MLLP frame accepted"
    )
    hl7_idle_timeout: float = Field(
        default=300.0, gt=0, description="seconds before an idle MLLP connection is closed"
    )
    hl7_message_retention_days: int = Field(
        default=90, ge=1, description="days inbound HL7 messages are kept in the message log"
    )
    hl7_sending_application: str = Field(
        default="MWLBROKER", description="MSH-3 of the broker's acknowledgements"
    )
    hl7_sending_facility: str = Field(default="RADIOLOGY", description="MSH-4 of the ACKs")

    # Status back to the RIS and MPPS forwarding, through the durable outbox.
    ris_hl7_endpoint: str = Field(
        default="", description="host:port of the RIS's MLLP listener; empty: no status messages"
    )
    ris_hl7_message: str = Field(
        default="ORM", description="status message type: ORM (ORM^O01 SC), ORU (ORU^R01), OMI"
    )
    mpps_forward: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated AE@host:port of downstream MPPS SCPs to forward to",
    )
    outbox_retry_min: float = Field(default=2.0, gt=0, description="first retry delay, seconds")
    outbox_retry_max: float = Field(default=300.0, gt=0, description="longest retry delay")

    # Access control: sign-in sessions and the login rate limit.
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

    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        return _validate_ae_title(value)

    @field_validator("allowed_calling_aes", mode="before")
    @classmethod
    def _split_aes(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        return value

    @field_validator("allowed_calling_aes")
    @classmethod
    def _check_aes(cls, value: list[str]) -> list[str]:
        return [_validate_ae_title(v) for v in value]

    @field_validator("hl7_order_control")
    @classmethod
    def _check_order_control(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {UPDATE_ACTION, *(s.value for s in SpsStatus)}
        bad = {k: v for k, v in value.items() if v not in allowed}
        if bad:
            raise ValueError(f"actions must be one of {sorted(allowed)}; got {bad}")
        return {k.upper(): v for k, v in value.items()}

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
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("mpps_forward")
    @classmethod
    def _check_forward(cls, value: list[str]) -> list[str]:
        for target in value:
            ae, sep, address = target.partition("@")
            if not sep:
                raise ValueError(f"'{target}' is not AE@host:port")
            _validate_ae_title(ae)
            _host_port(address)
        return value

    @field_validator("hl7_missing_study_uid")
    @classmethod
    def _check_uid_policy(cls, value: str) -> str:
        if value not in ("generate", "reject"):
            raise ValueError("is 'generate' or 'reject'")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log level is one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class SettingsError(Exception):
    """Raised with a readable message when the configuration is invalid."""


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; turn pydantic's report into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "BROKER_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
