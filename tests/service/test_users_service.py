"""Users, API tokens and sign-in sessions on real tables (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlmodel import select

from app.db import SessionFactory, session_scope
from app.domain.access import Principal, Role
from app.domain.actor import Actor
from app.domain.errors import ConflictError, NotFoundError, ValidationError
from app.domain.status import AuditSource
from app.models import ApiToken, AppUser, AuditEvent, WebSession, utcnow
from app.services import users

ACTOR = Actor(AuditSource.CLI, "tests")
HOURS = timedelta(hours=12)


def add(factory: SessionFactory, name: str = "alice", role: Role = Role.ADMIN) -> users.UserView:
    with session_scope(factory) as session:
        return users.create_user(
            session, username=name, password="correct horse", role=role, actor=ACTOR
        )


def test_create_and_authenticate(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        assert users.count_users(session) == 0
    alice = add(session_factory)
    assert alice.role is Role.ADMIN and alice.active and alice.last_login_at is None
    with session_scope(session_factory) as session:
        assert users.count_users(session) == 1
        stored = session.exec(select(AppUser)).one()
        assert stored.password_hash.startswith("$argon2id$")
        assert "correct horse" not in stored.password_hash
        assert users.authenticate(session, username="alice", password="wrong") is None
        assert users.authenticate(session, username="nobody", password="x") is None
        found = users.authenticate(session, username="alice", password="correct horse")
        assert found is not None and found.last_login_at is not None
        audit = session.exec(select(AuditEvent).where(AuditEvent.entity == "user")).all()
        assert [a.action for a in audit] == ["create"]


def test_user_rules(session_factory: SessionFactory) -> None:
    add(session_factory)
    with session_scope(session_factory) as session:
        with pytest.raises(ValidationError):
            users.create_user(session, username="bob", password="short", role="viewer", actor=ACTOR)
        with pytest.raises(ValidationError):
            users.create_user(session, username=" ", password="long enough", role="x", actor=ACTOR)
        with pytest.raises(ValidationError):
            users.create_user(
                session, username="bob", password="long enough", role="root", actor=ACTOR
            )
    with pytest.raises(ConflictError), session_scope(session_factory) as session:
        users.create_user(
            session, username="alice", password="long enough", role="viewer", actor=ACTOR
        )


def test_the_last_admin_stays(session_factory: SessionFactory) -> None:
    alice = add(session_factory)
    with session_scope(session_factory) as session:
        for change in (
            lambda: users.set_role(session, pk=alice.id, role=Role.VIEWER, actor=ACTOR),
            lambda: users.deactivate_user(session, pk=alice.id, actor=ACTOR),
            lambda: users.delete_user(session, pk=alice.id, actor=ACTOR),
        ):
            with pytest.raises(ConflictError):
                change()
    bob = add(session_factory, "bob", Role.ADMIN)
    with session_scope(session_factory) as session:
        assert users.set_role(session, pk=alice.id, role="scheduler", actor=ACTOR).role == (
            Role.SCHEDULER
        )
        users.delete_user(session, pk=alice.id, actor=ACTOR)
        assert [u.username for u in users.list_users(session)] == ["bob"]
        with pytest.raises(NotFoundError):
            users.get_user(session, pk=alice.id)
        assert users.get_user(session, pk=bob.id).role is Role.ADMIN


def test_sessions_slide_and_end(session_factory: SessionFactory) -> None:
    alice = add(session_factory)
    with session_scope(session_factory) as session:
        started = users.start_session(session, user_pk=alice.id, lifetime=HOURS)
    assert started.principal == Principal(
        "alice", Role.ADMIN, "user", alice.id, started.principal.csrf_token
    )
    assert len(started.secret) >= 43 and started.principal.csrf_token
    with session_scope(session_factory) as session:
        row = session.exec(select(WebSession)).one()
        assert row.id == users.sha256(started.secret) != started.secret
        # a use after a while slides the expiry
        row.last_seen_at = utcnow() - timedelta(minutes=30)
        row.expires_at = utcnow() + timedelta(minutes=5)
        session.add(row)
    with session_scope(session_factory) as session:
        found = users.lookup_session(session, secret=started.secret, lifetime=HOURS)
        assert found == started.principal
    with session_scope(session_factory) as session:
        row = session.exec(select(WebSession)).one()
        assert row.expires_at > utcnow() + timedelta(hours=11)
        assert users.lookup_session(session, secret="not-it", lifetime=HOURS) is None
    with session_scope(session_factory) as session:
        assert users.end_session(session, secret=started.secret) is True
        assert users.lookup_session(session, secret=started.secret, lifetime=HOURS) is None


def test_expired_sessions_and_deactivated_users_are_refused(
    session_factory: SessionFactory,
) -> None:
    add(session_factory)
    bob = add(session_factory, "bob", Role.SCHEDULER)
    with session_scope(session_factory) as session:
        old = users.start_session(session, user_pk=bob.id, lifetime=HOURS)
        live = users.start_session(session, user_pk=bob.id, lifetime=HOURS)
    with session_scope(session_factory) as session:
        row = session.get(WebSession, users.sha256(old.secret))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    with session_scope(session_factory) as session:
        assert users.lookup_session(session, secret=old.secret, lifetime=HOURS) is None
        assert users.lookup_session(session, secret=live.secret, lifetime=HOURS) is not None
        users.deactivate_user(session, pk=bob.id, actor=ACTOR)
    with session_scope(session_factory) as session:
        assert users.lookup_session(session, secret=live.secret, lifetime=HOURS) is None
        assert users.authenticate(session, username="bob", password="correct horse") is None
        with pytest.raises(ValidationError):
            users.start_session(session, user_pk=bob.id, lifetime=HOURS)


def test_a_new_password_ends_other_sessions(session_factory: SessionFactory) -> None:
    alice = add(session_factory)
    with session_scope(session_factory) as session:
        mine = users.start_session(session, user_pk=alice.id, lifetime=HOURS)
        other = users.start_session(session, user_pk=alice.id, lifetime=HOURS)
    with session_scope(session_factory) as session:
        users.set_password(
            session, pk=alice.id, password="a new secret", actor=ACTOR, keep_secret=mine.secret
        )
    with session_scope(session_factory) as session:
        assert users.lookup_session(session, secret=mine.secret, lifetime=HOURS) is not None
        assert users.lookup_session(session, secret=other.secret, lifetime=HOURS) is None
        assert users.authenticate(session, username="alice", password="a new secret")


def test_tokens(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        new = users.create_token(session, name="ris", role=Role.SCHEDULER, actor=ACTOR)
    assert new.secret.startswith("mwl_") and len(new.secret) == 44
    assert new.token.role is Role.SCHEDULER and new.token.created_by == "CLI:tests"
    with session_scope(session_factory) as session:
        stored = session.exec(select(ApiToken)).one()
        assert stored.token_hash == users.sha256(new.secret)
        assert new.secret not in stored.token_hash
        principal = users.principal_for_token(session, secret=new.secret)
        assert principal == Principal("ris", Role.SCHEDULER, "token")
        assert principal.actor() == Actor(AuditSource.REST, "token:ris")
        assert users.principal_for_token(session, secret="mwl_" + "x" * 40) is None
        assert users.principal_for_token(session, secret="") is None
    with session_scope(session_factory) as session:
        assert users.list_tokens(session)[0].last_used_at is not None
    with pytest.raises(ConflictError), session_scope(session_factory) as session:
        users.create_token(session, name="ris", role=Role.VIEWER, actor=ACTOR)
    with session_scope(session_factory) as session:
        revoked = users.revoke_token(session, name="ris", actor=ACTOR)
        assert revoked.revoked_at is not None
        assert users.revoke_token(session, pk=revoked.id, actor=ACTOR) == revoked
        assert users.principal_for_token(session, secret=new.secret) is None
        with pytest.raises(NotFoundError):
            users.revoke_token(session, name="nope", actor=ACTOR)


def test_principal_actor() -> None:
    user = Principal("alice", Role.VIEWER, "user", 1, "csrf")
    assert user.actor() == Actor(AuditSource.WEB, "alice")
    assert Role.ADMIN.allows(Role.SCHEDULER) and Role.SCHEDULER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.SCHEDULER) and not Role.SCHEDULER.allows(Role.ADMIN)


def test_importing_users_does_not_hash() -> None:
    """The timing-equaliser hash is made on first use: a DICOM worker never pays its 64 MiB."""
    probe = "import app.services.users as u; print(u._dummy_hash.cache_info().currsize)"
    made = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert made == "0"
