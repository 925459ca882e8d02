"""Users, API tokens and sign-in sessions: the only write path for ``app_user``, ``api_token``
and ``web_session``.

Passwords are hashed with argon2id (argon2-cffi's defaults). Token and session secrets are
handed out once and only their SHA-256 is stored. Every function takes the caller's session
and returns frozen views, never ORM rows.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from app.domain.access import Principal, Role
from app.domain.actor import Actor
from app.domain.errors import ConflictError, NotFoundError, ValidationError
from app.models import ApiToken, AppUser, WebSession, utcnow
from app.schemas import TokenView, UserView
from app.services.write import audit

TOKEN_PREFIX = "mwl_"
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 64
# Sliding expiry and "last used" are written at most this often per session or token, so a
# page polling every second does not write a row every second.
TOUCH_INTERVAL = timedelta(seconds=60)

_HASHER = PasswordHasher()  # argon2id


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so failures take the same time either way.

    Made on first use, not at import: one argon2 hash takes 64 MiB for a moment, and processes
    that never sign anyone in (DICOM workers, ``import-wl``) should not pay it.
    """
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewToken:
    """A created token; ``secret`` is shown this once and never stored."""

    token: TokenView
    secret: str


@dataclass(frozen=True)
class SessionStart:
    """A new sign-in session: ``secret`` goes in the cookie; ``principal`` has the CSRF token."""

    secret: str
    principal: Principal
    expires_at: datetime


def _user_view(user: AppUser) -> UserView:
    assert user.id is not None
    return UserView.model_validate(user)


def _token_view(token: ApiToken) -> TokenView:
    assert token.id is not None
    return TokenView.model_validate(token)


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_name(value: str, what: str) -> str:
    name = value.strip()
    if not name:
        raise ValidationError(f"{what} is required", field=what)
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"{what} has at most {MAX_NAME_LENGTH} characters", field=what)
    if not name.isprintable() or any(c.isspace() for c in name):
        raise ValidationError(f"{what} has no spaces or control characters", field=what)
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"a password has at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    return password


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationError(
            f"role is one of {', '.join(r.value for r in Role)}", field="role"
        ) from None


def _record(
    session: Session, actor: Actor, action: str, entity: str, pk: int, **detail: str
) -> None:
    audit(session, actor=actor, action=action, entity=entity, entity_pk=pk, detail=detail)


# ---------------------------------------------------------------- users


def count_users(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(AppUser)).one())


def list_users(session: Session) -> list[UserView]:
    rows = session.exec(select(AppUser).order_by(col(AppUser.username))).all()
    return [_user_view(u) for u in rows]


def _get_user(session: Session, pk: int) -> AppUser:
    user = session.get(AppUser, pk)
    if user is None:
        raise NotFoundError(f"no user {pk}")
    return user


def get_user(session: Session, *, pk: int) -> UserView:
    return _user_view(_get_user(session, pk))


def create_user(
    session: Session, *, username: str, password: str, role: Role | str, actor: Actor
) -> UserView:
    name = _check_name(username, "username")
    user = AppUser(
        username=name,
        password_hash=_HASHER.hash(_check_password(password)),
        role=_role(role).value,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"a user named {name} already exists", field="username") from None
    assert user.id is not None
    _record(session, actor, "create", "user", user.id, username=name, role=user.role)
    return _user_view(user)


def _active_admins(session: Session) -> int:
    query = (
        select(func.count())
        .select_from(AppUser)
        .where(col(AppUser.role) == Role.ADMIN.value, col(AppUser.active).is_(True))
    )
    return int(session.exec(query).one())


def _guard_last_admin(session: Session, user: AppUser) -> None:
    if user.role == Role.ADMIN.value and user.active and _active_admins(session) <= 1:
        raise ConflictError("the last active admin cannot be removed, demoted or deactivated")


def end_user_sessions(session: Session, *, user_pk: int, keep_secret: str | None = None) -> int:
    """End every session of a user (all but ``keep_secret``'s); returns how many ended."""
    query = delete(WebSession).where(col(WebSession.user_pk) == user_pk)
    if keep_secret is not None:
        query = query.where(col(WebSession.id) != sha256(keep_secret))
    return int(session.exec(query).rowcount)


def set_password(
    session: Session, *, pk: int, password: str, actor: Actor, keep_secret: str | None = None
) -> UserView:
    """Change a password and end the user's other sessions (``keep_secret``: the caller's)."""
    user = _get_user(session, pk)
    user.password_hash = _HASHER.hash(_check_password(password))
    session.add(user)
    end_user_sessions(session, user_pk=pk, keep_secret=keep_secret)
    _record(session, actor, "set_password", "user", pk)
    return _user_view(user)


def set_role(session: Session, *, pk: int, role: Role | str, actor: Actor) -> UserView:
    user = _get_user(session, pk)
    new = _role(role)
    if new != Role.ADMIN:
        _guard_last_admin(session, user)
    user.role = new.value
    session.add(user)
    _record(session, actor, "set_role", "user", pk, role=new.value)
    return _user_view(user)


