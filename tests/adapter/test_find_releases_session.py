"""A C-FIND reads its matches in one short transaction and closes it before the first Pending
response: a modality that reads slowly (or stalls) holds no database connection."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydicom.dataset import Dataset
from sqlmodel import Session

from app.config import WorklistSettings
from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.items import item_from_json
from app.domain.status import AuditSource
from app.services import worklist
from dicom_scp.handlers import ScpContext, handle_find
from tests.support.items import mwl_item


class CountingFactory:
    """A session factory that knows how many of its sessions are open."""

    def __init__(self, factory: SessionFactory) -> None:
        self._factory = factory
        self.open = 0

    def __call__(self) -> Session:
        session = self._factory()
        self.open += 1
        close = session.close

        def counted_close() -> None:
            self.open -= 1
            close()

        session.close = counted_close  # type: ignore[method-assign]
        return session


def test_no_session_is_open_while_responses_stream(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        for n in range(3):
            data = item_from_json(mwl_item(sps_id=f"SPS{n}", study_uid=f"1.2.3.{n}"))
            worklist.upsert_item(session, data=data, actor=Actor(AuditSource.CLI))
    counting = CountingFactory(session_factory)
    ctx = ScpContext(WorklistSettings(max_results=2), counting)  # type: ignore[arg-type]
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.ScheduledProcedureStepSequence = [Dataset()]
    identifier.ScheduledProcedureStepSequence[0].ScheduledStationAETitle = "CT01"
    event: Any = SimpleNamespace(
        identifier=identifier,
        is_cancelled=False,
        assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="CT01")),
    )
    statuses = []
    for status, _response in handle_find(event, ctx):
        assert counting.open == 0  # the transaction ended before this answer went out
        statuses.append(int(status) if isinstance(status, int) else int(status.Status))
    assert statuses == [0xFF00, 0xFF00, 0xA700]  # the cap still holds
