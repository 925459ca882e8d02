"""Patients: identity upserts are race-safe on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import func
from sqlmodel import Session, select

from app.db import SessionFactory, session_scope
from app.domain.actor import Actor
from app.domain.errors import ConflictError
from app.domain.items import PatientData
from app.domain.status import AuditSource
from app.models import Patient
from app.services import patients, write

RACERS = 8


def race(factory: SessionFactory, work: Callable[[Session], object]) -> list[BaseException]:
    """Run ``work(session)`` in RACERS threads released at once; return what they raised."""
    barrier = threading.Barrier(RACERS)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            with session_scope(factory) as session:
                work(session)
        except BaseException as exc:  # collected and asserted on by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def patient_rows(factory: SessionFactory) -> int:
    with session_scope(factory) as session:
        return int(session.exec(select(func.count()).select_from(Patient)).one())


def test_concurrent_ensure_creates_one_patient(session_factory: SessionFactory) -> None:
    data = PatientData(patient_id="RACE1", name="RACE^ONE")
    errors = race(
        session_factory, lambda s: write.ensure_patient(s, data, actor=Actor(AuditSource.HL7))
    )
    assert errors == []
    assert patient_rows(session_factory) == 1


def test_concurrent_create_succeeds_once(session_factory: SessionFactory) -> None:
    data = PatientData(patient_id="RACE2", name="RACE^TWO")
    errors = race(
        session_factory, lambda s: patients.create_patient(s, data, actor=Actor(AuditSource.REST))
    )
    assert len(errors) == RACERS - 1
    assert all(isinstance(e, ConflictError) for e in errors)
    assert patient_rows(session_factory) == 1
