"""Tables. Every Required worklist matching key has an indexed column (PS3.4 Table K.6-1).

Each level keeps the attributes it has columns for, plus ``attributes``: the rest of that level's
DICOM JSON (PS3.18 Annex F), so nothing a sender gave is lost and responses can carry it.
Person names are kept as given (Unicode) and beside them a folded key for case-insensitive
matching. The SPS start is one ``YYYYMMDDHHMMSS`` string, so combined date-time ranges are a
single indexed range scan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json_column() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Patient(SQLModel, table=True):
    __tablename__ = "patient"
    __table_args__ = (
        UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_identity"),
        Index("ix_patient_name_key", "name_key"),
        Index("ix_patient_birth_date", "birth_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(max_length=64, index=True)
    issuer_of_patient_id: str = Field(default="", max_length=64)
    name: str = Field(default="", max_length=400)
    name_key: str = Field(default="", max_length=400)
    birth_date: str = Field(default="", max_length=8)
    sex: str = Field(default="", max_length=16)
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ImagingServiceRequest(SQLModel, table=True):
    """An order: Imaging Service Request and Visit modules of the worklist item."""

    __tablename__ = "imaging_service_request"

    id: int | None = Field(default=None, primary_key=True)
    patient_pk: int = Field(
        sa_column=Column(Integer, ForeignKey("patient.id"), nullable=False, index=True)
    )
    accession_number: str = Field(default="", max_length=64, index=True)
    placer_order_number: str = Field(default="", max_length=64, index=True)
    filler_order_number: str = Field(default="", max_length=64, index=True)
    requesting_physician: str = Field(default="", max_length=400)
    referring_physician_name: str = Field(default="", max_length=400)
    admission_id: str = Field(default="", max_length=64)
    current_patient_location: str = Field(default="", max_length=64)
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RequestedProcedure(SQLModel, table=True):
    __tablename__ = "requested_procedure"

    id: int | None = Field(default=None, primary_key=True)
    order_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("imaging_service_request.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    requested_procedure_id: str = Field(max_length=16, index=True)
    study_instance_uid: str = Field(max_length=64, unique=True)
    description: str = Field(default="", max_length=64)
    priority: str = Field(default="", max_length=16)
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ScheduledProcedureStep(SQLModel, table=True):
    __tablename__ = "scheduled_procedure_step"
    __table_args__ = (
        UniqueConstraint("procedure_pk", "sps_id", name="uq_sps_in_procedure"),
        Index("ix_sps_start", "start_datetime"),
        Index("ix_sps_modality_start", "modality", "start_datetime"),
        Index("ix_sps_status_start", "status", "start_datetime"),
        Index("ix_sps_performing_key", "performing_physician_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    procedure_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("requested_procedure.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    sps_id: str = Field(max_length=16, index=True)
    station_ae_title: str = Field(max_length=400)  # all values, backslash-separated
    start_datetime: str = Field(max_length=14)  # YYYYMMDDHHMMSS
    modality: str = Field(max_length=16)
    performing_physician: str = Field(default="", max_length=400)
    performing_physician_key: str = Field(default="", max_length=400)
    description: str = Field(default="", max_length=64)
    station_name: str = Field(default="", max_length=16)
    location: str = Field(default="", max_length=16)
    status: str = Field(default="SCHEDULED", max_length=16)
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ScheduledStationAETitle(SQLModel, table=True):
    """One row per value of the step's Scheduled Station AE Title, which may be multi-valued.

    Station lookup is the most common worklist query, so each value gets an index entry.
    """

    __tablename__ = "scheduled_station_ae_title"
    __table_args__ = (Index("ix_station_ae_title", "ae_title", "sps_pk"),)

    sps_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("scheduled_procedure_step.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    ae_title: str = Field(max_length=16, primary_key=True)


class AuditEvent(SQLModel, table=True):
    """Every change: what, when, through which interface (``source``) and by whom (``actor``:
    user, ``token:NAME``, calling AE, HL7 sending application). ``detail`` holds ``before`` and
    ``after`` of the changed fields; ``context`` the message behind it (HL7 MSH-10, MPPS UID)."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_pk"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    source: str = Field(max_length=16)
    actor: str = Field(default="", max_length=128, index=True)
    action: str = Field(max_length=32)
    entity: str = Field(max_length=32)
    entity_pk: int = Field(index=True)
    context: str = Field(default="", max_length=199)
    detail: dict[str, Any] = _json_column()


