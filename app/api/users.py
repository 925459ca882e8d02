"""``/api/users`` and ``/api/tokens``: accounts and API tokens (admin only).

A token's secret is in the answer to its creation and nowhere else, ever.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SESSION_COOKIE, AdminDep, SessionDep, require
from app.api.limits import DbId
from app.domain.access import Role
from app.services import users

router = APIRouter(tags=["users and tokens"], dependencies=[Depends(require(Role.ADMIN))])


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = Role.VIEWER


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    role: Role = Role.VIEWER


class TokenCreated(TokenOut):
    secret: str = Field(description="send as 'Authorization: Bearer <secret>'; shown only now")


@router.get("/api/users", summary="All users")
def list_users(session: SessionDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in users.list_users(session)]


@router.post("/api/users", status_code=201, summary="Add a user")
def create_user(body: UserIn, session: SessionDep, principal: AdminDep) -> UserOut:
    view = users.create_user(
        session,
        username=body.username,
        password=body.password,
        role=body.role,
        actor=principal.actor(),
    )
    return UserOut.model_validate(view)


@router.patch(
    "/api/users/{pk}",
    summary="Change role, active or password; deactivating or a new password ends sessions",
)
def update_user(
    pk: DbId, body: UserPatch, session: SessionDep, principal: AdminDep, request: Request
) -> UserOut:
    actor = principal.actor()
    view = users.get_user(session, pk=pk)
    if body.role is not None:
        view = users.set_role(session, pk=pk, role=body.role, actor=actor)
    if body.active is not None:
        view = users.set_active(session, pk=pk, active=body.active, actor=actor)
    if body.password is not None:
        own = principal.user_pk == pk
        keep = request.cookies.get(SESSION_COOKIE) if own else None
        view = users.set_password(
            session, pk=pk, password=body.password, actor=actor, keep_secret=keep
        )
    return UserOut.model_validate(view)


@router.delete("/api/users/{pk}", status_code=204, summary="Remove a user and their sessions")
def delete_user(pk: DbId, session: SessionDep, principal: AdminDep) -> Response:
    users.delete_user(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)


@router.get("/api/tokens", summary="All API tokens (never their secrets)")
def list_tokens(session: SessionDep) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in users.list_tokens(session)]


@router.post("/api/tokens", status_code=201, summary="Create a token; the secret is shown once")
def create_token(body: TokenIn, session: SessionDep, principal: AdminDep) -> TokenCreated:
    new = users.create_token(session, name=body.name, role=body.role, actor=principal.actor())
    return TokenCreated.model_validate({**vars(new.token), "secret": new.secret})


@router.delete("/api/tokens/{pk}", status_code=204, summary="Revoke an API token")
def revoke_token(pk: DbId, session: SessionDep, principal: AdminDep) -> Response:
    users.revoke_token(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)
