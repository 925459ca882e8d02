"""``/api/audit``: the audit trail of every change, from every interface."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query

from app.api.deps import SessionDep
from app.api.limits import DbId, DbOffset
from app.schemas import AuditView
from app.services import audit

router = APIRouter(prefix="/api/audit", tags=["audit trail"])

MAX_LIMIT = 1000


@router.get("", summary="Find audit events (newest first)")
def list_events(
    session: SessionDep,
    entity: Literal[
        "",
        "patient",
        "order",
        "requested_procedure",
        "scheduled_procedure_step",
        "mpps",
        "station",
        "worklist_policy",
        "remote_ae",
        "stored_study",
    ] = "",
    entity_pk: DbId | None = None,
    source: Literal["", "REST", "WEB", "HL7", "DICOM", "CLI", "SYSTEM"] = "",
    actor: str = Query("", max_length=128, description="user, token:NAME, calling AE, MSH-3"),
    context: str = Query("", max_length=199, description="HL7 MSH-10 or MPPS SOP Instance UID"),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[AuditView]:
    return audit.list_events(
        session,
        entity=entity,
        entity_pk=entity_pk,
        source=source,
        actor=actor,
        context=context,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
