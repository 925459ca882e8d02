"""A failing outbox pass is logged once with its traceback, then once a minute, then its end."""

from __future__ import annotations

import logging

import pytest

from app.delivery import PassFailures


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(failures: PassFailures) -> None:
    try:
        raise ConnectionError("database away")
    except ConnectionError:
        failures.failed()


def test_a_long_outage_is_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    failures = PassFailures(clock)
    caplog.set_level(logging.INFO, logger="app.delivery")
    for _ in range(121):  # one pass every 0.5 s for a minute and a bit
        fail(failures)
        clock.now += 0.5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].exc_info is not None  # the first one carries the traceback
    assert "121 passes in a row" in errors[1].getMessage()
    failures.succeeded()
    (recovered,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert "after 121 failed passes" in recovered.getMessage()
    failures.succeeded()
    assert len([r for r in caplog.records if r.levelno == logging.INFO]) == 1
    fail(failures)
    assert caplog.records[-1].levelno == logging.ERROR  # a new outage logs at once again
