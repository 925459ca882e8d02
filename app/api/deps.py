"""Request-scoped dependencies: one database session per request, and who is asking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from app.config import Settings
from app.db import session_scope
from app.domain.actor import Actor
from app.domain.status import AuditSource


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.session_factory) as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_actor() -> Actor:
    """Who a REST request writes as (the audit trail's actor)."""
    return Actor(AuditSource.REST)


ActorDep = Annotated[Actor, Depends(get_actor)]
