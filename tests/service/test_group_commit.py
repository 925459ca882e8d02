"""Group commit (``app.group_commit``): units of work of several threads in one transaction.

Each test holds the leader's unit until the others are queued, so the batch is certain to form.
The mechanism is tested on both databases (``sharing=True``); by default only SQLite shares.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from sqlmodel import Session, select

from app.db import SessionFactory, session_scope
from app.domain.errors import ValidationError
from app.group_commit import GroupCommit
from app.models import Patient
from tests.support.net import wait_until


def _add_patient(patient_id: str) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.add(Patient(patient_id=patient_id, patient_name="DOE^J"))
        session.flush()
        return id(session)

    return work


def _patients(factory: SessionFactory) -> list[str]:
    with session_scope(factory) as session:
        return sorted(p.patient_id for p in session.exec(select(Patient)))


def _held(
    started: threading.Event, release: threading.Event, work: Callable[[Session], int]
) -> Callable[[Session], int]:
    def held(session: Session) -> int:
        started.set()
        release.wait(10)
        return work(session)

    return held


def _batch_behind_leader(
    commits: GroupCommit, pool: ThreadPoolExecutor, followers: list[Callable[[Session], int]]
) -> tuple[Future[int], list[Future[int]]]:
    """The leader's unit runs (held) while ``followers`` queue up; then it is let go."""
    started, release = threading.Event(), threading.Event()
    leader = pool.submit(commits.run, _held(started, release, _add_patient("LEADER")))
    assert started.wait(10), "the leader's unit runs"
    queued = [pool.submit(commits.run, work) for work in followers]
    wait_until(lambda: commits.waiting == len(followers), what="the followers to queue")
    release.set()
    return leader, queued


def test_a_lone_unit_commits_in_its_own_transaction(session_factory: SessionFactory) -> None:
    commits = GroupCommit(session_factory, sharing=True)
    commits.run(_add_patient("P1"))
    assert _patients(session_factory) == ["P1"]
    assert commits.shared == 0


def test_units_queued_meanwhile_share_the_next_transaction(
    session_factory: SessionFactory,
) -> None:
    commits = GroupCommit(session_factory, sharing=True)
    with ThreadPoolExecutor(4) as pool:
        followers = [_add_patient(f"P{n}") for n in range(3)]
        leader, queued = _batch_behind_leader(commits, pool, followers)
        sessions = {future.result(10) for future in queued}
        leader.result(10)
    assert len(sessions) == 1, "the three queued units ran in one session"
    assert commits.shared == 1
    assert _patients(session_factory) == ["LEADER", "P0", "P1", "P2"]


def test_a_failing_unit_costs_the_others_nothing(session_factory: SessionFactory) -> None:
    def refused(session: Session) -> int:
        _add_patient("REFUSED")(session)
        raise ValidationError("refused", field="PatientID")

    commits = GroupCommit(session_factory, sharing=True)
    with ThreadPoolExecutor(4) as pool:
        followers = [_add_patient("P0"), refused, _add_patient("P2")]
        leader, (first, failing, last) = _batch_behind_leader(commits, pool, followers)
        with pytest.raises(ValidationError, match="refused"):
            failing.result(10)
        first.result(10), last.result(10), leader.result(10)
    assert _patients(session_factory) == ["LEADER", "P0", "P2"]
    assert commits.shared == 0, "the failed batch was run again one unit at a time"


def test_a_unit_learns_its_result_only_after_the_commit(session_factory: SessionFactory) -> None:
    """A follower's result is visible to another session once the follower returns."""
    commits = GroupCommit(session_factory, sharing=True)
    with ThreadPoolExecutor(4) as pool:
        leader, (follower,) = _batch_behind_leader(commits, pool, [_add_patient("P0")])
        follower.result(10)
        assert "P0" in _patients(session_factory)
        leader.result(10)


def test_every_unit_of_many_threads_is_committed_once(session_factory: SessionFactory) -> None:
    commits = GroupCommit(session_factory, max_batch=4, sharing=True)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(commits.run, _add_patient(f"P{n:03}")) for n in range(80)]
        for future in futures:
            future.result(30)
    assert _patients(session_factory) == [f"P{n:03}" for n in range(80)]
    assert commits.waiting == 0


def test_only_sqlite_shares_by_default(database_url: str, session_factory: SessionFactory) -> None:
    """PostgreSQL runs each unit in its own transaction, side by side: a unit held open does
    not hold up another one."""
    commits = GroupCommit(session_factory)
    assert commits.sharing == database_url.startswith("sqlite")
    if commits.sharing:
        return
    started, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(commits.run, _held(started, release, _add_patient("HELD")))
        assert started.wait(10)
        commits.run(_add_patient("P0"))  # would wait for the held one if it were queued
        assert _patients(session_factory) == ["P0"]
        release.set()
        held.result(10)
    assert _patients(session_factory) == ["HELD", "P0"]
