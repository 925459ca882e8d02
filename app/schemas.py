"""The schemas of the plain JSON resources, one per resource: inputs (``*In``, ``*Update``) and
the frozen views (``*View``) that services return and the REST API answers with.

Lengths follow the DICOM VR of each attribute (PS3.5 Table 6.2-1), so whatever the REST API
accepts is also a valid worklist item. Shape errors are pydantic's 422 (``loc`` names the field);
rules of the data model are checked when converting to the domain commands, where a
``ValidationError`` becomes a 422 with ``field``. Input models forbid unknown fields, so a typo
is an error instead of a silently ignored value.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from app.domain.access import Role
from app.domain.items import (
    OrderData,
    PatientData,
    ProcedureData,
    StepData,
    new_short_id,
    new_uid,
    start_datetime_from,
    validate_ae_titles,
)
from app.domain.status import SpsStatus

_PN_MAX_GROUPS = 3  # alphabetic, ideographic, phonetic
_PN_MAX_COMPONENTS = 5
_PN_GROUP_MAX_CHARS = 64


def _calendar_date(value: str) -> str:
    if value:
        try:
            date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            raise ValueError(f"'{value}' is not a calendar date") from None
    return value


def _single_text(value: str, *, what: str = "a text value") -> str:
    """One value of PN, LO or SH (PS3.5 6.2): no '\\' (the value separator) and no control
    character (JSON text is Unicode: ISO 2022 escapes never arrive here)."""
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        raise ValueError(f"{what} may not contain '\\' or control characters")
    return value


def _person_name(value: str) -> str:
    """PN (PS3.5 6.2): up to 3 '='-separated groups of up to 5 '^'-separated components."""
    _single_text(value, what="a person name")
    groups = value.split("=")
    if len(groups) > _PN_MAX_GROUPS:
        raise ValueError(f"a person name has at most {_PN_MAX_GROUPS} '='-separated groups")
    for group in groups:
        if len(group.split("^")) > _PN_MAX_COMPONENTS:
            raise ValueError(f"a person name group has at most {_PN_MAX_COMPONENTS} components")
        if len(group) > _PN_GROUP_MAX_CHARS:
            raise ValueError(f"a person name group has at most {_PN_GROUP_MAX_CHARS} characters")
    return value


_Stripped = StringConstraints(strip_whitespace=True)
OptionalDate = Annotated[
    str, _Stripped, Field(pattern=r"^(\d{8})?$"), AfterValidator(_calendar_date)
]
RequiredDate = Annotated[str, _Stripped, Field(pattern=r"^\d{8}$"), AfterValidator(_calendar_date)]
StartTime = Annotated[str, _Stripped, Field(pattern=r"^\d{4}(\d{2})?$", examples=["0830"])]
PersonName = Annotated[
    str, _Stripped, Field(max_length=400, examples=["DOE^JANE"]), AfterValidator(_person_name)
]
RequiredPersonName = Annotated[
    str, _Stripped, Field(min_length=1, max_length=400), AfterValidator(_person_name)
]
Sex = Literal["", "M", "F", "O"]
LO = Annotated[str, _Stripped, Field(max_length=64), AfterValidator(_single_text)]
SH = Annotated[str, _Stripped, Field(max_length=16), AfterValidator(_single_text)]
CS = Annotated[str, _Stripped, Field(max_length=16)]
Uid = Annotated[
    str, _Stripped, Field(max_length=64, pattern=r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
]
AeTitle = Annotated[str, Field(max_length=16)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _View(BaseModel):
    """What a service returns and the API answers: built inside the session, frozen."""

    model_config = ConfigDict(from_attributes=True, frozen=True)


# ---------------------------------------------------------------------------------------------
# Patients


class PatientIn(_Input):
    patient_id: Annotated[
        str, _Stripped, Field(min_length=1, max_length=64), AfterValidator(_single_text)
    ]
    issuer_of_patient_id: LO = ""
    name: RequiredPersonName = Field(examples=["DOE^JANE"])
    birth_date: OptionalDate = Field(default="", examples=["19800101"])
    sex: Sex = ""

    def to_domain(self) -> PatientData:
        return PatientData(
            patient_id=self.patient_id,
            issuer_of_patient_id=self.issuer_of_patient_id,
            name=self.name,
            birth_date=self.birth_date,
            sex=self.sex,
        )


class PatientUpdate(_Input):
    """Demographics to change; fields not sent stay, ``""`` clears (the name cannot be cleared).

    Patient ID and issuer are the identity and are not changed here.
    """

    name: RequiredPersonName | None = None
    birth_date: OptionalDate | None = None
    sex: Sex | None = None

    def changes(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class PatientView(_View):
    id: int
    patient_id: str
    issuer_of_patient_id: str
    name: str
    birth_date: str
    sex: str
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------------------------------------
# Scheduled Procedure Steps


class StepIn(_Input):
    sps_id: SH | None = Field(default=None, description="generated when not given")
    station_ae_titles: list[AeTitle] = Field(min_length=1, examples=[["CT01"]])
    start_date: RequiredDate = Field(examples=["20261201"])
    start_time: StartTime
    modality: Annotated[str, _Stripped, Field(min_length=1, max_length=16, examples=["CT"])]
    performing_physician: PersonName = ""
    description: LO = ""
    station_name: SH = ""
    location: SH = ""
    status: SpsStatus = SpsStatus.SCHEDULED

    def to_domain(self) -> StepData:
        return StepData(
            sps_id=self.sps_id or new_short_id("SPS"),
            station_ae_titles=validate_ae_titles(self.station_ae_titles),
            start_datetime=start_datetime_from(self.start_date, self.start_time),
            modality=self.modality,
            performing_physician=self.performing_physician,
            description=self.description,
            station_name=self.station_name,
            location=self.location,
            status=self.status,
        )


class StepUpdate(_Input):
    """Reschedule or correct a step; fields not sent stay. The status has its own endpoint."""

    station_ae_titles: list[AeTitle] | None = Field(default=None, min_length=1)
    start_date: RequiredDate | None = None
    start_time: StartTime | None = None
    modality: Annotated[str, _Stripped, Field(min_length=1, max_length=16)] | None = None
    performing_physician: PersonName | None = None
    description: LO | None = None
    station_name: SH | None = None
    location: SH | None = None


class StepView(_View):
    id: int
    sps_id: str
    station_ae_titles: tuple[str, ...]
    start_date: str
    start_time: str
    modality: str
    performing_physician: str
    description: str
    station_name: str
    location: str
    status: SpsStatus
    updated_at: datetime
    images: ImagesReceived | None = Field(
        default=None,
        description="images received for the step's requested procedure (GET /api/steps/{id} "
        "and the step details; null while none arrived)",
    )


# ---------------------------------------------------------------------------------------------
# Requested Procedures and orders


class ProcedureIn(_Input):
    requested_procedure_id: SH | None = Field(default=None, description="generated when not given")
    study_instance_uid: Uid | None = Field(default=None, description="generated when not given")
    description: LO = ""
    priority: CS = ""
    steps: list[StepIn] = Field(min_length=1)

    def to_domain(self) -> tuple[ProcedureData, list[StepData]]:
        procedure = ProcedureData(
            requested_procedure_id=self.requested_procedure_id or new_short_id("RP"),
            study_instance_uid=self.study_instance_uid or new_uid(),
            description=self.description,
            priority=self.priority,
        )
        return procedure, [step.to_domain() for step in self.steps]


class ImagesReceived(_View):
    """What the Storage SCP holds of a requested procedure: its linked studies, counted."""

    studies: int
    series: int
    instances: int
    last_received_at: datetime | None


class ProcedureView(_View):
    id: int
    requested_procedure_id: str
    study_instance_uid: str
    description: str
    priority: str
    steps: tuple[StepView, ...]
    images: ImagesReceived | None = Field(
        default=None, description="images received for it; null while none arrived"
    )


class _OrderFields(_Input):
    accession_number: SH = ""
    placer_order_number: LO = ""
    filler_order_number: LO = ""
    requesting_physician: PersonName = ""
    referring_physician_name: PersonName = ""
    admission_id: LO = ""
    current_patient_location: LO = ""


class OrderIn(_OrderFields):
    patient: PatientIn
    procedures: list[ProcedureIn] = Field(min_length=1)

    def order_data(self) -> OrderData:
        return OrderData(
            accession_number=self.accession_number,
            placer_order_number=self.placer_order_number,
            filler_order_number=self.filler_order_number,
            requesting_physician=self.requesting_physician,
            referring_physician_name=self.referring_physician_name,
            admission_id=self.admission_id,
            current_patient_location=self.current_patient_location,
        )

    def procedure_data(self) -> list[tuple[ProcedureData, list[StepData]]]:
        return [procedure.to_domain() for procedure in self.procedures]


class OrderUpdate(_Input):
    """Order-level fields to change; fields not sent stay, ``""`` clears."""

    accession_number: SH | None = None
    placer_order_number: LO | None = None
    filler_order_number: LO | None = None
    requesting_physician: PersonName | None = None
    referring_physician_name: PersonName | None = None
    admission_id: LO | None = None
    current_patient_location: LO | None = None

    def changes(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class CancelIn(_Input):
    reason: Annotated[str, _Stripped, Field(max_length=256)] = Field(
        default="", description="why the order is cancelled; kept in the audit trail"
    )


class OrderView(_View):
    id: int
    patient: PatientView
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    requesting_physician: str
    referring_physician_name: str
    admission_id: str
    current_patient_location: str
    procedures: tuple[ProcedureView, ...]
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------------------------------------
# Stations


class StationIn(_Input):
    modality: str = Field(min_length=1, max_length=16, examples=["CT"])
    ae_title: str = Field(min_length=1, max_length=16, examples=["CT01"])
    location: str = Field(default="", max_length=64, description="empty: the modality's default")
    station_name: str = Field(default="", max_length=16)


class StationView(_View):
    id: int
    modality: str
    ae_title: str
    location: str
    station_name: str
    updated_at: datetime


# ---------------------------------------------------------------------------------------------
# Worklist policies per calling AE


class WorklistPolicyIn(_Input):
    calling_ae_title: AeTitle = Field(min_length=1, examples=["CT01"])
    policy: Literal["none", "calling_ae", "restrict"] = Field(
        description="none: the query as sent; calling_ae: the calling AE is the Scheduled "
        "Station AE Title when the query names none; restrict: only the stations and/or "
        "modalities below (no lists: the calling AE's own station)",
        examples=["calling_ae"],
    )
    station_ae_titles: list[AeTitle] = Field(default_factory=list, max_length=64)
    modalities: list[CS] = Field(default_factory=list, max_length=64, examples=[["CT"]])


class WorklistPolicyView(_View):
    id: int
    calling_ae_title: str
    policy: str
    station_ae_titles: tuple[str, ...]
    modalities: tuple[str, ...]
    updated_at: datetime


# ---------------------------------------------------------------------------------------------
# Performed procedure steps (MPPS)


class LinkedStepView(_View):
    step_pk: int
    study_instance_uid: str
    sps_id: str
    accession_number: str
    status: str


class MppsSummary(_View):
    sop_instance_uid: str
    status: str
    performed_station_ae_title: str
    modality: str
    start_datetime: str
    end_datetime: str
    created_at: datetime
    updated_at: datetime
    linked_steps: tuple[LinkedStepView, ...]


class MppsView(MppsSummary):
    attributes: dict[str, Any] = Field(
        description="the whole MPPS data set, DICOM JSON", repr=False
    )


class StepRef(_Input):
    study_instance_uid: str = Field(min_length=1, max_length=64)
    sps_id: str = Field(min_length=1, max_length=16)


class LinkIn(_Input):
    steps: list[StepRef] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# Outbox


class OutboxSummary(_View):
    id: int
    created_at: datetime
    channel: str
    destination: str
    ordering_key: str
    kind: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    sent_at: datetime | None


class OutboxView(OutboxSummary):
    payload: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Audit trail


class AuditView(_View):
    id: int
    at: datetime
    source: str
    actor: str
    action: str
    entity: str
    entity_pk: int
    context: str
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    detail: dict[str, Any] = Field(
        default_factory=dict, description="what else the change recorded (fields, reason...)"
    )


# ---------------------------------------------------------------------------------------------
# HL7 message log


class Hl7MessageSummary(_View):
    id: int
    received_at: datetime
    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    outcome: str
    error: str


class Hl7MessageView(Hl7MessageSummary):
    raw: str
    ack: str


# ---------------------------------------------------------------------------------------------
# A step with everything behind it (the page's details panel)


class StepDetails(_View):
    step: StepView
    order: OrderView
    history: tuple[AuditView, ...] = Field(
        description="changes to the step, its procedure, order and patient, oldest first"
    )
    mpps: tuple[MppsSummary, ...] = Field(description="performed procedure steps reporting it")
    hl7_messages: tuple[Hl7MessageSummary, ...] = Field(
        description="inbound HL7 messages that changed it (by MSH-3 and MSH-10)"
    )
    studies: tuple[StoredStudyView, ...] = Field(
        default=(), description="studies received for its requested procedure"
    )


# ---------------------------------------------------------------------------------------------
# The staff board: one day's steps with order and patient, flat


class BoardRow(_View):
    step_id: int
    order_id: int
    patient_pk: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    accession_number: str
    requested_procedure_id: str
    procedure_description: str
    study_instance_uid: str
    sps_id: str
    station_ae_titles: tuple[str, ...]
    station_name: str
    modality: str
    start_date: str
    start_time: str
    status: SpsStatus
    description: str
    updated_at: datetime
    images: ImagesReceived | None = None


# ---------------------------------------------------------------------------------------------
# Users and API tokens


class UserIn(_Input):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = Role.VIEWER


class UserPatch(_Input):
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class UserView(_View):
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class TokenIn(_Input):
    name: str = Field(min_length=1, max_length=64)
    role: Role = Role.VIEWER


class TokenView(_View):
    id: int
    name: str
    role: Role
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenView):
    secret: str = Field(description="send as 'Authorization: Bearer <secret>'; shown only now")


# ---------------------------------------------------------------------------------------------
# Known remote AEs (C-MOVE destinations, storage commitment peers, MPPS forwarding)


class StoredSeriesView(_View):
    series_instance_uid: str
    modality: str
    series_number: str
    series_description: str
    instances: int


class StoredStudyView(_View):
    """A received study, with the requested procedure it is linked to (null: unlinked)."""

    id: int
    study_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    procedure_pk: int | None
    series: tuple[StoredSeriesView, ...]
    instances: int
    last_received_at: datetime | None
    created_at: datetime


class StudyLinkIn(_Input):
    """Link a received study to a requested procedure, named directly or through a step."""

    procedure_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    step_id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_target(self) -> StudyLinkIn:
        if (self.procedure_id is None) == (self.step_id is None):
            raise ValueError("give exactly one of procedure_id and step_id")
        return self


class RemoteAeIn(_Input):
    ae_title: AeTitle = Field(min_length=1)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    services: list[str] = Field(default_factory=list, description="store, commit, mpps")
    description: str = Field(default="", max_length=128)


class RemoteAeView(_View):
    id: int
    ae_title: str
    host: str
    port: int
    tls: bool
    services: list[str]
    description: str
    updated_at: datetime


# ---------------------------------------------------------------------------------------------
# Query/Retrieve: the instances a C-MOVE or C-GET sends


class StoredInstanceRef(_View):
    """One stored SOP instance to send: its Part 10 file, relative to ``BROKER_STORAGE_DIR``."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str


