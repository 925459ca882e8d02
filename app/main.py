"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from app.api import (
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
)
from app.api import events as event_stream
from app.config import Settings
from app.db import SessionFactory
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
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.listeners = listeners if listeners is not None else {}
    app.state.events = events or EventBus()
    errors.install(app)
    routers = (
        health.router,
        mwlitems.router,
        patients.router,
        orders.router,
        stations.router,
        hl7.router,
        outbox.router,
        mpps.router,
        board.router,
        event_stream.router,
    )
    for router in routers:
        app.include_router(router)
    return app
