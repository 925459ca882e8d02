"""``GET /api/health``: the database and every listener of this process."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.db import check_database

LOG = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/api/health", summary="State of the database and each listener")
def health(request: Request) -> JSONResponse:
    database_error = check_database(request.app.state.engine)
    listeners = {name: probe() for name, probe in request.app.state.listeners.items()}
    healthy = database_error is None and all(v["up"] for v in listeners.values())
    if database_error is not None:
        LOG.warning("health: database unavailable: %s", database_error)
    body = {
        "status": "ok" if healthy else "degraded",
        # The reason can name the database host and user: it goes to the log, not to anyone
        # who can reach this open endpoint.
        "database": {
            "up": database_error is None,
            "error": None if database_error is None else "unavailable",
        },
        "listeners": listeners,
    }
    return JSONResponse(status_code=200 if healthy else 503, content=body)
