"""``/api/storage-commitments``: Storage Commitment requests and their results (PS3.4 J.3)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep, SettingsDep
from app.api.limits import DbOffset
from app.schemas import StorageCommitmentSummary, StorageCommitmentView
from app.services import commitment

router = APIRouter(prefix="/api/storage-commitments", tags=["Storage commitment"])

MAX_LIMIT = 1000


@router.get("", summary="Find storage commitment requests (newest first)")
def list_storage_commitments(
    session: SessionDep,
    requester: str = Query("", max_length=16, description="requester (calling) AE title"),
    state: Literal["", "pending", "checked", "reported", "undeliverable"] = "",
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[StorageCommitmentSummary]:
    return commitment.list_commitments(
        session, requester=requester, state=state, limit=limit, offset=offset
    )


@router.get(
    "/{transaction_uid}",
    summary="One request: committed and failed instances with reasons, and its delivery",
)
def get_storage_commitment(transaction_uid: str, session: SessionDep) -> StorageCommitmentView:
    return commitment.get(session, transaction_uid=transaction_uid)


@router.post(
    "/{transaction_uid}/report",
    summary="Queue an undeliverable result's report again (once its requester is a known AE)",
)
def report_storage_commitment(
    transaction_uid: str, session: SessionDep, settings: SettingsDep, principal: SchedulerDep
) -> StorageCommitmentView:
    return commitment.report_again(
        session, transaction_uid=transaction_uid, retrieve_ae_title=settings.dicom.ae_title
    )
