"""Query/Retrieve SCP: Patient Root and Study Root FIND, MOVE and GET (PS3.4 Annex C).

C-FIND: one Pending per match (0xFF01 when the identifier holds a non-empty key the broker does
not match on), C-CANCEL honoured between matches, at most ``BROKER_MWL_MAX_RESULTS`` matches
(then 0xA700). C-MOVE and C-GET read the instance list in one short DB session and then send
each stored Part 10 file's data set as it is on disk: no decoding, no re-encoding, no
transcoding. A sub-operation whose SOP class and stored transfer syntax the peer did not accept
fails and its SOP Instance UID goes to the Failed SOP Instance UID List (PS3.4 C.4.2.3.1).

pynetdicom's C-MOVE/C-GET service hands every yielded data set to
``Association.send_c_store``, which would re-encode a ``Dataset``. A yielded ``StoredFile``
carries the file path instead, and ``install_raw_sending`` makes ``send_c_store`` send such a
file through pynetdicom's own chunked path (``STORE_SEND_CHUNKED_DATASET``), which copies the
data set bytes after the File Meta Information and requires an exact presentation context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from pynetdicom import _config, build_context, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from app.domain.dicom_json import tag_key
from app.domain.errors import DomainError
from app.domain.qr import QrModel, QrQuery, describe, parse_query
from app.schemas import StoredInstanceRef
from app.services import qr as qr_service
from app.services.remote_aes import RemoteService, lookup
from dicom_scp import mwl
from dicom_scp.status import DimseStatus, find_failure, status_dataset

if TYPE_CHECKING:
    from dicom_scp.handlers import ScpContext

LOG = logging.getLogger(__name__)

FIND_MODELS: dict[str, QrModel] = {
    PatientRootQueryRetrieveInformationModelFind: QrModel.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: QrModel.STUDY_ROOT,
}
MOVE_MODELS: dict[str, QrModel] = {
    PatientRootQueryRetrieveInformationModelMove: QrModel.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelMove: QrModel.STUDY_ROOT,
}
GET_MODELS: dict[str, QrModel] = {
    PatientRootQueryRetrieveInformationModelGet: QrModel.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelGet: QrModel.STUDY_ROOT,
}
SOP_CLASSES: tuple[tuple[str, str], ...] = (
    (PatientRootQueryRetrieveInformationModelFind, "Patient Root Q/R Information Model - FIND"),
    (PatientRootQueryRetrieveInformationModelMove, "Patient Root Q/R Information Model - MOVE"),
    (PatientRootQueryRetrieveInformationModelGet, "Patient Root Q/R Information Model - GET"),
    (StudyRootQueryRetrieveInformationModelFind, "Study Root Q/R Information Model - FIND"),
    (StudyRootQueryRetrieveInformationModelMove, "Study Root Q/R Information Model - MOVE"),
    (StudyRootQueryRetrieveInformationModelGet, "Study Root Q/R Information Model - GET"),
)
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: odd presentation context IDs 1-255
PENDING = 0xFF00
FindResult = tuple[int | Dataset, Dataset | None]
CANCEL = 0xFE00


class StoredFile(Dataset):
    """A stored instance to send as its file's bytes (see the module notes)."""

    def __init__(
        self, ref: StoredInstanceRef, storage_dir: Path, move_originator: str | None = None
    ) -> None:
        super().__init__()
        self.SOPClassUID = ref.sop_class_uid
        self.SOPInstanceUID = ref.sop_instance_uid
        self.stored_path = storage_dir / ref.path
        self.move_originator = move_originator


_original_send_c_store = Association.send_c_store
_others_chunked = _config.STORE_SEND_CHUNKED_DATASET  # what other callers asked for


