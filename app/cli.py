"""``mwl-broker`` command line: serve, db upgrade, import-wl, conformance, user, token."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app import log_context
from app.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from app.runtime import Broker

LOG = logging.getLogger("mwl_broker")


def configure_logging(level: str) -> None:
    """Log to stderr; every line names its unit of work (``app.log_context``)."""
    logging.basicConfig(level=level, format=log_context.FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        log_context.install(handler)
    # pynetdicom narrates every PDU at INFO; keep it for DEBUG sessions only.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


# Heavy modules (alembic, the servers) are imported by the commands that use them: import-wl
# starts its parsing workers by importing this module again, once per worker.


def _serve(settings: Settings, only: str | None) -> int:
    from app.migrations import pending_revision
    from app.runtime import Broker

    broker = Broker(settings, only=only)
    head = pending_revision(broker.engine, settings.database_url)
    if head is not None:
        LOG.error("the database is not at schema revision %s: run 'mwl-broker db upgrade'", head)
        return 2
    return _run(broker)


def _run(broker: Broker) -> int:
    """Start ``broker``, serve until SIGINT or SIGTERM, stop it.

    The signals are blocked before any thread starts (threads and worker processes inherit
    the mask) and taken with ``sigwait``: a Python handler that set an ``Event`` could run
    while this thread held that Event's lock inside ``wait()`` and deadlock the stop."""
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        try:
            ports = broker.start()
        except SettingsError as exc:
            LOG.error("%s", exc)
            broker.stop()
            return 2
        except OSError as exc:
            LOG.error("cannot listen: %s", exc)
            broker.stop()
            return 2
        for name, port in ports.items():
            LOG.info("%s listening on port %d", name.upper(), port)
        signal.sigwait(stop_signals)
        LOG.info("stopping")
        broker.stop()
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _dicom_worker() -> int:
    """A process a broker started to serve its DICOM ports too (``app.workers``)."""
    from app.runtime import Broker
    from app.workers import bind_to_parent, worker_settings

    settings = worker_settings()
    if settings is None:
        print("dicom-worker is started by 'serve' (BROKER_DICOM_WORKERS)", file=sys.stderr)
        return 2
    if not bind_to_parent():
        return 0
    configure_logging(settings.log_level)
    broker = Broker(settings, only="dicom", worker=True)
    return _run(broker)


def _import_wl(settings: Settings, paths: list[str]) -> int:
    from app.runtime import import_worklist_files

    with _ImportBar() as bar:
        report = import_worklist_files(settings, [Path(p) for p in paths], progress=bar)
    print(
        f"imported {report.imported} worklist file(s): {report.created} new, "
        f"{report.updated} updated; {len(report.failures)} refused"
    )
    for reason, files in report.reasons().items():
        shown = ", ".join(str(f) for f in files[:_EXAMPLES])
        more = f" and {len(files) - _EXAMPLES} more" if len(files) > _EXAMPLES else ""
        print(f"refused {len(files)}: {reason} ({shown}{more})", file=sys.stderr)
    return 0 if not report.failures else 1


_EXAMPLES = 3  # refused files named per reason


class _ImportBar:
    """A progress bar on stderr (rich) for ``import-wl``."""

    def __enter__(self) -> _ImportBar:
        from rich.console import Console
        from rich.progress import Progress

        self._progress = Progress(console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task("importing worklist files", total=None)
        return self

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, count: int) -> None:
        self._progress.advance(self._task, count)

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()


def _conformance(settings: Settings, output: str | None) -> int:
    from app.runtime import conformance_statement

    text = conformance_statement(settings)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


ROLES = ("viewer", "scheduler", "admin")
CLI_ACTOR_NAME = "mwl-broker"


def _accounts(settings: Settings, args: argparse.Namespace) -> int:
    """``user add|list`` and ``token add|list|revoke`` straight on the database."""
    from app.db import create_db_engine, create_session_factory, session_scope
    from app.domain.actor import Actor
    from app.domain.errors import DomainError
    from app.domain.status import AuditSource
    from app.migrations import pending_revision
    from app.services import users

    actor = Actor(AuditSource.CLI, CLI_ACTOR_NAME)
    engine = create_db_engine(settings.database_url)
    head = pending_revision(engine, settings.database_url)
    if head is not None:
        engine.dispose()
        print("the database is not migrated: run 'mwl-broker db upgrade'", file=sys.stderr)
        return 2
    password = ""
    if args.command == "user" and args.action == "add":
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            engine.dispose()
            print("give the password on the first line of standard input", file=sys.stderr)
            return 2
    try:
        with session_scope(create_session_factory(engine)) as session:
            if args.command == "user" and args.action == "add":
                user = users.create_user(
                    session, username=args.name, password=password, role=args.role, actor=actor
                )
                print(f"user {user.username} added with role {user.role}")
            elif args.command == "user":
                for u in users.list_users(session):
                    last = u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "-"
                    state = "active" if u.active else "inactive"
                    print(f"{u.id}\t{u.username}\t{u.role}\t{state}\tlast login {last}")
            elif args.action == "add":
                new = users.create_token(session, name=args.name, role=args.role, actor=actor)
                print(
                    f"token {new.token.name} ({new.token.role}); the secret is shown only now:",
                    file=sys.stderr,
                )
                print(new.secret)
            elif args.action == "list":
                for t in users.list_tokens(session):
                    state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
                    used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "-"
                    print(f"{t.id}\t{t.name}\t{t.role}\t{state}\tlast used {used}")
            else:
                users.revoke_token(session, name=args.name, actor=actor)
                print(f"token {args.name} revoked")
    except DomainError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mwl-broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the listeners (all of them by default)")
    serve.add_argument("--only", choices=["dicom", "hl7", "http"], help="run one front-end only")
    sub.add_parser("dicom-worker", help="started by 'serve' with BROKER_DICOM_WORKERS > 1")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    imp = sub.add_parser("import-wl", help="import DCMTK/Orthanc worklist files (*.wl)")
    imp.add_argument("paths", nargs="+", help="worklist files or folders")
    conf = sub.add_parser("conformance", help="print the DICOM conformance statement")
    conf.add_argument("--output", "-o", help="write to this file instead of stdout")
    user = sub.add_parser("user", help="people who sign in to the page and the API")
    user_sub = user.add_subparsers(dest="action", required=True)
    user_add = user_sub.add_parser("add", help="add a user; the password is read from stdin")
    user_add.add_argument("name")
    user_add.add_argument("--role", choices=ROLES, default="viewer")
    user_sub.add_parser("list", help="list users")
    token = sub.add_parser("token", help="API tokens for programs (Authorization: Bearer)")
    token_sub = token.add_subparsers(dest="action", required=True)
    token_add = token_sub.add_parser("add", help="create a token and print its secret once")
    token_add.add_argument("name")
    token_add.add_argument("--role", choices=ROLES, default="viewer")
    token_sub.add_parser("list", help="list tokens (never their secrets)")
    token_revoke = token_sub.add_parser("revoke", help="revoke a token by name")
    token_revoke.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dicom-worker":  # the parent's settings, not this environment's
        return _dicom_worker()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        return _serve(settings, args.only)
    if args.command == "db":
        from app.migrations import upgrade

        upgrade(settings.database_url)
        LOG.info("database schema is up to date")
        return 0
    if args.command in ("user", "token"):
        return _accounts(settings, args)
    if args.command == "import-wl":
        return _import_wl(settings, args.paths)
    return _conformance(settings, args.output)


if __name__ == "__main__":
    sys.exit(main())
