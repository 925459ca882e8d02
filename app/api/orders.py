"""Orders with their requested procedures and steps as plain JSON, for people and the web page.

An order created here is an ordinary worklist item: modalities find its steps by C-FIND and
``/api/mwlitems`` shows them. Cancelling keeps the steps, marked CANCELED.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SchedulerDep, SessionDep
from app.domain.status import AuditSource, SpsStatus
from app.schemas import OrderIn, OrderOut, OrderUpdate, StepOut, StepUpdate
from app.services import orders
from app.services.orders import StepChanges

router = APIRouter(tags=["orders"])

MAX_LIMIT = 1000


@router.post("/api/orders", status_code=201, summary="Create an order with procedures and steps")
def create_order(body: OrderIn, session: SessionDep, _p: SchedulerDep) -> OrderOut:
    pk = orders.create_order(
        session,
        patient=body.patient.to_domain(),
        order=body.order_data(),
        procedures=body.procedure_data(),
        source=AuditSource.REST,
    )
    return OrderOut.model_validate(orders.get_order(session, pk=pk))


@router.get("/api/orders", summary="Find orders")
def list_orders(
    session: SessionDep,
    accession_number: str = "",
    patient_id: str = "",
    status: Annotated[
        SpsStatus | None, Query(description="orders having a step in this status")
    ] = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0),
) -> list[OrderOut]:
    found = orders.list_orders(
        session,
        accession_number=accession_number,
        patient_id=patient_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [OrderOut.model_validate(view) for view in found]


@router.get("/api/orders/{pk}", summary="One order")
def get_order(pk: int, session: SessionDep) -> OrderOut:
    return OrderOut.model_validate(orders.get_order(session, pk=pk))


@router.patch("/api/orders/{pk}", summary="Change order fields; fields not sent stay")
def update_order(pk: int, body: OrderUpdate, session: SessionDep, _p: SchedulerDep) -> OrderOut:
    view = orders.update_order(session, pk=pk, changes=body.changes(), source=AuditSource.REST)
    return OrderOut.model_validate(view)


@router.post("/api/orders/{pk}/cancel", summary="Cancel every step of the order not yet final")
def cancel_order(pk: int, session: SessionDep, _p: SchedulerDep) -> OrderOut:
    return OrderOut.model_validate(orders.cancel_order(session, pk=pk, source=AuditSource.REST))


@router.get("/api/steps/{pk}", summary="One scheduled procedure step")
def get_step(pk: int, session: SessionDep) -> StepOut:
    return StepOut.model_validate(orders.get_step(session, pk=pk))


@router.patch("/api/steps/{pk}", summary="Reschedule or correct a step (not its status)")
def update_step(pk: int, body: StepUpdate, session: SessionDep, _p: SchedulerDep) -> StepOut:
    changes = StepChanges(**body.model_dump(exclude_none=True))
    view = orders.update_step(session, pk=pk, changes=changes, source=AuditSource.REST)
    return StepOut.model_validate(view)


@router.post("/api/steps/{pk}/status/{status}", summary="Move a step to another status")
def set_step_status(pk: int, status: SpsStatus, session: SessionDep, _p: SchedulerDep) -> StepOut:
    view = orders.set_step_status(session, pk=pk, status=status, source=AuditSource.REST)
    return StepOut.model_validate(view)
