"""``/api/studies``: studies the Storage SCP received, and linking them to their orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep
from app.api.limits import DbId, DbOffset
from app.schemas import StoredStudyView, StudyLinkIn
from app.services import storage

router = APIRouter(prefix="/api/studies", tags=["studies"])

MAX_LIMIT = 1000


@router.get("", summary="Received studies (newest first)")
def list_studies(
    session: SessionDep,
    unlinked: bool = Query(False, description="only those matching no order (reconciliation)"),
    procedure: Annotated[
        DbId | None, Query(description="only those linked to this requested procedure (id)")
    ] = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[StoredStudyView]:
    return storage.list_studies(
        session, unlinked=unlinked, procedure_pk=procedure, limit=limit, offset=offset
    )


@router.get("/{pk}", summary="One received study with its series")
def get_study(pk: DbId, session: SessionDep) -> StoredStudyView:
    return storage.get_study(session, pk=pk)


@router.post("/{pk}/link", summary="Link a received study to a requested procedure or step")
def link_study(
    pk: DbId, body: StudyLinkIn, session: SessionDep, principal: SchedulerDep
) -> StoredStudyView:
    return storage.link_study(
        session,
        pk=pk,
        actor=principal.actor(),
        procedure_pk=body.procedure_id,
        step_pk=body.step_id,
    )