class Station(SQLModel, table=True):
    """Where a modality (and optionally a location) is scheduled: its Scheduled Station AE Title.

    HL7 ORM messages do not carry the station (SPEC_DIGEST 3.4): the broker looks it up here by
    modality and location; a row with an empty location is the modality's default.
    """

    __tablename__ = "station"
    __table_args__ = (UniqueConstraint("modality", "location", name="uq_station_route"),)

    id: int | None = Field(default=None, primary_key=True)
    modality: str = Field(max_length=16)
    location: str = Field(default="", max_length=64)
    ae_title: str = Field(max_length=16)
    station_name: str = Field(default="", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CallingAePolicy(SQLModel, table=True):
    """The worklist policy of one calling AE title (``app.domain.worklist_policy``).

    AEs without a row get ``BROKER_MWL_DEFAULT_POLICY``. The lists are used by ``restrict``.
    """

    __tablename__ = "worklist_policy"

    id: int | None = Field(default=None, primary_key=True)
    calling_ae_title: str = Field(max_length=16, unique=True)
    policy: str = Field(max_length=16)
    station_ae_titles: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    modalities: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Hl7Message(SQLModel, table=True):
    """Every inbound HL7 message, raw, with its outcome and the ACK sent.

    An accepted message is unique by sending application + facility + control ID (MSH-3/4/10),
    which makes redelivery exactly-once: the second copy finds the first and gets its ACK.
    """

    __tablename__ = "hl7_message"
    __table_args__ = (
        Index(
            "uq_hl7_accepted",
            "sending_application",
            "sending_facility",
            "control_id",
            unique=True,
            sqlite_where=text("outcome = 'AA'"),
            postgresql_where=text("outcome = 'AA'"),
        ),
        Index("ix_hl7_lookup", "sending_application", "control_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    sending_application: str = Field(default="", max_length=227)
    sending_facility: str = Field(default="", max_length=227)
    control_id: str = Field(default="", max_length=199)
    message_type: str = Field(default="", max_length=32, index=True)
    outcome: str = Field(max_length=2, index=True)  # AA, AE or AR
    error: str = Field(default="")
    raw: str = Field(default="")
    ack: str = Field(default="")


class PerformedProcedureStep(SQLModel, table=True):
    """An MPPS instance (PS3.4 Annex F): its whole data set, kept current by N-SET."""

    __tablename__ = "performed_procedure_step"

    id: int | None = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(max_length=64, unique=True)
    status: str = Field(max_length=16, index=True)  # IN PROGRESS, COMPLETED, DISCONTINUED
    performed_station_ae_title: str = Field(default="", max_length=16)
    modality: str = Field(default="", max_length=16)
    start_datetime: str = Field(default="", max_length=14, index=True)
    end_datetime: str = Field(default="", max_length=14)
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PerformedStepLink(SQLModel, table=True):
    """Which scheduled steps an MPPS performs (one MPPS may cover several: the grouped case)."""

    __tablename__ = "performed_step_link"

    mpps_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("performed_procedure_step.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    sps_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("scheduled_procedure_step.id", ondelete="CASCADE"),
            primary_key=True,
            index=True,
        )
    )


class OutboxMessage(SQLModel, table=True):
    """A message to deliver (status to the RIS, MPPS to a downstream SCP), written in the same
    transaction as the change it reports; a background worker delivers it, in order per key."""

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    channel: str = Field(max_length=8)  # "hl7" or "dicom"
    destination: str = Field(max_length=128)  # host:port, or AE@host:port
    ordering_key: str = Field(max_length=128, index=True)  # delivered in id order per key
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = _json_column()
    state: str = Field(default="pending", max_length=8)  # pending, sent
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str = Field(default="")
    sent_at: datetime | None = Field(default=None)


class AppUser(SQLModel, table=True):
    """A person who signs in to the page or the API (password hashed with argon2id)."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=16)  # viewer, scheduler, admin
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = Field(default=None)


class ApiToken(SQLModel, table=True):
    """A bearer token for programs; only the SHA-256 of its secret is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    token_hash: str = Field(max_length=64, unique=True)  # hex SHA-256 of the secret
    role: str = Field(max_length=16)
    created_by: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = Field(default=None)
    last_used_at: datetime | None = Field(default=None)


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random secret; ``id`` is its SHA-256, so the
    table alone cannot be replayed. Kept in the database so several brokers share sessions."""

    __tablename__ = "web_session"

    id: str = Field(max_length=64, primary_key=True)
    user_pk: int = Field(
        sa_column=Column(
            Integer, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    last_seen_at: datetime = Field(default_factory=utcnow)


class RemoteAe(SQLModel, table=True):
    """A known remote application entity: where C-MOVE sends, where storage commitment results
    and forwarded MPPS go. ``services`` lists what the broker may do with it (``store`` as a
    C-MOVE destination, ``commit`` for N-EVENT-REPORTs, ``mpps`` for forwarding)."""

    __tablename__ = "remote_ae"

    id: int | None = Field(default=None, primary_key=True)
    ae_title: str = Field(max_length=16, unique=True)
    host: str = Field(max_length=255)
    port: int
    tls: bool = Field(default=False)
    services: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class StoredStudy(SQLModel, table=True):
    """A study the Storage SCP received (PS3.4 C.6: the study level of the Q/R models).

    The patient level is kept on the study (Patient Root queries group by patient). A study is
    linked to the requested procedure it was ordered as (``procedure_pk``): by Study Instance
    UID, else by Accession Number and Patient ID; unlinked studies wait for reconciliation."""

    __tablename__ = "stored_study"
    __table_args__ = (
        Index("ix_stored_study_patient", "patient_id", "issuer_of_patient_id"),
        Index("ix_stored_study_date", "study_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(max_length=64, unique=True)
    patient_id: str = Field(default="", max_length=64)
    issuer_of_patient_id: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=400)
    patient_name_key: str = Field(default="", max_length=400, index=True)
    patient_birth_date: str = Field(default="", max_length=8)
    patient_sex: str = Field(default="", max_length=16)
    study_date: str = Field(default="", max_length=8)
    study_time: str = Field(default="", max_length=16)
    accession_number: str = Field(default="", max_length=64, index=True)
    study_id: str = Field(default="", max_length=16)
    referring_physician_name: str = Field(default="", max_length=400)
    study_description: str = Field(default="", max_length=64)
    procedure_pk: int | None = Field(
        default=None,
        sa_column=Column(
            Integer,
            ForeignKey("requested_procedure.id", ondelete="SET NULL"),
            nullable=True,
            index=True,
        ),
    )
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class StoredSeries(SQLModel, table=True):
    """A series of a stored study (PS3.4 C.6: series level)."""

    __tablename__ = "stored_series"

    id: int | None = Field(default=None, primary_key=True)
    study_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("stored_study.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    series_instance_uid: str = Field(max_length=64, unique=True)
    modality: str = Field(default="", max_length=16, index=True)
    series_number: str = Field(default="", max_length=12)
    series_description: str = Field(default="", max_length=64)
    attributes: dict[str, Any] = _json_column()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class StoredInstance(SQLModel, table=True):
    """A stored SOP instance: its Part 10 file under ``BROKER_STORAGE_DIR`` (``path`` is
    relative to it), written from the bytes received, never decoded and re-encoded."""

    __tablename__ = "stored_instance"

    id: int | None = Field(default=None, primary_key=True)
    series_pk: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("stored_series.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    sop_instance_uid: str = Field(max_length=64, unique=True)
    sop_class_uid: str = Field(max_length=64)
    transfer_syntax_uid: str = Field(max_length=64)
    instance_number: str = Field(default="", max_length=12)
    path: str = Field(max_length=512)
    size_bytes: int = Field(default=0)
    calling_ae_title: str = Field(default="", max_length=16)
    attributes: dict[str, Any] = _json_column()
    received_at: datetime = Field(default_factory=utcnow)


class StorageCommitment(SQLModel, table=True):
    """A Storage Commitment Push Model request (PS3.4 J.3) and its result.

    ``requested`` holds the Referenced SOP Sequence as ``[{"class": ..., "instance": ...}]``;
    ``result`` the committed and failed references (with Failure Reason) once checked;
    ``state`` is pending, checked (report queued) or reported (N-EVENT-REPORT accepted)."""

    __tablename__ = "storage_commitment"

    id: int | None = Field(default=None, primary_key=True)
    transaction_uid: str = Field(max_length=64, unique=True)
    requester_ae_title: str = Field(max_length=16, index=True)
    state: str = Field(default="pending", max_length=16, index=True)
    requested: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    result: dict[str, Any] = _json_column()
    received_at: datetime = Field(default_factory=utcnow)
    reported_at: datetime | None = Field(default=None)