# ---------------------------------------------------------------------------------------------
# Storage commitment (PS3.4 J.3)


class CommittedInstanceView(_View):
    sop_class_uid: str
    sop_instance_uid: str


class FailedInstanceView(CommittedInstanceView):
    failure_reason: int = Field(description="Failure Reason (0008,1197), PS3.3 C.14.1.1")
    failure_meaning: str


class CommitmentDeliveryView(_View):
    """The outbox message that carries the N-EVENT-REPORT on a new association."""

    outbox_id: int
    state: str
    attempts: int
    last_error: str
    next_attempt_at: datetime
    sent_at: datetime | None


class StorageCommitmentSummary(_View):
    transaction_uid: str
    requester_ae_title: str
    state: str = Field(description="pending, checked (report queued), reported, undeliverable")
    received_at: datetime
    reported_at: datetime | None
    requested_count: int
    committed_count: int
    failed_count: int


class StorageCommitmentView(StorageCommitmentSummary):
    event_type: int | None = Field(
        description="1 all committed, 2 failures exist (PS3.4 Table J.3-2); null until checked"
    )
    reported_via: str = Field(description="'same association', 'new association' or ''")
    requested: tuple[CommittedInstanceView, ...]
    committed: tuple[CommittedInstanceView, ...]
    failed: tuple[FailedInstanceView, ...]
    delivery: CommitmentDeliveryView | None


# ---------------------------------------------------------------------------------------------
# Operations (the database side of GET /metrics)


class OperationalGauges(_View):
    """What the database says about the whole deployment, read at each metrics scrape."""

    outbox_pending: int
    outbox_oldest_created_at: datetime | None
    mpps_by_status: dict[str, int]
