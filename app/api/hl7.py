"""``/api/hl7/messages``: every inbound HL7 message with its outcome and ACK (troubleshooting)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query

from app.api.deps import SessionDep
from app.api.limits import DbId, DbOffset
from app.schemas import Hl7MessageSummary, Hl7MessageView
from app.services import hl7_log

router = APIRouter(prefix="/api/hl7/messages", tags=["HL7 message log"])

MAX_LIMIT = 1000


@router.get("", summary="Search the message log (newest first)")
def list_messages(
    session: SessionDep,
    control_id: str = "",
    sending_application: str = "",
    message_type: str = Query("", description="e.g. ORM^O01"),
    outcome: Literal["", "AA", "AE", "AR"] = "",
    since: datetime | None = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[Hl7MessageSummary]:
    return hl7_log.list_messages(
        session,
        control_id=control_id,
        sending_application=sending_application,
        message_type=message_type,
        outcome=outcome,
        since=since,
        limit=limit,
        offset=offset,
    )


@router.get("/{pk}", summary="One message, raw, with the ACK sent")
def get_message(pk: DbId, session: SessionDep) -> Hl7MessageView:
    return hl7_log.get_message(session, pk=pk)
