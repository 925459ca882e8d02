"""``mwl-broker`` command line: serve, db upgrade, import-wl, conformance."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from app.config import Settings, SettingsError, load_settings
from app.migrations import pending_revision, upgrade

LOG = logging.getLogger("mwl_broker")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # pynetdicom narrates every PDU at INFO; keep it for DEBUG sessions only.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def _serve(settings: Settings, only: str | None) -> int:
    from app.runtime import Broker

    broker = Broker(settings, only=only)
    head = pending_revision(broker.engine, settings.database_url)
    if head is not None:
        LOG.error("the database is not at schema revision %s: run 'mwl-broker db upgrade'", head)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        ports = broker.start()
    except OSError as exc:
        LOG.error("cannot listen: %s", exc)
        broker.stop()
        return 2
    for name, port in ports.items():
        LOG.info("%s listening on %s:%d", name.upper(), settings.bind_host, port)
    stop.wait()
    LOG.info("stopping")
    broker.stop()
    return 0


def _import_wl(settings: Settings, paths: list[str]) -> int:
    from app.runtime import import_worklist_files

    report = import_worklist_files(settings, [Path(p) for p in paths])
    for failure in report.failures:
        print(f"skipped {failure.path}: {failure.reason}", file=sys.stderr)
    print(f"imported {report.imported} worklist file(s), {len(report.failures)} skipped")
    return 0 if not report.failures else 1


def _conformance(settings: Settings, output: str | None) -> int:
    from app.runtime import conformance_statement

    text = conformance_statement(settings)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mwl-broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the listeners (all of them by default)")
    serve.add_argument("--only", choices=["dicom", "hl7", "http"], help="run one front-end only")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    imp = sub.add_parser("import-wl", help="import DCMTK/Orthanc worklist files (*.wl)")
    imp.add_argument("paths", nargs="+", help="worklist files or folders")
    conf = sub.add_parser("conformance", help="print the DICOM conformance statement")
    conf.add_argument("--output", "-o", help="write to this file instead of stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        return _serve(settings, args.only)
    if args.command == "db":
        upgrade(settings.database_url)
        LOG.info("database schema is up to date")
        return 0
    if args.command == "import-wl":
        return _import_wl(settings, args.paths)
    return _conformance(settings, args.output)


if __name__ == "__main__":
    sys.exit(main())
