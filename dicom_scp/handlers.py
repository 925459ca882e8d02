"""DIMSE event handlers: decode, call one service, encode. Bound in ``dicom_scp.server``.

Every handler has a catch-all that logs the traceback and still answers the peer with a failure
status. Identifiers and responses are never logged at INFO: they carry patient data.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from itertools import islice
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom import evt

from app.config import WorklistSettings
from app.db import SessionFactory
from app.domain.errors import DomainError
from app.domain.worklist import parse_worklist_query
from app.services import worklist, worklist_policies
from app.services.mpps import Delivery
from app.services.worklist import ItemCache
from dicom_scp import mwl, mwl_encoded, qr
from dicom_scp.find_sender import serve_find
from dicom_scp.mwl_encoded import IMPLICIT_LITTLE, EncodedCache, Syntax
from dicom_scp.status import DimseStatus, find_failure, status_dataset
from dicom_scp.wire import MalformedDataSet, check_encoded

LOG = logging.getLogger(__name__)

# A Pending's identifier is encoded already (bytes, see ``find_sender``); other statuses
# carry a status Dataset or nothing.
FindResult = tuple[int | Dataset, Dataset | bytes | None]


@dataclass(frozen=True)
class ScpContext:
    worklist: WorklistSettings
    session_factory: SessionFactory
    delivery: Delivery = field(default_factory=Delivery)  # where MPPS changes go
    storage_dir: Path | None = None  # BROKER_STORAGE_DIR: the files C-MOVE and C-GET send
    client_tls: ssl.SSLContext | None = None  # app.tls.client_context: TLS remote AEs
    # Per listener: assembled items and their encoded answers, by item version.
    items: ItemCache = field(default_factory=ItemCache)
    encoded: EncodedCache = field(default_factory=EncodedCache)


def _peer(event: evt.Event) -> str:
    return str(event.assoc.requestor.ae_title)


def handle_echo(event: evt.Event, ctx: ScpContext) -> int:
    """Verification (PS3.4 Annex A): always success while the broker runs."""
    LOG.info("C-ECHO from %s", _peer(event))
    return int(DimseStatus.SUCCESS)


def _offending(error: DomainError) -> list[int] | None:
    if not error.field:
        return None
    tag = tag_for_keyword(error.field)
    return [tag] if tag is not None else None


def serve_find_event(event: evt.Event, ctx: ScpContext) -> Iterator[FindResult]:
    """The ``EVT_C_FIND`` handler: ``handle_find``, its Pendings sent by ``find_sender``."""
    return serve_find(handle_find(event, ctx), event)


def _syntax(event: Any) -> Syntax:
    """The presentation context's transfer syntax (the DICOM default when the event has no
    context, as in tests that call ``handle_find`` directly)."""
    context = getattr(event, "context", None)
    return Syntax.of(str(context.transfer_syntax)) if context is not None else IMPLICIT_LITTLE


def handle_find(event: evt.Event, ctx: ScpContext) -> Iterator[FindResult]:
    """Modality Worklist C-FIND (PS3.4 K.4.1.3): one Pending per match, then Success.

    Pending identifiers are yielded encoded (``mwl_encoded``), in the transfer syntax of the
    request's presentation context.

    Honours C-CANCEL between matches and caps the number of matches
    (``BROKER_MWL_MAX_RESULTS``): past it the stream ends with 0xA700, so the modality knows
    its list is incomplete. Query/Retrieve C-FINDs go to ``dicom_scp.qr``.
    """
    malformed = malformed_data_set(event, "Identifier")
    if malformed is not None:
        LOG.info(
            "C-FIND from %s refused: identifier cannot be decoded: %s", _peer(event), malformed
        )
        yield _undecodable_identifier(malformed), None
        return
    if qr.is_qr_find(event):
        yield from qr.handle_find(event, ctx)
        return
    try:
        identifier: Dataset = event.identifier
        request = mwl.parse_request(identifier)
        query = parse_worklist_query(
            request.keys, name_case_insensitive=ctx.worklist.name_case_insensitive
        )
    except DomainError as exc:
        LOG.info("C-FIND from %s refused: %s", _peer(event), exc.message)
        yield find_failure(exc, _offending(exc)), None
        return
    except Exception:
        LOG.exception("C-FIND from %s: identifier could not be decoded", _peer(event))
        yield (
            status_dataset(
                DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "identifier could not be decoded"
            ),
            None,
        )
        return
    yield from _stream_matches(event, ctx, identifier, request, query)


def malformed_data_set(event: evt.Event, parameter: str) -> MalformedDataSet | None:
    """Why the data set in the request's ``parameter`` (``Identifier``, ``AttributeList``...)
    cannot be decoded whole, or ``None`` (``dicom_scp.wire``)."""
    stream: BytesIO | None = getattr(getattr(event, "request", None), parameter, None)
    if stream is None:
        return None  # nothing was received (or a test's event carries a decoded data set)
    try:
        check_encoded(stream.getvalue(), event.context.transfer_syntax)
    except MalformedDataSet as exc:
        return exc
    return None


def _undecodable_identifier(error: MalformedDataSet) -> Dataset:
    """0xA900 (PS3.4 K.4.1.1.4: the identifier does not match the SOP Class): what cannot be
    decoded cannot be an identifier of Modality Worklist; the element at fault, when known,
    goes in Offending Element."""
    return status_dataset(
        DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        f"identifier cannot be decoded: {error}",
        [error.tag] if error.tag is not None else None,
    )


def _fetch_matches(event: evt.Event, ctx: ScpContext, query: Any) -> list[worklist.Match]:
    """The matches, at most one past the cap, read in one short transaction: the session is
    closed before the first response goes out, so a slow or stalled modality holds no database
    connection while it reads."""
    limit = ctx.worklist.max_results
    with ctx.session_factory() as session:
        found = worklist_policies.find_matches(
            session,
            query=query,
            calling_ae=_peer(event),
            default=ctx.worklist.default_policy,
            cache=ctx.items,
        )
        return list(islice(found, limit + 1)) if limit else list(found)


def _stream_matches(
    event: evt.Event, ctx: ScpContext, identifier: Dataset, request: mwl.MwlRequest, query: Any
) -> Iterator[FindResult]:
    limit = ctx.worklist.max_results
    sent = 0
    try:
        matches = _fetch_matches(event, ctx, query)
        plan = mwl_encoded.ResponsePlan(identifier, request.charset)
        syntax = _syntax(event)
        status = int(mwl.pending_status(request))
        for match in matches:
            if event.is_cancelled:
                LOG.info("C-FIND from %s cancelled after %d matches", _peer(event), sent)
                yield int(DimseStatus.CANCEL), None
                return
            if limit and sent >= limit:
                LOG.warning("C-FIND from %s stopped at %d matches", _peer(event), limit)
                yield (
                    status_dataset(
                        DimseStatus.OUT_OF_RESOURCES,
                        f"more than {limit} matches; narrow the query",
                    ),
                    None,
                )
                return
            entry = ctx.encoded.entry(match.version, match.item)
            response = mwl_encoded.encode_response(plan, entry, syntax)
            sent += 1
            yield status, response
    except Exception:
        LOG.exception("C-FIND from %s failed after %d matches", _peer(event), sent)
        yield status_dataset(DimseStatus.UNABLE_TO_PROCESS, "worklist query failed"), None
        return
    LOG.info("C-FIND from %s: %d matches", _peer(event), sent)
