"""Who a log line is about: the calling AE and association, the HL7 MSH-10, the HTTP request id.

Adapters ``bind`` the identifiers of the unit of work they are serving into a context variable;
``ContextFilter``, installed on every handler by the logging set-up (``app.cli``), copies them
onto each record (as attributes, and as the `` [calling_ae=CT1 assoc=3fa2c1d0]`` text of
``%(context)s`` in ``FORMAT``). Context variables follow the unit of work: a DICOM association
runs in its own thread, an HL7 message in a copied context in the worker pool, an HTTP request
in its own task, so concurrent work never mixes ids.

Only identifiers go here, never patient data: the fields are logged at every level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
# The fields a record may carry, in the order they are printed.
FIELDS = ("calling_ae", "assoc", "msh10", "request_id")
MAX_VALUE = 64

_CONTEXT: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("mwl_log_context", default=())


def bind(**fields: str) -> None:
    """Add ``fields`` (names from ``FIELDS``) to the current context, replacing equal names."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    merged = dict(_CONTEXT.get())
    merged.update({k: _clean(str(v)) for k, v in fields.items()})
    _CONTEXT.set(tuple((k, merged[k]) for k in FIELDS if k in merged))


def _clean(value: str) -> str:
    """Peers choose these values (AE titles, MSH-10, X-Request-ID): no line breaks, no
    spaces or brackets that would forge another field, and a bounded length."""
    cleaned = "".join(c if c.isprintable() and c not in " []=" else "?" for c in value.strip())
    return cleaned[:MAX_VALUE] or "-"


@contextmanager
def scope() -> Iterator[None]:
    """Whatever is bound inside is forgotten on the way out."""
    token = _CONTEXT.set(_CONTEXT.get())
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> dict[str, str]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Puts the bound fields on every record that passes the handler; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _CONTEXT.get()
        for key in FIELDS:
            setattr(record, key, "")
        for key, value in fields:
            setattr(record, key, value)
        record.context = " [" + " ".join(f"{k}={v}" for k, v in fields) + "]" if fields else ""
        return True


def install(handler: logging.Handler) -> None:
    """Give ``handler`` the context filter (once)."""
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