def _send_c_store(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
    if isinstance(dataset, StoredFile):
        if dataset.move_originator:
            # pynetdicom names its own AE here; PS3.7 9.3.1.1 wants the C-MOVE requestor's.
            kwargs["originator_aet"] = dataset.move_originator
        dataset = dataset.stored_path
    elif isinstance(dataset, str | Path) and not _others_chunked:
        # The chunked switch is process-wide: any other file path is read and sent as
        # pynetdicom does by default, so other senders see no change.
        dataset = dcmread(dataset)
    return _original_send_c_store(self, dataset, *args, **kwargs)


def install_raw_sending() -> None:
    """Send ``StoredFile`` data sets unchanged (idempotent; see the module notes)."""
    global _others_chunked
    if Association.send_c_store is not _send_c_store:
        _others_chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    Association.send_c_store = _send_c_store  # type: ignore[method-assign]


# --- identifiers ----------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def identifier_elements(identifier: Dataset) -> dict[str, str]:
    """Top-level elements of an identifier as DICOM JSON tag -> text. Sequences, private
    elements and group lengths are no keys of the Q/R models here and are left out."""
    elements: dict[str, str] = {}
    for elem in identifier:
        tag = int(elem.tag)
        if elem.VR == "SQ" or (tag >> 16) % 2 == 1 or tag & 0xFFFF == 0:
            continue
        elements[tag_key(tag)] = _text(elem.value)
    return elements


def _charset(identifier: Dataset) -> list[str] | None:
    value = identifier.get("SpecificCharacterSet")
    if not value:
        return None
    return list(value) if isinstance(value, MultiValue | list) else [str(value)]


def _parse(identifier: Dataset, model: QrModel, ctx: ScpContext, *, retrieve: bool) -> QrQuery:
    return parse_query(
        model,
        identifier_elements(identifier),
        name_case_insensitive=ctx.worklist.name_case_insensitive,
        retrieve=retrieve,
    )


def _peer(event: evt.Event) -> str:
    return str(event.assoc.requestor.ae_title)


def _response(item: dict[str, Any], charset: list[str] | None) -> Dataset:
    response = Dataset.from_json(item)
    chosen = mwl.choose_charset(response, charset)
    if chosen:
        response.SpecificCharacterSet = chosen if len(chosen) > 1 else chosen[0]
    return response


# --- C-FIND ---------------------------------------------------------------------------------


def is_qr_find(event: evt.Event) -> bool:
    """Whether a C-FIND is for a Q/R model (else it is a worklist query). Tolerates events
    without a request primitive, as tests build them."""
    request = getattr(event, "request", None)
    return str(getattr(request, "AffectedSOPClassUID", "")) in FIND_MODELS


def handle_find(event: evt.Event, ctx: ScpContext) -> Iterator[FindResult]:
    """Q/R C-FIND (PS3.4 C.4.1.3): one Pending per match, then Success."""
    model = FIND_MODELS[str(event.request.AffectedSOPClassUID)]
    identifier: Dataset = event.identifier
    try:
        query = _parse(identifier, model, ctx, retrieve=False)
    except DomainError as exc:
        LOG.info("Q/R C-FIND from %s refused: %s", _peer(event), exc.message)
        tag = tag_for_keyword(exc.field) if exc.field else None
        yield find_failure(exc, [tag] if tag is not None else None), None
        return
    limit = ctx.worklist.max_results
    try:
        with ctx.session_factory() as session:
            found = qr_service.find(
                session,
                query,
                retrieve_ae_title=str(event.assoc.acceptor.ae_title),
                limit=limit + 1 if limit else 0,
            )
    except Exception:
        LOG.exception("Q/R C-FIND from %s failed", _peer(event))
        yield status_dataset(DimseStatus.UNABLE_TO_PROCESS, "query failed"), None
        return
    status = DimseStatus.PENDING_WARNING if query.unsupported else DimseStatus.PENDING
    charset = _charset(identifier)
    for sent, item in enumerate(found):
        if event.is_cancelled:
            LOG.info("Q/R C-FIND from %s cancelled after %d matches", _peer(event), sent)
            yield int(DimseStatus.CANCEL), None
            return
        if limit and sent >= limit:
            LOG.warning("Q/R C-FIND from %s stopped at %d matches", _peer(event), limit)
            yield status_dataset(DimseStatus.OUT_OF_RESOURCES, f"more than {limit} matches"), None
            return
        yield int(status), _response(item, charset)
    LOG.info("Q/R C-FIND from %s %s: %d matches", _peer(event), describe(query), len(found))


# --- C-MOVE and C-GET -----------------------------------------------------------------------


def _instances(ctx: ScpContext, query: QrQuery) -> list[StoredInstanceRef]:
    with ctx.session_factory() as session:
        return qr_service.retrieve(session, query)


def _contexts(refs: list[StoredInstanceRef]) -> list[Any]:
    """One presentation context per SOP class and stored transfer syntax: the files are sent
    as stored, so only their own transfer syntax is proposed."""
    pairs = sorted({(r.sop_class_uid, r.transfer_syntax_uid) for r in refs})
    if len(pairs) > MAX_CONTEXTS:
        LOG.warning("C-MOVE needs %d presentation contexts; proposing %d", len(pairs), 128)
    return [build_context(sop, [ts]) for sop, ts in pairs[:MAX_CONTEXTS]]


def _sub_operations(
    event: evt.Event, ctx: ScpContext, refs: list[StoredInstanceRef], move: bool = False
) -> Iterator[tuple[int, Dataset | None]]:
    originator = _peer(event) if move else None
    for index, ref in enumerate(refs):
        if event.is_cancelled:
            LOG.info("retrieve by %s cancelled after %d sub-operations", _peer(event), index)
            yield CANCEL, None
            return
        yield PENDING, StoredFile(ref, Path(ctx.storage_dir or "."), originator)


def handle_move(event: evt.Event, ctx: ScpContext) -> Iterator[Any]:
    """Q/R C-MOVE (PS3.4 C.4.2.3): to a known AE with the ``store`` service, else 0xA801.

    pynetdicom reports Pending counts, the final counts and the Failed SOP Instance UID List.
    An identifier that cannot be parsed fails with pynetdicom's 0xC514 (unable to process):
    its handler protocol allows no other status before the destination is known.
    """
    model = MOVE_MODELS[str(event.request.AffectedSOPClassUID)]
    destination = event.move_destination or ""
    query = _parse(event.identifier, model, ctx, retrieve=True)
    with ctx.session_factory() as session:
        remote = lookup(session, destination, RemoteService.STORE)
        refs = qr_service.retrieve(session, query) if remote is not None else []
    if remote is None or (remote.tls and ctx.client_tls is None):
        # A TLS destination is never sent to in plain: refused like an unknown one.
        LOG.info("C-MOVE from %s: unknown destination %r", _peer(event), destination)
        yield None, None
        return
    LOG.info(
        "C-MOVE from %s to %s %s: %d instances",
        _peer(event),
        remote.ae_title,
        describe(query),
        len(refs),
    )
    options: dict[str, Any] = {"contexts": _contexts(refs)}
    if remote.tls:  # the sub-association over TLS (PS3.15 B.9), checked against BROKER_TLS_CA
        options["tls_args"] = (ctx.client_tls, remote.host)
    yield remote.host, remote.port, options
    yield len(refs)
    yield from _sub_operations(event, ctx, refs, move=True)


def handle_get(event: evt.Event, ctx: ScpContext) -> Iterator[Any]:
    """Q/R C-GET (PS3.4 C.4.3.3): C-STORE sub-operations on the same association, to the
    storage contexts the requestor proposed with the SCP role (PS3.7 D.3.3.4)."""
    model = GET_MODELS[str(event.request.AffectedSOPClassUID)]
    query = _parse(event.identifier, model, ctx, retrieve=True)
    refs = _instances(ctx, query)
    LOG.info("C-GET from %s %s: %d instances", _peer(event), describe(query), len(refs))
    yield len(refs)
    yield from _sub_operations(event, ctx, refs)
