"""``/api/mpps``: performed procedure steps as the modalities reported them, and reconciliation."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep, SettingsDep
from app.api.limits import DbId, DbOffset
from app.schemas import LinkIn, MppsSummary, MppsView
from app.services import mpps

router = APIRouter(prefix="/api/mpps", tags=["MPPS"])

MAX_LIMIT = 1000


@router.get("", summary="Find performed procedure steps (newest first)")
def list_mpps(
    session: SessionDep,
    status: Literal["", "IN PROGRESS", "COMPLETED", "DISCONTINUED"] = "",
    unlinked: bool = Query(False, description="only those awaiting reconciliation"),
    station: str = Query("", description="Performed Station AE Title"),
    step: Annotated[
        DbId | None, Query(description="only those performing this scheduled step (id)")
    ] = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[MppsSummary]:
    return list(
        mpps.list_mpps(
            session,
            status=status,
            unlinked=unlinked,
            station=station,
            step_pk=step,
            limit=limit,
            offset=offset,
        )
    )


@router.get("/{sop_instance_uid}", summary="One MPPS: status, linked steps, full attributes")
def get_mpps(sop_instance_uid: str, session: SessionDep) -> MppsView:
    return mpps.get(session, uid=sop_instance_uid)


@router.post("/{sop_instance_uid}/link", summary="Link an MPPS to scheduled steps")
def link_mpps(
    sop_instance_uid: str,
    body: LinkIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: SchedulerDep,
) -> MppsView:
    steps = [(s.study_instance_uid, s.sps_id) for s in body.steps]
    delivery = mpps.Delivery.from_settings(settings.outbox)
    return mpps.link(
        session, uid=sop_instance_uid, steps=steps, delivery=delivery, actor=principal.actor()
    )
