"""Worklist items as DICOM JSON, in the shape of dcm4chee-arc's MWL RS.

``POST /api/mwlitems`` creates, or updates by Study Instance UID + SPS ID; ``GET`` searches by
attribute keyword with the worklist matching rules (but, unlike C-FIND, returns steps in any
status unless a status is given); single items are addressed by ``{study_uid}/{sps_id}``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import SchedulerDep, SessionDep, SettingsDep
from app.api.limits import DbOffset
from app.domain.dicom_json import validate_json_dataset
from app.domain.errors import InvalidQueryError, ValidationError
from app.domain.items import item_from_json
from app.domain.status import SpsStatus
from app.domain.worklist import SUPPORTED_MATCHING_KEYS, parse_worklist_query
from app.services import worklist

router = APIRouter(prefix="/api/mwlitems", tags=["worklist items (DICOM JSON)"])

DICOM_JSON = "application/dicom+json"
_PAGING = frozenset({"limit", "offset"})
MAX_LIMIT = 1000

_ITEM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            DICOM_JSON: {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
        "description": "One worklist item as a DICOM JSON object (PS3.18 Annex F) with one "
        "Scheduled Procedure Step Sequence (0040,0100) item.",
    }
}


class DicomJSONResponse(JSONResponse):
    """JSON as ``application/dicom+json`` (PS3.18 F); documents the media type in OpenAPI."""

    media_type = DICOM_JSON


def _dicom_json(content: Any, status_code: int = 200) -> JSONResponse:
    return DicomJSONResponse(content=content, status_code=status_code)


async def _read_item(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (DICOM_JSON, "application/json"):
        raise ValidationError(f"send {DICOM_JSON} or application/json, not '{content_type}'")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return validate_json_dataset(body)


@router.post(
    "",
    summary="Create or update one worklist item",
    openapi_extra=_ITEM_BODY,
    response_class=DicomJSONResponse,
    responses={201: {"description": "Created", "content": {DICOM_JSON: {}}}},
)
async def post_item(request: Request, session: SessionDep, principal: SchedulerDep) -> JSONResponse:
    data = item_from_json(await _read_item(request))
    stored = worklist.upsert_item(session, data=data, actor=principal.actor())
    return _dicom_json(stored.item, 201 if stored.created else 200)


@router.get(
    "", summary="Search worklist items by attribute keyword", response_class=DicomJSONResponse
)
def search_items(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> JSONResponse:
    keys = {k: v for k, v in request.query_params.items() if k not in _PAGING}
    unknown = sorted(set(keys) - set(SUPPORTED_MATCHING_KEYS))
    if unknown:
        raise InvalidQueryError(
            f"unsupported matching key(s): {', '.join(unknown)}; "
            f"supported: {', '.join(SUPPORTED_MATCHING_KEYS)}",
            field=unknown[0],
        )
    query = parse_worklist_query(
        keys, name_case_insensitive=settings.worklist.name_case_insensitive
    )
    query = dataclasses.replace(query, final_steps_by_default=True)
    items = []
    for item in worklist.find(session, query=query, offset=offset):
        items.append(item)
        if len(items) >= limit:
            break
    return _dicom_json(items)


@router.get("/{study_uid}/{sps_id}", summary="One worklist item", response_class=DicomJSONResponse)
def get_item(study_uid: str, sps_id: str, session: SessionDep) -> JSONResponse:
    return _dicom_json(worklist.get_item(session, study_uid=study_uid, sps_id=sps_id))


@router.delete("/{study_uid}/{sps_id}", status_code=204, summary="Delete one worklist item")
def delete_item(
    study_uid: str, sps_id: str, session: SessionDep, principal: SchedulerDep
) -> Response:
    worklist.delete_item(session, study_uid=study_uid, sps_id=sps_id, actor=principal.actor())
    return Response(status_code=204)


@router.post(
    "/{study_uid}/{sps_id}/status/{status}",
    summary="Set the SPS Status",
    response_class=DicomJSONResponse,
)
def set_status(
    study_uid: str, sps_id: str, status: SpsStatus, session: SessionDep, principal: SchedulerDep
) -> JSONResponse:
    item = worklist.set_status(
        session, study_uid=study_uid, sps_id=sps_id, status=status, actor=principal.actor()
    )
    return _dicom_json(item)
