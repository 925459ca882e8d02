"""``/api/worklist-policies``: how the worklist query of each calling AE title is changed.

Reading needs a viewer (included in ``create_app`` with the viewer requirement); every write
needs an admin, as the station table does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api.deps import AdminDep, SessionDep
from app.schemas import WorklistPolicyIn, WorklistPolicyView
from app.services import worklist_policies

router = APIRouter(prefix="/api/worklist-policies", tags=["worklist policies"])

DB_INT_MAX = 2**31 - 1
PolicyPk = Annotated[int, Path(ge=1, le=DB_INT_MAX)]


def _data(body: WorklistPolicyIn) -> worklist_policies.PolicyData:
    return worklist_policies.PolicyData(
        body.calling_ae_title, body.policy, tuple(body.station_ae_titles), tuple(body.modalities)
    )


@router.get("", summary="All worklist policies (calling AEs without one get the default)")
def list_policies(session: SessionDep) -> list[WorklistPolicyView]:
    return worklist_policies.list_policies(session)


@router.post("", status_code=201, summary="Add the worklist policy of a calling AE")
def create_policy(
    body: WorklistPolicyIn, session: SessionDep, principal: AdminDep
) -> WorklistPolicyView:
    return worklist_policies.create_policy(session, data=_data(body), actor=principal.actor())


@router.get("/{pk}", summary="One worklist policy")
def get_policy(pk: PolicyPk, session: SessionDep) -> WorklistPolicyView:
    return worklist_policies.get_policy(session, pk=pk)


@router.put("/{pk}", summary="Replace a worklist policy")
def update_policy(
    pk: PolicyPk, body: WorklistPolicyIn, session: SessionDep, principal: AdminDep
) -> WorklistPolicyView:
    return worklist_policies.update_policy(
        session, pk=pk, data=_data(body), actor=principal.actor()
    )


@router.delete("/{pk}", status_code=204, summary="Remove a worklist policy (back to the default)")
def delete_policy(pk: PolicyPk, session: SessionDep, principal: AdminDep) -> Response:
    worklist_policies.delete_policy(session, pk=pk, actor=principal.actor())
    return Response(status_code=204)
