"""Request-scoped dependencies: one database session per request, and who is asking.

A request authenticates with the ``mwl_session`` cookie (the page; set by ``POST
/api/auth/login``) or ``Authorization: Bearer <token>`` (programs; ``mwl-broker token add``).
Cookie requests that change something (any method but GET/HEAD/OPTIONS) also carry the
session's CSRF token in the ``X-CSRF-Token`` header (or a ``csrf_token`` form field); bearer
requests need none, since a browser never adds that header on its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import cache
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.db import session_scope
from app.domain.access import Principal, Role
from app.domain.actor import Actor
from app.services import users

SESSION_COOKIE = "mwl_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared for the OpenAPI schema only (the Authorize button of /docs); get_principal reads
# the header and the cookie itself so it can also be called directly.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="API token: mwl-broker token add"
)
cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description="sign-in session set by POST /api/auth/login",
)


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work, committed before the response goes out (``scope=
    "function"`` below): a 2xx is never sent for a change that then fails to commit, and a
    client that reads right after its write sees it."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def session_lifetime(settings: Settings) -> timedelta:
    return timedelta(hours=settings.http.session_lifetime_hours)


def unauthorized(detail: str = "sign in or send an API token") -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _resolve(request: Request) -> Principal | None:
    """The principal of the bearer token or else the session cookie; ``None`` when neither."""
    settings = get_settings(request)
    with session_scope(request.app.state.session_factory) as session:
        secret = bearer_secret(request)
        if secret is not None:
            return users.principal_for_token(session, secret=secret)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return users.lookup_session(session, secret=cookie, lifetime=session_lifetime(settings))
    return None


async def _csrf_ok(request: Request, expected: str | None) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FORM_FIELD)
            sent = value if isinstance(value, str) else None
    return bool(sent and expected and secrets.compare_digest(sent.encode(), expected.encode()))


async def get_principal(
    request: Request,
    _bearer: Annotated[Any, Security(bearer_scheme)] = None,
    _cookie: Annotated[Any, Security(cookie_scheme)] = None,
) -> Principal:
    """Who is asking: raises 401 (``WWW-Authenticate: Bearer``) without valid credentials, 403
    for a cookie request that changes something without the session's CSRF token.

    Callable directly as ``await get_principal(request)``; the other parameters only document
    the security schemes in OpenAPI.
    """
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    had_bearer = bearer_secret(request) is not None
    principal = await run_in_threadpool(_resolve, request)
    if principal is None:
        if had_bearer:
            raise unauthorized("the API token is unknown or revoked")
        if request.cookies.get(SESSION_COOKIE):
            raise unauthorized("the session has expired; sign in again")
        raise unauthorized()
    if (
        principal.kind == "user"
        and request.method not in SAFE_METHODS
        and not await _csrf_ok(request, principal.csrf_token)
    ):
        raise HTTPException(status_code=403, detail="CSRF token missing or wrong")
    request.state.principal = principal
    return principal


async def optional_principal(request: Request) -> Principal | None:
    """The principal when the request carries valid credentials, else ``None`` (no CSRF check:
    for pages that render differently when signed in; never use it to allow a change)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    return await run_in_threadpool(_resolve, request)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_actor(principal: PrincipalDep) -> Actor:
    """Who a request writes as (the audit trail's actor): the user, or ``token:NAME``.

    Authenticates but checks no role: a writing route declares ``SchedulerDep``/``AdminDep``
    and passes ``principal.actor()``.
    """
    return principal.actor()


ActorDep = Annotated[Actor, Depends(get_actor)]


@cache
def require(role: Role) -> Callable[..., Any]:
    """A dependency that answers 403 unless the principal's role includes ``role``.

    One callable per role, so FastAPI runs it once per request however often it is declared.
    """

    async def dependency(principal: PrincipalDep) -> Principal:
        if not principal.allows(role):
            detail = f"role {role.value} required; you are {principal.role.value}"
            raise HTTPException(status_code=403, detail=detail)
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency


ViewerDep = Annotated[Principal, Depends(require(Role.VIEWER))]
SchedulerDep = Annotated[Principal, Depends(require(Role.SCHEDULER))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
