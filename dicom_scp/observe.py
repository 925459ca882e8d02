"""What the DICOM listener tells operators: association counters, C-FIND timing, log context.

Kept apart from the transport (``server.py``) on purpose: these are pynetdicom notification
hooks (``HANDLERS``) and one wrapper (``timed_find``), so a change
to how associations are accepted only has to keep binding them.

- Every association gets a short id when its connection opens; once the A-ASSOCIATE-RQ is read
  (``EVT_REQUESTED``, in the association's own thread) the calling AE title and that id are
  bound to the log context, so every later line of that association names them.
- Counters (``app.metrics``): accepted, rejected by reason (PS3.8 9.3.4 A-ASSOCIATE-RJ
  result/source/diagnostic), aborted, released. The gauges of open associations and of
  connections that have not (yet) associated are the front door's own counters
  (``DicomServer.gauges``, from ``dicom_scp.transport``), read at scrape time.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pynetdicom import evt
from pynetdicom.association import Association

from app import log_context, metrics

LOG = logging.getLogger(__name__)

# (source, diagnostic) of an A-ASSOCIATE-RJ (PS3.8 Table 9-21) -> the counter's reason label.
_REJECT_REASONS = {
    (0x01, 0x03): "calling_ae",  # service user: calling AE title not recognised
    (0x01, 0x07): "called_ae",  # service user: called AE title not recognised
    (0x03, 0x02): "limit",  # service provider (presentation): local limit exceeded
}

_ids: weakref.WeakKeyDictionary[Association, str] = weakref.WeakKeyDictionary()
_aborted: weakref.WeakSet[Association] = weakref.WeakSet()
_lock = threading.Lock()


def association_id(assoc: Association) -> str:
    """The short id of ``assoc`` in the log (made when its connection opened)."""
    with _lock:
        found = _ids.get(assoc)
        if found is None:
            found = _ids[assoc] = secrets.token_hex(4)
        return found


def _on_conn_open(event: evt.Event) -> None:
    association_id(event.assoc)


def _on_requested(event: evt.Event) -> None:
    assoc = event.assoc
    request = assoc.requestor.primitive  # the A-ASSOCIATE-RQ; not yet copied to the requestor
    calling = str(request.calling_ae_title).strip() if request is not None else ""
    log_context.bind(calling_ae=calling, assoc=association_id(assoc))
    if request is not None:
        LOG.debug(
            "association requested from %s for called AE %s",
            _address(assoc),
            str(request.called_ae_title).strip(),
        )


def _on_established(event: evt.Event) -> None:
    metrics.DICOM_ASSOCIATIONS_ACCEPTED.inc()
    LOG.debug("association accepted from %s", _address(event.assoc))


def reject_reason(assoc: Association) -> str:
    """The counter's label for the A-ASSOCIATE-RJ the broker sent on ``assoc``."""
    primitive = assoc.acceptor.primitive
    key = (getattr(primitive, "result_source", None), getattr(primitive, "diagnostic", None))
    return _REJECT_REASONS.get(key, "other")  # type: ignore[arg-type]


def _on_rejected(event: evt.Event) -> None:
    reason = reject_reason(event.assoc)
    metrics.DICOM_ASSOCIATIONS_REJECTED.labels(reason).inc()
    LOG.info("association from %s rejected: %s", _address(event.assoc), reason)


def _on_aborted(event: evt.Event) -> None:
    with _lock:  # a local abort and the reactor may both report the same association
        if event.assoc in _aborted:
            return
        _aborted.add(event.assoc)
    metrics.DICOM_ASSOCIATIONS_ABORTED.inc()
    LOG.info("association from %s aborted", _address(event.assoc))


def _on_released(event: evt.Event) -> None:
    metrics.DICOM_ASSOCIATIONS_RELEASED.inc()
    LOG.debug("association from %s released", _address(event.assoc))


def _on_conn_close(event: evt.Event) -> None:
    LOG.debug("connection from %s closed", _address(event.assoc))


HANDLERS: list[tuple[evt.EventType, Callable[[evt.Event], None]]] = [
    (evt.EVT_CONN_OPEN, _on_conn_open),
    (evt.EVT_REQUESTED, _on_requested),
    (evt.EVT_ESTABLISHED, _on_established),
    (evt.EVT_REJECTED, _on_rejected),
    (evt.EVT_ABORTED, _on_aborted),
    (evt.EVT_RELEASED, _on_released),
    (evt.EVT_CONN_CLOSE, _on_conn_close),
]


T = TypeVar("T")
MWL_FIND = "1.2.840.10008.5.1.4.31"  # Modality Worklist Information Model - FIND (PS3.4 K.6.1.4)


def find_model(event: evt.Event) -> str:
    """The histogram's label: ``worklist`` or ``query_retrieve`` (every other FIND model)."""
    try:
        syntax = str(event.context.abstract_syntax)
    except Exception:  # no context known: count it with the worklist, the broker's main use
        return "worklist"
    return "worklist" if syntax == MWL_FIND else "query_retrieve"


def timed_find(handler: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
    """``handler`` (a C-FIND generator) observed in the C-FIND duration histogram, by
    information model: from the call to the final response, or to the end of the association
    if it ends first."""

    @functools.wraps(handler)
    def timed(event: evt.Event, *args: Any) -> Iterator[T]:
        started = time.perf_counter()
        try:
            yield from handler(event, *args)
        finally:
            histogram = metrics.FIND_DURATION.labels(find_model(event))
            histogram.observe(time.perf_counter() - started)

    return timed


def _address(assoc: Association) -> str:
    try:
        return f"{assoc.requestor.address}:{assoc.requestor.port}"
    except ValueError:  # no address known yet
        return "?"
