"""``/api/auth``: sign in and out, who am I, and the first-admin setup.

Sign-in sets the ``mwl_session`` cookie (HttpOnly, SameSite=Strict, Path=/, Secure when
``BROKER_COOKIE_SECURE``) and returns the session's CSRF token, which the page sends back in
``X-CSRF-Token`` on every change. Failed sign-ins are rate limited per user name and per client
address (see ``app.login_limit``).

First start: while no user exists, each process logs a one-time setup code at WARNING level;
``POST /api/auth/setup`` with that code creates the first admin and signs them in.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import (
    SESSION_COOKIE,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    session_lifetime,
)
from app.config import Settings
from app.db import SessionFactory, session_scope
from app.domain.access import AuthError, ForbiddenError, RateLimitedError, Role
from app.domain.actor import Actor
from app.domain.errors import ConflictError
from app.domain.status import AuditSource
from app.login_limit import LoginLimiter, login_keys
from app.services import users

LOG = logging.getLogger(__name__)

router = APIRouter(prefix="/api/auth", tags=["sign-in"])

BAD_CREDENTIALS = "wrong user name or password"


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SetupIn(LoginIn):
    setup_code: str = Field(min_length=1, max_length=128)


class SignedIn(BaseModel):
    name: str
    role: Role
    csrf_token: str


class Me(BaseModel):
    name: str
    role: Role
    kind: str
    csrf_token: str | None


class SetupState(BaseModel):
    needed: bool


def install(app: FastAPI, settings: Settings, session_factory: SessionFactory) -> None:
    """Per-process state: the login limiter and, while no user exists, the setup code."""
    app.state.login_limiter = LoginLimiter(
        settings.http.login_max_failures, settings.http.login_window_seconds
    )
    app.state.setup_code = secrets.token_urlsafe(12)
    try:
        with session_scope(session_factory) as session:
            needed = users.count_users(session) == 0
    except Exception:  # not migrated yet: serve refuses to start anyway; say nothing here
        LOG.debug("cannot count users", exc_info=True)
        return
    if needed:
        LOG.warning(
            "no user exists yet: open the web page and sign up the first admin with the "
            "one-time setup code %s (or run: mwl-broker user add NAME --role admin)",
            app.state.setup_code,
        )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limiter(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter


def _reserve_attempt(limiter: LoginLimiter, keys: tuple[str, ...]) -> None:
    wait = limiter.attempt(keys)
    if wait is not None:
        raise RateLimitedError(
            f"too many failed attempts; try again in {wait} seconds", retry_after=wait
        )


def _sign_in(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep, pk: int
) -> SignedIn:
    started = users.start_session(session, user_pk=pk, lifetime=session_lifetime(settings))
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        users.end_session(session, secret=old)
    session.commit()  # the cookie works as soon as the client has it
    response.set_cookie(
        SESSION_COOKIE,
        started.secret,
        httponly=True,
        samesite="strict",
        path="/",
        secure=settings.http.cookie_secure,
    )
    principal = started.principal
    assert principal.csrf_token is not None
    return SignedIn(name=principal.name, role=principal.role, csrf_token=principal.csrf_token)


@router.post(
    "/login",
    summary="Sign in: sets the mwl_session cookie, returns the CSRF token",
    responses={401: {"description": "wrong user name or password"}, 429: {}},
)
def login(
    body: LoginIn,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> SignedIn:
    limiter = _limiter(request)
    keys = login_keys(body.username, _address(request))
    _reserve_attempt(limiter, keys)
    user = users.authenticate(session, username=body.username, password=body.password)
    if user is None:
        LOG.info("failed sign-in from %s", _address(request))
        raise AuthError(BAD_CREDENTIALS)
    limiter.succeeded(keys)
    return _sign_in(request, response, session, settings, user.id)


@router.post("/logout", status_code=204, summary="Sign out: ends the session, clears the cookie")
def logout(principal: PrincipalDep, request: Request, session: SessionDep) -> Response:
    response = Response(status_code=204)
    cookie = request.cookies.get(SESSION_COOKIE)
    if principal.kind == "user" and cookie:
        users.end_session(session, secret=cookie)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me", summary="Who is signed in (401 when nobody)")
def me(principal: PrincipalDep) -> Me:
    return Me(
        name=principal.name,
        role=principal.role,
        kind=principal.kind,
        csrf_token=principal.csrf_token,
    )


@router.get("/setup", summary="Whether the first admin still has to be created")
def setup_state(session: SessionDep) -> SetupState:
    return SetupState(needed=users.count_users(session) == 0)


@router.post(
    "/setup",
    summary="Create the first admin with the setup code from the log, and sign in",
    responses={403: {"description": "wrong setup code"}, 409: {"description": "done already"}},
)
def setup(
    body: SetupIn,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> SignedIn:
    if users.count_users(session) > 0:
        raise ConflictError("the first admin exists already; sign in")
    limiter = _limiter(request)
    keys = (login_keys("", _address(request))[1],)
    _reserve_attempt(limiter, keys)
    given, expected = body.setup_code.strip().encode(), request.app.state.setup_code.encode()
    if not secrets.compare_digest(given, expected):
        raise ForbiddenError("wrong setup code; it is in the broker's log")
    limiter.succeeded(keys)
    user = users.create_user(
        session,
        username=body.username,
        password=body.password,
        role=Role.ADMIN,
        actor=Actor(AuditSource.WEB, body.username.strip()),
    )
    LOG.warning("first admin %s created; the setup code is spent", user.username)
    return _sign_in(request, response, session, settings, user.id)
