"""Retention of stored studies (``BROKER_STORAGE_RETENTION_DAYS``).

A study whose last instance arrived more than N days ago is deleted: rows first (one
transaction, audited), then its files, so a failed commit never leaves rows without files. With
``BROKER_STORAGE_RETENTION_REQUIRES_COMMITMENT`` only studies whose every instance a storage
commitment in state ``reported`` committed (PS3.4 J.3: the requester took responsibility back
only for what the SCP reported as committed) are deleted. Logged with UIDs only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from app.db import SessionFactory, session_scope
from app.domain.actor import SYSTEM
from app.filestore import FileStore
from app.models import StorageCommitment, StoredInstance, StoredSeries, StoredStudy, utcnow
from app.services import write
from app.services.storage import ENTITY

LOG = logging.getLogger(__name__)
REPORTED = "reported"
BATCH = 100  # studies per transaction


def _expired(session: Session, cutoff: datetime, limit: int) -> list[StoredStudy]:
    last = (
        select(StoredSeries.study_pk, func.max(col(StoredInstance.received_at)).label("last"))
        .join(StoredInstance, col(StoredInstance.series_pk) == StoredSeries.id)
        .group_by(col(StoredSeries.study_pk))
        .subquery()
    )
    statement = (
        select(StoredStudy)
        .join(last, last.c.study_pk == StoredStudy.id)
        .where(last.c.last < cutoff)
        .order_by(col(StoredStudy.id))
        .limit(limit)
    )
    return list(session.exec(statement))


def _failed(result: dict[str, Any]) -> set[str]:
    items = result.get("failed", []) if isinstance(result, dict) else []
    return {str(i.get("instance", "")) for i in items if isinstance(i, dict)}


def committed_instances(session: Session, sop_uids: Iterable[str]) -> set[str]:
    """The SOP Instance UIDs among ``sop_uids`` that a reported storage commitment committed."""
    wanted = set(sop_uids)
    committed: set[str] = set()
    for request in session.exec(
        select(StorageCommitment).where(StorageCommitment.state == REPORTED)
    ):
        result = request.result if isinstance(request.result, dict) else {}
        if isinstance(result.get("committed"), list):  # the reported Referenced SOP Sequence
            refs = [r for r in result["committed"] if isinstance(r, dict)]
        else:
            failed = _failed(result)
            refs = [r for r in request.requested if str(r.get("instance", "")) not in failed]
        committed |= {str(r.get("instance", "")) for r in refs} & wanted
    return committed


def _instances(session: Session, study_pk: int) -> list[StoredInstance]:
    return list(
        session.exec(
            select(StoredInstance)
            .join(StoredSeries, col(StoredInstance.series_pk) == StoredSeries.id)
            .where(StoredSeries.study_pk == study_pk)
        )
    )


def _delete_rows(session: Session, study: StoredStudy, instances: list[StoredInstance]) -> None:
    assert study.id is not None
    series_pks = select(StoredSeries.id).where(StoredSeries.study_pk == study.id)
    session.execute(delete(StoredInstance).where(col(StoredInstance.series_pk).in_(series_pks)))
    session.execute(delete(StoredSeries).where(col(StoredSeries.study_pk) == study.id))
    session.delete(study)
    write.audit(
        session,
        actor=SYSTEM,
        action="delete",
        entity=ENTITY,
        entity_pk=study.id,
        detail={
            "study_instance_uid": study.study_instance_uid,
            "instances": len(instances),
            "reason": "retention",
        },
    )


def purge_studies(
    factory: SessionFactory,
    *,
    files: FileStore,
    retention_days: int,
    requires_commitment: bool = False,
    now: datetime | None = None,
) -> list[str]:
    """Delete the studies past retention; their Study Instance UIDs. 0 days: nothing."""
    if retention_days <= 0:
        return []
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    removed: list[str] = []
    skipped: set[int] = set()
    while True:
        paths: list[str] = []
        batch: list[str] = []
        with session_scope(factory) as session:
            studies = [
                s for s in _expired(session, cutoff, BATCH + len(skipped)) if s.id not in skipped
            ]
            for study in studies:
                assert study.id is not None
                instances = _instances(session, study.id)
                uids = [i.sop_instance_uid for i in instances]
                if requires_commitment and committed_instances(session, uids) != set(uids):
                    skipped.add(study.id)
                    continue
                _delete_rows(session, study, instances)
                paths += [i.path for i in instances]
                batch.append(study.study_instance_uid)
        for path in paths:
            files.remove(path)
        for uid in batch:
            LOG.info("retention: study %s deleted", uid)
        removed += batch
        if not studies:
            return removed
