"""``/api/mpps``: performed procedure steps as the modalities reported them, and reconciliation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SchedulerDep, SessionDep, SettingsDep
from app.services import mpps

router = APIRouter(prefix="/api/mpps", tags=["MPPS"])

MAX_LIMIT = 1000


class LinkedStepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step_pk: int
    study_instance_uid: str
    sps_id: str
    accession_number: str
    status: str


class MppsSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sop_instance_uid: str
    status: str
    performed_station_ae_title: str
    modality: str
    start_datetime: str
    end_datetime: str
    created_at: datetime
    updated_at: datetime
    linked_steps: list[LinkedStepOut]


class MppsDetail(MppsSummary):
    attributes: dict[str, Any] = Field(description="the whole MPPS data set, DICOM JSON")


class StepRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_instance_uid: str = Field(min_length=1, max_length=64)
    sps_id: str = Field(min_length=1, max_length=16)


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[StepRef] = Field(min_length=1)


@router.get("", summary="Find performed procedure steps (newest first)")
def list_mpps(
    session: SessionDep,
    status: Literal["", "IN PROGRESS", "COMPLETED", "DISCONTINUED"] = "",
    unlinked: bool = Query(False, description="only those awaiting reconciliation"),
    station: str = Query("", description="Performed Station AE Title"),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0),
) -> list[MppsSummary]:
    found = mpps.list_mpps(
        session, status=status, unlinked=unlinked, station=station, limit=limit, offset=offset
    )
    return [MppsSummary.model_validate(v) for v in found]


@router.get("/{sop_instance_uid}", summary="One MPPS: status, linked steps, full attributes")
def get_mpps(sop_instance_uid: str, session: SessionDep) -> MppsDetail:
    return MppsDetail.model_validate(mpps.get(session, uid=sop_instance_uid))


@router.post("/{sop_instance_uid}/link", summary="Link an MPPS to scheduled steps")
def link_mpps(
    sop_instance_uid: str,
    body: LinkIn,
    session: SessionDep,
    settings: SettingsDep,
    _p: SchedulerDep,
) -> MppsDetail:
    steps = [(s.study_instance_uid, s.sps_id) for s in body.steps]
    found = mpps.link(
        session, uid=sop_instance_uid, steps=steps, delivery=mpps.Delivery.from_settings(settings)
    )
    return MppsDetail.model_validate(found)
