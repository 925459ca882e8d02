"""MPPS forwarding goes to the remote AEs with the ``mpps`` service too, beside
``BROKER_MPPS_FORWARD``, without duplicates (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlmodel import col, select

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.mpps import StartPerformedStep
from app.domain.status import AuditSource
from app.models import OutboxMessage
from app.services import mpps, remote_aes, worklist
from tests.support.items import mwl_item
from tests.support.mpps import as_json, n_create

ADMIN = Actor(AuditSource.REST, "alice")


def _remote(
    session_factory: SessionFactory, title: str, services: tuple[str, ...], *, tls: bool = False
) -> None:
    with session_scope(session_factory) as s:
        data = remote_aes.RemoteAeData(title, "127.0.0.1", 11113, tls, services)
        remote_aes.create_remote_ae(s, data=data, actor=ADMIN)


def test_mpps_goes_to_remote_aes_with_the_mpps_service(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        worklist.upsert_item(s, data=item_from_json(mwl_item()), actor=ADMIN)
    _remote(session_factory, "PACS", ("store", "mpps"))
    _remote(session_factory, "RIS", ("mpps",))  # also in BROKER_MPPS_FORWARD: sent once
    _remote(session_factory, "ARCHIVE", ("store",))
    _remote(session_factory, "SECURE", ("mpps",), tls=True)
    delivery = mpps.Delivery(forward=("RIS@127.0.0.1:11113",))
    with session_scope(session_factory) as s:
        command = StartPerformedStep.from_json("1.2.9.1", as_json(n_create()))
        mpps.create(s, command=command, delivery=delivery, actor=Actor(AuditSource.DICOM, "CT01"))
    with session_scope(session_factory) as s:
        rows = s.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
        destinations = [r.destination for r in rows if r.channel == "dicom"]
    assert destinations == ["RIS@127.0.0.1:11113", "PACS@127.0.0.1:11113", "SECURE@127.0.0.1:11113"]
