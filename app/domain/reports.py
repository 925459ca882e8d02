"""What the broker reports to the RIS when an exam's performed procedure step changes.

A :class:`StatusReport` is built by :mod:`app.services.mpps` per order and stored in the outbox
as JSON (``to_payload``); the HL7 sender reads it back with ``from_payload`` and formats it.
The JSON shape is the one outbox rows have always had, so rows written by an older broker still
deliver; a key missing from an old row reads as empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from app.domain.dicom_json import JsonDataset, sequence_items, string_of
from app.domain.mpps import DISCONTINUATION_REASON_KEY, MppsStatus

MPPS_STATUS = "mpps-status"  # outbox kind of a StatusReport payload
MPPS_CREATE = "mpps-create"  # outbox kinds of a ForwardedMpps payload
MPPS_SET = "mpps-set"


def _text(data: Mapping[str, Any], key: str) -> str:
    return str(data.get(key) or "")


def _texts(cls: Any, data: Mapping[str, Any]) -> dict[str, str]:
    """Every field of a text-only record from ``data``, a missing or null one as ``""``."""
    return {f.name: _text(data, f.name) for f in fields(cls)}


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class ReportedPatient:
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    name: str = ""  # DICOM PN, component groups ``=``-separated
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ReportedPatient:
        return cls(**_texts(cls, data))


@dataclass(frozen=True)
class ReportedOrder:
    accession_number: str = ""
    placer_order_number: str = ""
    filler_order_number: str = ""

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ReportedOrder:
        return cls(**_texts(cls, data))


@dataclass(frozen=True)
class ReportedProcedure:
    """One requested procedure of the order and the scheduled step the exam performed."""

    requested_procedure_id: str = ""
    study_instance_uid: str = ""
    sps_id: str = ""
    modality: str = ""

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ReportedProcedure:
        return cls(**_texts(cls, data))


@dataclass(frozen=True)
class CodedReason:
    """A code item: the discontinuation reason (0040,0281) of PS3.4 F.7.2.2."""

    code_value: str = ""
    coding_scheme: str = ""
    code_meaning: str = ""

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> CodedReason:
        return cls(**_texts(cls, data))

    @classmethod
    def of_mpps(cls, attributes: JsonDataset) -> CodedReason | None:
        """The first item of the MPPS's Discontinuation Reason Code Sequence (0040,0281)."""
        items = sequence_items(attributes, DISCONTINUATION_REASON_KEY)
        if not items:
            return None
        code = items[0]
        return cls(
            code_value=string_of(code, "00080100"),
            coding_scheme=string_of(code, "00080102"),
            code_meaning=string_of(code, "00080104"),
        )


@dataclass(frozen=True)
class StatusReport:
    """One order's performed procedure step status, as the RIS is told it.

    ``at`` is ``YYYYMMDDHHMMSS``: the performed start for IN PROGRESS, the end otherwise.
    ``procedures`` may be empty (the order is still named).
    """

    KIND: ClassVar[str] = MPPS_STATUS

    mpps_uid: str
    status: MppsStatus
    at: str = ""
    patient: ReportedPatient = ReportedPatient()
    order: ReportedOrder = ReportedOrder()
    procedures: tuple[ReportedProcedure, ...] = ()
    discontinuation_reason: CodedReason | None = None

    def to_payload(self) -> dict[str, Any]:
        """The outbox JSON (see :mod:`app.services.outbox`)."""
        reason = self.discontinuation_reason
        return {
            "mpps_uid": self.mpps_uid,
            "status": self.status.value,
            "at": self.at,
            "patient": asdict(self.patient),
            "order": asdict(self.order),
            "procedures": [asdict(p) for p in self.procedures],
            "discontinuation_reason": asdict(reason) if reason is not None else None,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StatusReport:
        """Read an outbox payload; ``ValueError`` when its status is not a PPS status."""
        status = payload.get("status")
        try:
            pps_status = MppsStatus(_text(payload, "status"))
        except ValueError:
            raise ValueError(f"unknown PPS status '{status}'") from None
        procedures = payload.get("procedures") or ()
        reason = payload.get("discontinuation_reason")
        return cls(
            mpps_uid=_text(payload, "mpps_uid"),
            status=pps_status,
            at=_text(payload, "at"),
            patient=ReportedPatient.from_payload(_mapping(payload, "patient")),
            order=ReportedOrder.from_payload(_mapping(payload, "order")),
            procedures=tuple(
                ReportedProcedure.from_payload(p) for p in procedures if isinstance(p, Mapping)
            ),
            discontinuation_reason=(
                CodedReason.from_payload(reason) if isinstance(reason, Mapping) else None
            ),
        )


@dataclass(frozen=True)
class ForwardedMpps:
    """An N-CREATE (kind ``mpps-create``) or N-SET (``mpps-set``) for a downstream MPPS SCP,
    as the outbox keeps it: the SOP Instance UID and the attribute or modification list."""

    KINDS: ClassVar[tuple[str, str]] = (MPPS_CREATE, MPPS_SET)

    sop_instance_uid: str
    dataset: JsonDataset

    def to_payload(self) -> dict[str, Any]:
        return {"sop_instance_uid": self.sop_instance_uid, "dataset": self.dataset}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ForwardedMpps:
        """``ValueError`` when the payload lacks the UID or the data set."""
        uid, dataset = _text(payload, "sop_instance_uid"), payload.get("dataset")
        if not uid or not isinstance(dataset, Mapping):
            raise ValueError("an MPPS forward payload needs sop_instance_uid and dataset")
        return cls(uid, dict(dataset))
