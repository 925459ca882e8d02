"""``/api/users`` and ``/api/tokens``: accounts and API tokens (admin only).

A token's secret is in the answer to its creation and nowhere else, ever.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from app.api.deps import SESSION_COOKIE, AdminDep, SessionDep, require
from app.api.limits import DbId
from app.domain.access import Role
from app.schemas import TokenCreated, TokenIn, TokenView, UserIn, UserPatch, UserView
from app.services import users

router = APIRouter(tags=["users and tokens"], dependencies=[Depends(require(Role.ADMIN))])


@router.get("/api/users", summary="All users")
def list_users(session: SessionDep) -> list[UserView]:
    return users.list_users(session)


@router.post("/api/users", status_code=201, summary="Add a user")
def create_user(body: UserIn, session: SessionDep, principal: AdminDep) -> UserView:
    view = users.create_user(
        session,
        username=body.username,
        password=body.password,
        role=body.role,
        actor=principal.actor(),
    )
    return view


@router.patch(
    "/api/users/{pk}",
    summary="Change role, active or password; deactivating or a new password ends sessions",
)
def update_user(
    pk: DbId, body: UserPatch, session: SessionDep, principal: AdminDep, request: Request
) -> UserView:
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
    return view


@router.delete("/api/users/{pk}", status_code=204, summary="Remove a user and their sessions")
def delete_user(pk: DbId, session: SessionDep, principal: AdminDep) -> Response:
    users.delete_user(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)


@router.get("/api/tokens", summary="All API tokens (never their secrets)")
def list_tokens(session: SessionDep) -> list[TokenView]:
    return users.list_tokens(session)


@router.post("/api/tokens", status_code=201, summary="Create a token; the secret is shown once")
def create_token(body: TokenIn, session: SessionDep, principal: AdminDep) -> TokenCreated:
    new = users.create_token(session, name=body.name, role=body.role, actor=principal.actor())
    return TokenCreated(**new.token.model_dump(), secret=new.secret)


@router.delete("/api/tokens/{pk}", status_code=204, summary="Revoke an API token")
def revoke_token(pk: DbId, session: SessionDep, principal: AdminDep) -> Response:
    users.revoke_token(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)
