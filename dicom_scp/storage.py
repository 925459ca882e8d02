"""Storage SCP (PS3.4 Annex B): C-STORE of every storage SOP class pynetdicom knows.

The handler takes the data set exactly as received (``event.encoded_dataset()``: file meta
information + the peer's bytes, never decoded and re-encoded, whatever the transfer syntax),
reads the few index attributes from the header (stopping before the pixel data) and hands both
to ``app.services.storage.receive``. Statuses (PS3.4 Table B.2-1): Success 0x0000 (also for a
duplicate kept or replaced), 0xA700 Out of Resources when the file or index cannot be written,
0xA900 when the data set lacks its UIDs or contradicts the request, 0xC000 when it cannot be
parsed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from io import BytesIO
from typing import cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import AllStoragePresentationContexts

from app.config import StorageSettings
from app.db import SessionFactory
from app.domain.errors import DomainError, lookup
from app.filestore import FileStore
from app.services import storage
from dicom_scp.status import STORE_ERROR_STATUS, StoreStatus, status_dataset

LOG = logging.getLogger(__name__)

# Every storage SOP class of pynetdicom's dictionary, with every transfer syntax it knows: the
# contexts are added by ``dicom_scp.server.add_get_storage_contexts`` (shared with C-GET). The
# 128-context limit (PS3.8 9.3.2.2) binds the requestor's proposal, not what an acceptor
# supports, so all are offered.
STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    str(cx.abstract_syntax) for cx in AllStoragePresentationContexts
)
_READ_KEYWORDS = (*storage.INDEX_KEYWORDS, "SOPInstanceUID", "SOPClassUID")
_READ_TAGS = [Tag(keyword) for keyword in _READ_KEYWORDS]


@dataclass(frozen=True)
class StoreContext:
    settings: StorageSettings
    session_factory: SessionFactory

    @property
    def files(self) -> FileStore:
        return FileStore(self.settings.dir)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):  # MultiValue: backslash-joined as in DICOM
        return "\\".join(str(v) for v in value)
    return str(value)


def index_attributes(data: bytes) -> dict[str, str]:
    """The index attributes of a Part 10 file, read up to (not including) the pixel data."""
    ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=_READ_TAGS)
    return {keyword: _text(ds.get(keyword)) for keyword in _READ_KEYWORDS if keyword in ds}


def _received(
    event: evt.Event, data: bytes, attributes: dict[str, str]
) -> storage.ReceivedInstance:
    request = cast(C_STORE, event.request)
    sop_uid = str(request.AffectedSOPInstanceUID or "")
    in_dataset = attributes.get("SOPInstanceUID", "").strip()
    if in_dataset and in_dataset != sop_uid:
        raise storage.DataSetMismatchError(
            "SOP Instance UID differs from the request", field="SOPInstanceUID"
        )
    return storage.ReceivedInstance(
        data=data,
        sop_class_uid=str(request.AffectedSOPClassUID or ""),
        sop_instance_uid=sop_uid,
        transfer_syntax_uid=str(event.context.transfer_syntax),
        calling_ae_title=str(event.assoc.requestor.ae_title),
        attributes=attributes,
    )


def handle_store(event: evt.Event, ctx: StoreContext) -> int | Dataset:
    """C-STORE (PS3.4 B.2.2): write, index, answer."""
    peer = str(event.assoc.requestor.ae_title)
    try:
        data = event.encoded_dataset()
        attributes = index_attributes(data)
    except Exception:
        LOG.exception("C-STORE from %s: data set could not be parsed", peer)
        return status_dataset(StoreStatus.CANNOT_UNDERSTAND, "data set could not be parsed")
    try:
        received = _received(event, data, attributes)
        outcome = storage.receive(
            ctx.session_factory,
            files=ctx.files,
            instance=received,
            duplicate=ctx.settings.duplicate,
        )
    except DomainError as exc:
        LOG.warning("C-STORE from %s refused: %s", peer, exc.message)
        return status_dataset(
            lookup(STORE_ERROR_STATUS, exc, StoreStatus.OUT_OF_RESOURCES), exc.message
        )
    except Exception:
        LOG.exception("C-STORE from %s failed", peer)
        return status_dataset(StoreStatus.OUT_OF_RESOURCES, "instance could not be stored")
    LOG.debug("C-STORE %s from %s: %s", received.sop_instance_uid, peer, outcome.result.value)
    return int(StoreStatus.SUCCESS)
