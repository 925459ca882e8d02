"""Worklist policies per calling AE: the table, and the C-FIND that applies them.

A row says how the worklist query of one calling AE title is changed before it runs
(``app.domain.worklist_policy``); calling AEs without a row get the default policy
(``BROKER_MWL_DEFAULT_POLICY``). ``find`` resolves the policy and runs the changed query in the
caller's session, so a C-FIND sees one consistent database state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset
from app.domain.errors import ConflictError, DomainError, NotFoundError, ValidationError
from app.domain.items import validate_ae_titles
from app.domain.worklist import WorklistQuery
from app.domain.worklist_policy import PolicyKind, WorklistPolicy, apply_policy
from app.models import CallingAePolicy
from app.schemas import WorklistPolicyView
from app.services import worklist, write

LOG = logging.getLogger(__name__)

ENTITY = "worklist_policy"
# CS (PS3.5 6.2): upper case letters, digits, space and underscore, at most 16 characters.
_CS_RE = re.compile(r"^[A-Z0-9 _]{1,16}$")


@dataclass(frozen=True)
class PolicyData:
    calling_ae_title: str
    policy: str
    station_ae_titles: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()


def _ae_title(value: str, field: str) -> str:
    try:
        (title,) = validate_ae_titles([value])
    except DomainError as exc:
        message = exc.message.replace("ScheduledStationAETitle", field)
        raise type(exc)(message, field=field) from None
    return title


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _validate(data: PolicyData) -> PolicyData:
    calling_ae = _ae_title(data.calling_ae_title, "calling_ae_title")
    try:
        kind = PolicyKind(data.policy)
    except ValueError:
        allowed = ", ".join(k.value for k in PolicyKind)
        raise ValidationError(
            f"policy: '{data.policy}' is not one of {allowed}", field="policy"
        ) from None
    stations = _unique([_ae_title(v, "station_ae_titles") for v in data.station_ae_titles])
    modalities = _unique([v.strip().upper() for v in data.modalities])
    for modality in modalities:
        if not _CS_RE.match(modality):
            raise ValidationError(
                f"modalities: '{modality}' is not a CS value (letters, digits, space, "
                "underscore; at most 16)",
                field="modalities",
            )
    if kind is not PolicyKind.RESTRICT:
        for field, values in (("station_ae_titles", stations), ("modalities", modalities)):
            if values:
                raise ValidationError(
                    f"{field} are used only by the restrict policy, not by {kind.value}",
                    field=field,
                )
    return PolicyData(calling_ae, kind.value, stations, modalities)


def _values(data: PolicyData) -> dict[str, Any]:
    return {
        "calling_ae_title": data.calling_ae_title,
        "policy": data.policy,
        "station_ae_titles": list(data.station_ae_titles),
        "modalities": list(data.modalities),
    }


def _view(row: CallingAePolicy) -> WorklistPolicyView:
    return WorklistPolicyView.model_validate(row)


def _row(session: Session, pk: int) -> CallingAePolicy:
    row = session.get(CallingAePolicy, pk)
    if row is None:
        raise NotFoundError(f"no worklist policy {pk}")
    return row


def _flush(session: Session, data: PolicyData) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(
            f"calling AE {data.calling_ae_title} already has a worklist policy",
            field="calling_ae_title",
        ) from None


def list_policies(session: Session) -> list[WorklistPolicyView]:
    rows = session.exec(select(CallingAePolicy).order_by(col(CallingAePolicy.calling_ae_title)))
    return [_view(row) for row in rows]


def get_policy(session: Session, *, pk: int) -> WorklistPolicyView:
    return _view(_row(session, pk))


def create_policy(session: Session, *, data: PolicyData, actor: Actor) -> WorklistPolicyView:
    data = _validate(data)
    row = CallingAePolicy(**_values(data))
    session.add(row)
    _flush(session, data)
    assert row.id is not None
    write.audit(
        session, actor=actor, action="create", entity=ENTITY, entity_pk=row.id, after=_values(data)
    )
    return _view(row)


def update_policy(
    session: Session, *, pk: int, data: PolicyData, actor: Actor
) -> WorklistPolicyView:
    row = _row(session, pk)
    data = _validate(data)
    changed = write.assign(row, _values(data))
    session.add(row)
    _flush(session, data)
    write.audit_update(session, actor, ENTITY, pk, changed)
    return _view(row)


def delete_policy(session: Session, *, pk: int, actor: Actor) -> None:
    row = _row(session, pk)
    before = {
        "calling_ae_title": row.calling_ae_title,
        "policy": row.policy,
        "station_ae_titles": list(row.station_ae_titles),
        "modalities": list(row.modalities),
    }
    session.delete(row)
    write.audit(session, actor=actor, action="delete", entity=ENTITY, entity_pk=pk, before=before)


_POLICY_OF = (
    sa_select(
        col(CallingAePolicy.policy),
        col(CallingAePolicy.station_ae_titles),
        col(CallingAePolicy.modalities),
    )
    .where(col(CallingAePolicy.calling_ae_title) == bindparam("calling_ae"))
    .limit(1)
)  # built once: read on every C-FIND


def policy_for(session: Session, *, calling_ae: str, default: PolicyKind) -> WorklistPolicy:
    """The policy of ``calling_ae`` (exact title, spaces around it not significant)."""
    row = session.connection().execute(_POLICY_OF, {"calling_ae": calling_ae.strip()}).first()
    if row is None:
        return WorklistPolicy(PolicyKind(default))
    policy, stations, modalities = row
    return WorklistPolicy(PolicyKind(policy), tuple(stations), tuple(modalities))


def find_matches(
    session: Session,
    *,
    query: WorklistQuery,
    calling_ae: str,
    default: PolicyKind,
    cache: worklist.ItemCache | None = None,
) -> Iterator[worklist.Match]:
    """``worklist.find_matches`` for a C-FIND from ``calling_ae``, under that AE's policy."""
    policy = policy_for(session, calling_ae=calling_ae, default=default)
    if policy.kind is not PolicyKind.NONE:
        LOG.info("C-FIND from %s: worklist policy %s", calling_ae, policy.describe(calling_ae))
    applied = apply_policy(query, policy, calling_ae)
    yield from worklist.find_matches(session, query=applied, cache=cache)


def find(
    session: Session, *, query: WorklistQuery, calling_ae: str, default: PolicyKind
) -> Iterator[JsonDataset]:
    """The items of ``find_matches``."""
    for match in find_matches(session, query=query, calling_ae=calling_ae, default=default):
        yield match.item
