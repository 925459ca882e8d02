"""Orders with their requested procedures and steps as plain JSON, for people and the web page.

An order created here is an ordinary worklist item: modalities find its steps by C-FIND and
``/api/mwlitems`` shows them. Cancelling keeps the steps, marked CANCELED.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep
from app.api.limits import DbId, DbOffset
from app.domain.status import SpsStatus
from app.schemas import CancelIn, OrderIn, OrderUpdate, OrderView, StepDetails, StepUpdate, StepView
from app.services import orders
from app.services.orders import StepChanges

router = APIRouter(tags=["orders"])

MAX_LIMIT = 1000


@router.post("/api/orders", status_code=201, summary="Create an order with procedures and steps")
def create_order(body: OrderIn, session: SessionDep, principal: SchedulerDep) -> OrderView:
    pk = orders.create_order(
        session,
        patient=body.patient.to_domain(),
        order=body.order_data(),
        procedures=body.procedure_data(),
        actor=principal.actor(),
    )
    return orders.get_order(session, pk=pk)


@router.get("/api/orders", summary="Find orders")
def list_orders(
    session: SessionDep,
    accession_number: str = "",
    patient_id: str = "",
    status: Annotated[
        SpsStatus | None, Query(description="orders having a step in this status")
    ] = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: DbOffset = 0,
) -> list[OrderView]:
    return orders.list_orders(
        session,
        accession_number=accession_number,
        patient_id=patient_id,
        status=status,
        limit=limit,
        offset=offset,
    )


@router.get("/api/orders/{pk}", summary="One order")
def get_order(pk: DbId, session: SessionDep) -> OrderView:
    return orders.get_order(session, pk=pk)


@router.patch("/api/orders/{pk}", summary="Change order fields; fields not sent stay")
def update_order(
    pk: DbId, body: OrderUpdate, session: SessionDep, principal: SchedulerDep
) -> OrderView:
    return orders.update_order(session, pk=pk, changes=body.changes(), actor=principal.actor())


@router.post("/api/orders/{pk}/cancel", summary="Cancel every step of the order not yet final")
def cancel_order(
    pk: DbId, session: SessionDep, principal: SchedulerDep, body: CancelIn | None = None
) -> OrderView:
    reason = body.reason if body is not None else ""
    return orders.cancel_order(session, pk=pk, actor=principal.actor(), reason=reason)


@router.get("/api/steps/{pk}", summary="One scheduled procedure step")
def get_step(pk: DbId, session: SessionDep) -> StepView:
    return orders.get_step(session, pk=pk)


@router.get(
    "/api/steps/{pk}/details",
    summary="A step with its order, patient, history, MPPS and HL7 messages",
)
def get_step_details(pk: DbId, session: SessionDep) -> StepDetails:
    return orders.step_details(session, pk=pk)


@router.patch("/api/steps/{pk}", summary="Reschedule or correct a step (not its status)")
def update_step(
    pk: DbId, body: StepUpdate, session: SessionDep, principal: SchedulerDep
) -> StepView:
    changes = StepChanges(**body.model_dump(exclude_none=True))
    return orders.update_step(session, pk=pk, changes=changes, actor=principal.actor())


@router.post("/api/steps/{pk}/status/{status}", summary="Move a step to another status")
def set_step_status(
    pk: DbId, status: SpsStatus, session: SessionDep, principal: SchedulerDep
) -> StepView:
    return orders.set_step_status(session, pk=pk, status=status, actor=principal.actor())
