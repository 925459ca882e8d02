"""The log context: bound fields reach every record through the filter, and go when scoped."""

from __future__ import annotations

import logging

import pytest

from app import log_context
from app.cli import configure_logging


def record(message: str = "x") -> logging.LogRecord:
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    log_context.ContextFilter().filter(rec)
    return rec


def test_bound_fields_are_on_the_record_and_in_the_text() -> None:
    with log_context.scope():
        log_context.bind(calling_ae="CT01", assoc="1a2b")
        rec = record()
        assert (rec.calling_ae, rec.assoc, rec.msh10) == ("CT01", "1a2b", "")  # type: ignore[attr-defined]
        assert rec.context == " [calling_ae=CT01 assoc=1a2b]"  # type: ignore[attr-defined]
    assert record().context == ""  # type: ignore[attr-defined]
    assert log_context.current() == {}


def test_a_peer_cannot_forge_a_line_or_a_field() -> None:
    with log_context.scope():
        log_context.bind(msh10="X1\nERROR forged line", request_id="a] [b=c")
        assert log_context.current() == {
            "msh10": "X1?ERROR?forged?line",
            "request_id": "a???b?c",
        }
        log_context.bind(msh10="9" * 500)
        assert len(log_context.current()["msh10"]) == log_context.MAX_VALUE


def test_only_known_fields_may_be_bound() -> None:
    with pytest.raises(ValueError, match="patient_name"):
        log_context.bind(patient_name="DOE^JOHN")


def test_the_logging_setup_puts_the_context_in_every_line() -> None:
    root, pynetdicom = logging.getLogger(), logging.getLogger("pynetdicom")
    saved = (root.handlers[:], root.level, pynetdicom.level)
    try:
        configure_logging("INFO")
        handlers = root.handlers
        assert handlers
        for handler in handlers:
            assert any(isinstance(f, log_context.ContextFilter) for f in handler.filters)
            assert handler.formatter is not None
            with log_context.scope():
                log_context.bind(request_id="r1")
                rec = logging.LogRecord("app.x", logging.INFO, __file__, 1, "hello", None, None)
                handler.filter(rec)
                assert handler.formatter.format(rec).endswith("INFO app.x [request_id=r1]: hello")
    finally:
        for handler in root.handlers:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        pynetdicom.setLevel(saved[2])
