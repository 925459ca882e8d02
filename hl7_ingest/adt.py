"""ADT A01/A04/A05/A08/A28/A29/A31/A40/A47 -> patient commands.

IHE RAD-1 (Patient Registration: A01 admit, A04 register, A05 pre-admit) and RAD-12 (Patient
Update: A08 update, A40 merge; A47 change of identifier); from master patient indexes the
person events A28 add (as a registration), A31 update (as A08) and A29 delete. PID is read by
:func:`hl7_ingest.datatypes.patient_from_pid` (shared with the order messages).

Messages are read by plain splitting (see ``hl7_ingest.parse``), not through hl7apy objects.
"""

from __future__ import annotations

from app.domain.intake import (
    IntakeCommand,
    PatientDeletion,
    PatientIdentifierChange,
    PatientMerge,
    PatientRegistration,
    PatientUpdate,
)
from hl7_ingest.datatypes import patient_from_pid, pid_segment
from hl7_ingest.errors import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    FieldWarning,
    MessageError,
)
from hl7_ingest.parse import Envelope, Hl7Message

# ---------------------------------------------------------------------------------------------
# ADT events

REGISTRATION_EVENTS = frozenset({"A01", "A04", "A05", "A28"})  # A28 add person information
UPDATE_EVENTS = frozenset({"A08", "A31"})  # A31 update person information (MPIs send it)


def _prior_identifier(msg: Hl7Message) -> tuple[str, str]:
    """MRG-1 (first repetition): prior patient ID and its issuer; 101 at MRG^1^1 if absent."""
    mrgs = msg.all("MRG")
    prior_id = mrgs[0].get(1) if mrgs else ""
    if not prior_id:
        raise MessageError(
            REQUIRED_FIELD_MISSING, "MRG-1 Prior Patient Identifier is missing", "MRG^1^1"
        )
    if len(mrgs) > 1:
        raise MessageError(
            APPLICATION_INTERNAL_ERROR,
            f"{len(mrgs)} PID/MRG pairs in one message; send one merge per message",
            "MRG^2",
        )
    return prior_id, mrgs[0].get(1, 4)


def adt_command(
    msg: Hl7Message, env: Envelope, warnings: list[FieldWarning] | None = None
) -> IntakeCommand:
    """ADT A01/A04/A05/A28 -> PatientRegistration, A08/A31 -> PatientUpdate, A29 ->
    PatientDeletion, A40 -> PatientMerge, A47 -> PatientIdentifierChange. PID-3 is always
    required; PID-5 for registrations and updates.
    """
    event = env.trigger_event
    needs_name = event in REGISTRATION_EVENTS or event in UPDATE_EVENTS
    patient = patient_from_pid(pid_segment(msg), require_id=True, require_name=needs_name)
    if event in REGISTRATION_EVENTS:
        return PatientRegistration(patient=patient)
    if event in UPDATE_EVENTS:
        return PatientUpdate(patient=patient)
    if event == "A29":
        return PatientDeletion(patient=patient)
    prior_id, prior_issuer = _prior_identifier(msg)
    if event == "A40":
        return PatientMerge(surviving=patient, prior_patient_id=prior_id, prior_issuer=prior_issuer)
    return PatientIdentifierChange(
        patient=patient, prior_patient_id=prior_id, prior_issuer=prior_issuer
    )
