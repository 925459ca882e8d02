"""The staff board: one day's scheduled steps with their order and patient, as flat rows.

Read-only. One query joins step, procedure, order and patient; the day is a range on the indexed
``start_datetime`` (``YYYYMMDDHHMMSS``), the station filter goes through the indexed
``scheduled_station_ae_title`` table and the modality through ``ix_sps_modality_start``.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from app.domain.errors import ValidationError
from app.domain.matching import VALUE_SEPARATOR, person_name_key
from app.domain.status import SpsStatus
from app.models import (
    ImagingServiceRequest,
    Patient,
    RequestedProcedure,
    ScheduledProcedureStep,
    ScheduledStationAETitle,
)
from app.schemas import BoardRow
from app.services import storage
from app.services.sql import LIKE_ESCAPE, like_pattern

MAX_ROWS = 2000  # a day of one department is far below this; a bound keeps a page responsive


def _check_day(day: str) -> None:
    if len(day) != 8 or not day.isdigit():
        raise ValidationError(f"'{day}' is not a date (YYYYMMDD)", field="date")
    try:
        datetime.strptime(day, "%Y%m%d")
    except ValueError:
        raise ValidationError(f"'{day}' is not a calendar date", field="date") from None


def day_board(
    session: Session,
    *,
    day: str,
    modality: str = "",
    station: str = "",
    q: str = "",
    limit: int = MAX_ROWS,
) -> list[BoardRow]:
    """Steps starting on ``day`` (``YYYYMMDD``) in start order.

    ``modality`` and ``station`` (an AE title) are exact; ``q`` finds a patient name part
    (case-insensitive), or the start of a patient ID or an Accession Number.
    """
    _check_day(day)
    step = ScheduledProcedureStep
    statement = (
        select(step, RequestedProcedure, ImagingServiceRequest, Patient)
        .join(RequestedProcedure, col(step.procedure_pk) == RequestedProcedure.id)
        .join(ImagingServiceRequest, col(RequestedProcedure.order_pk) == ImagingServiceRequest.id)
        .join(Patient, col(ImagingServiceRequest.patient_pk) == Patient.id)
        .where(col(step.start_datetime) >= day, col(step.start_datetime) <= day + "999999")
    )
    if modality.strip():
        statement = statement.where(step.modality == modality.strip())
    if station.strip():
        at_station = select(ScheduledStationAETitle.sps_pk).where(
            ScheduledStationAETitle.ae_title == station.strip()
        )
        statement = statement.where(col(step.id).in_(at_station))
    text = q.strip()
    if text:
        prefix = like_pattern(text.replace("*", "").replace("?", "")) + "%"
        # "doe jane", "Doe, Jane" and "DOE^JANE" all find DOE^JANE: parts in order, anywhere.
        parts = re.split(r"[\s,^]+", person_name_key(text).replace("*", "").replace("?", ""))
        contains = "%" + "%".join(like_pattern(part) for part in parts if part)
        statement = statement.where(
            or_(
                col(Patient.name_key).like(contains + "%", escape=LIKE_ESCAPE),
                col(Patient.patient_id).like(prefix, escape=LIKE_ESCAPE),
                col(ImagingServiceRequest.accession_number).like(prefix, escape=LIKE_ESCAPE),
            )
        )
    statement = statement.order_by(col(step.start_datetime), col(step.id)).limit(limit)
    found = list(session.exec(statement))
    images = storage.images_by_procedure(session, list({p.id for _, p, _, _ in found if p.id}))
    rows = []
    for sps, procedure, order, patient in found:
        assert sps.id is not None and order.id is not None and patient.id is not None
        rows.append(
            BoardRow(
                step_id=sps.id,
                order_id=order.id,
                patient_pk=patient.id,
                patient_id=patient.patient_id,
                patient_name=patient.name,
                birth_date=patient.birth_date,
                sex=patient.sex,
                accession_number=order.accession_number,
                requested_procedure_id=procedure.requested_procedure_id,
                procedure_description=procedure.description,
                study_instance_uid=procedure.study_instance_uid,
                sps_id=sps.sps_id,
                station_ae_titles=tuple(sps.station_ae_title.split(VALUE_SEPARATOR)),
                station_name=sps.station_name,
                modality=sps.modality,
                start_date=sps.start_datetime[:8],
                start_time=sps.start_datetime[8:],
                status=SpsStatus(sps.status),
                description=sps.description,
                updated_at=sps.updated_at,
                images=images.get(procedure.id) if procedure.id is not None else None,
            )
        )
    return rows
