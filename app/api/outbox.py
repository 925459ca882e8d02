"""``/api/outbox``: the messages waiting for (or done with) delivery, and a manual retry.

The list leaves the payload out (it carries patient data); one message's detail includes it.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from app.api.deps import AdminDep, SessionDep
from app.api.limits import DbId, DbOffset
from app.schemas import OutboxSummary, OutboxView
from app.services import outbox

router = APIRouter(prefix="/api/outbox", tags=["Outbox"])

MAX_LIMIT = 1000


@router.get("", summary="Outbox messages (newest first), without payloads")
def list_messages(
    session: SessionDep,
    state: Literal["", "pending", "sent"] = "",
    channel: Literal["", "hl7", "dicom"] = "",
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[OutboxSummary]:
    return outbox.list_messages(session, state=state, channel=channel, limit=limit, offset=offset)


@router.get("/{pk}", summary="One outbox message with its payload")
def get_message(pk: DbId, session: SessionDep) -> OutboxView:
    return outbox.get_message(session, pk=pk)


@router.post("/{pk}/retry", summary="Make a pending message due now (409 once sent)")
def retry(pk: DbId, session: SessionDep, _admin: AdminDep) -> OutboxSummary:
    # The after-commit hook wakes the delivery worker once this is committed.
    return outbox.retry_now(session, pk=pk)
