"""``mwl-broker user ...`` and ``mwl-broker token ...`` on a migrated SQLite database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.cli import main
from app.db import create_db_engine, create_session_factory, session_scope
from app.domain.access import Principal, Role
from app.services import users


@pytest.fixture
def cli_env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("BROKER_DATABASE_URL", sqlite_url)
    return sqlite_url


def run(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(args))


def test_user_add_reads_the_password_from_stdin(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, "user", "add", "alice", "--role", "admin", stdin="") == 2
    assert "password" in capsys.readouterr().err
    code = run(
        monkeypatch, "user", "add", "alice", "--role", "admin", stdin="s3cret pass\nignored\n"
    )
    assert code == 0
    assert "alice" in capsys.readouterr().out
    assert run(monkeypatch, "user", "add", "alice", stdin="another pass\n") == 1
    assert "already exists" in capsys.readouterr().err
    assert run(monkeypatch, "user", "list") == 0
    listed = capsys.readouterr().out
    assert "alice\tadmin\tactive" in listed and "s3cret" not in listed
    engine = create_db_engine(cli_env)
    try:
        with session_scope(create_session_factory(engine)) as session:
            found = users.authenticate(session, username="alice", password="s3cret pass")
    finally:
        engine.dispose()
    assert found is not None and found.role is Role.ADMIN


def test_token_add_prints_the_secret_once(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, "token", "add", "ris", "--role", "scheduler") == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("mwl_") and len(secret) == 44
    engine = create_db_engine(cli_env)
    factory = create_session_factory(engine)
    try:
        with session_scope(factory) as session:
            principal = users.principal_for_token(session, secret=secret)
        assert principal == Principal("ris", Role.SCHEDULER, "token")
        assert run(monkeypatch, "token", "list") == 0
        listed = capsys.readouterr().out
        assert "ris\tscheduler\tactive" in listed and secret not in listed
        assert run(monkeypatch, "token", "revoke", "ris") == 0
        assert run(monkeypatch, "token", "revoke", "nope") == 1
        with session_scope(factory) as session:
            assert users.principal_for_token(session, secret=secret) is None
    finally:
        engine.dispose()


def test_accounts_need_a_migrated_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKER_DATABASE_URL", f"sqlite:///{tmp_path}/new.db")
    assert run(monkeypatch, "token", "list") == 2
    assert "db upgrade" in capsys.readouterr().err
