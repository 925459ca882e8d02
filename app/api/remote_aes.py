"""``/api/remote-aes``: known remote AEs (C-MOVE destinations, commitment peers, MPPS
forwarding)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import AdminDep, SessionDep
from app.api.limits import DbId
from app.schemas import RemoteAeIn, RemoteAeView
from app.services import remote_aes

router = APIRouter(prefix="/api/remote-aes", tags=["remote AEs"])


def _data(body: RemoteAeIn) -> remote_aes.RemoteAeData:
    return remote_aes.RemoteAeData(
        body.ae_title, body.host, body.port, body.tls, tuple(body.services), body.description
    )


@router.get("", summary="All known remote AEs")
def list_remote_aes(session: SessionDep) -> list[RemoteAeView]:
    return remote_aes.list_remote_aes(session)


@router.post("", status_code=201, summary="Add a remote AE")
def create_remote_ae(body: RemoteAeIn, session: SessionDep, principal: AdminDep) -> RemoteAeView:
    return remote_aes.create_remote_ae(session, data=_data(body), actor=principal.actor())


@router.get("/{pk}", summary="One remote AE")
def get_remote_ae(pk: DbId, session: SessionDep) -> RemoteAeView:
    return remote_aes.get_remote_ae(session, pk=pk)


@router.put("/{pk}", summary="Replace a remote AE")
def update_remote_ae(
    pk: DbId, body: RemoteAeIn, session: SessionDep, principal: AdminDep
) -> RemoteAeView:
    return remote_aes.update_remote_ae(session, pk=pk, data=_data(body), actor=principal.actor())


@router.delete("/{pk}", status_code=204, summary="Remove a remote AE")
def delete_remote_ae(pk: DbId, session: SessionDep, principal: AdminDep) -> Response:
    remote_aes.delete_remote_ae(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)