def set_active(session: Session, *, pk: int, active: bool, actor: Actor) -> UserView:
    """Activate or deactivate; deactivating ends the user's sessions at once."""
    user = _get_user(session, pk)
    if not active:
        _guard_last_admin(session, user)
        end_user_sessions(session, user_pk=pk)
    user.active = active
    session.add(user)
    _record(session, actor, "activate" if active else "deactivate", "user", pk)
    return _user_view(user)


def deactivate_user(session: Session, *, pk: int, actor: Actor) -> UserView:
    return set_active(session, pk=pk, active=False, actor=actor)


def delete_user(session: Session, *, pk: int, actor: Actor) -> None:
    user = _get_user(session, pk)
    _guard_last_admin(session, user)
    end_user_sessions(session, user_pk=pk)
    session.delete(user)
    session.flush()
    _record(session, actor, "delete", "user", pk, username=user.username)


def authenticate(session: Session, *, username: str, password: str) -> UserView | None:
    """The active user with this password, else ``None`` (same work whether the user exists)."""
    user = session.exec(select(AppUser).where(AppUser.username == username.strip())).first()
    if user is None or not user.active:
        with contextlib.suppress(VerificationError, InvalidHashError):
            _HASHER.verify(_dummy_hash(), password)
        return None
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.last_login_at = utcnow()
    session.add(user)
    return _user_view(user)


# ---------------------------------------------------------------- API tokens


def create_token(session: Session, *, name: str, role: Role | str, actor: Actor) -> NewToken:
    """A new token; its secret (``mwl_`` + 40 URL-safe characters) is returned this once."""
    token_name = _check_name(name, "name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(30)  # 30 bytes -> 40 characters
    token = ApiToken(
        name=token_name,
        token_hash=sha256(secret),
        role=_role(role).value,
        created_by=str(actor),
    )
    session.add(token)
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"a token named {token_name} already exists", field="name") from None
    assert token.id is not None
    _record(session, actor, "create", "api_token", token.id, name=token_name, role=token.role)
    return NewToken(_token_view(token), secret)


def list_tokens(session: Session) -> list[TokenView]:
    rows = session.exec(select(ApiToken).order_by(col(ApiToken.name))).all()
    return [_token_view(t) for t in rows]


def _find_token(session: Session, pk: int | None, name: str | None) -> ApiToken:
    if pk is not None:
        token = session.get(ApiToken, pk)
    else:
        token = session.exec(select(ApiToken).where(ApiToken.name == name)).first()
    if token is None:
        raise NotFoundError(f"no token {pk if pk is not None else name}")
    return token


def revoke_token(
    session: Session, *, pk: int | None = None, name: str | None = None, actor: Actor
) -> TokenView:
    """Revoke by id or by name; the row stays (for the audit trail). Idempotent."""
    token = _find_token(session, pk, name)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        assert token.id is not None
        _record(session, actor, "revoke", "api_token", token.id, name=token.name)
    return _token_view(token)


def principal_for_token(session: Session, *, secret: str) -> Principal | None:
    """The principal of a valid, unrevoked token secret, else ``None``."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == sha256(secret))).first()
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
        token.last_used_at = now
        session.add(token)
    return Principal(token.name, Role(token.role), "token")


# ---------------------------------------------------------------- sign-in sessions


def start_session(session: Session, *, user_pk: int, lifetime: timedelta) -> SessionStart:
    """A new session for an active user; expired sessions are swept on the way."""
    user = _get_user(session, user_pk)
    if not user.active:
        raise ValidationError(f"user {user.username} is deactivated")
    now = utcnow()
    session.exec(delete(WebSession).where(col(WebSession.expires_at) <= now))
    secret = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    row = WebSession(
        id=sha256(secret),
        user_pk=user_pk,
        csrf_token=csrf,
        created_at=now,
        expires_at=now + lifetime,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    principal = Principal(user.username, Role(user.role), "user", user_pk, csrf)
    return SessionStart(secret, principal, row.expires_at)


def lookup_session(session: Session, *, secret: str, lifetime: timedelta) -> Principal | None:
    """The principal of a live session of an active user; each use slides its expiry."""
    if not secret:
        return None
    found = session.exec(
        select(WebSession, AppUser)
        .join(AppUser, col(AppUser.id) == col(WebSession.user_pk))
        .where(col(WebSession.id) == sha256(secret))
    ).first()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if row.expires_at <= now or not user.active:
        session.delete(row)
        return None
    if now - row.last_seen_at > TOUCH_INTERVAL:
        row.last_seen_at = now
        row.expires_at = now + lifetime
        session.add(row)
    return Principal(user.username, Role(user.role), "user", user.id, row.csrf_token)


def end_session(session: Session, *, secret: str) -> bool:
    """Sign out: remove the session; ``False`` when there was none."""
    result = session.exec(delete(WebSession).where(col(WebSession.id) == sha256(secret)))
    return bool(result.rowcount)


def list_sessions(session: Session, *, user_pk: int) -> Sequence[datetime]:
    """Expiry times of a user's live sessions (for tests and the admin page)."""
    now = utcnow()
    rows = session.exec(
        select(WebSession.expires_at).where(
            col(WebSession.user_pk) == user_pk, col(WebSession.expires_at) > now
        )
    ).all()
    return list(rows)
