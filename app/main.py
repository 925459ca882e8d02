"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy import Engine

from app.api import (
    audit,
    auth,
    board,
    errors,
    health,
    hl7,
    mpps,
    mwlitems,
    orders,
    outbox,
    patients,
    stations,
    storage_commitments,
    users,
    worklist_policies,
)
from app.api import events as event_stream
from app.api.deps import require
from app.api.limits import RequestLimitMiddleware
from app.config import Settings
from app.db import SessionFactory
from app.domain.access import Role
from app.events import EventBus

ListenerProbe = Callable[[], dict[str, Any]]


def create_app(
    settings: Settings,
    engine: Engine,
    session_factory: SessionFactory,
    listeners: dict[str, ListenerProbe] | None = None,
    events: EventBus | None = None,
) -> FastAPI:
    app = FastAPI(
        title="mwl-broker",
        summary="Modality Worklist broker: worklist items, orders and patients",
        description="Every endpoint but /api/health and sign-in needs a session cookie "
        "(POST /api/auth/login) or an API token (`Authorization: Bearer mwl_...`).",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.listeners = listeners if listeners is not None else {}
    app.state.events = events if events is not None else EventBus()
    errors.install(app)
    app.add_middleware(RequestLimitMiddleware, max_body_bytes=settings.http.max_body_bytes)
    auth.install(app, settings, session_factory)
    # Open: health and sign-in. users.router requires admin on its own.
    for router in (health.router, auth.router, users.router):
        app.include_router(router)
    # Patient data: viewer to read; each writing route requires more (scheduler or admin).
    viewer = [Depends(require(Role.VIEWER))]
    for router in (
        mwlitems.router,
        patients.router,
        orders.router,
        stations.router,
        worklist_policies.router,
        hl7.router,
        outbox.router,
        mpps.router,
        storage_commitments.router,
        audit.router,
        board.router,
        event_stream.router,
    ):
        app.include_router(router, dependencies=viewer)
    return app
