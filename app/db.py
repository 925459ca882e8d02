"""Engine and sessions, built once per process from the settings.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so the DICOM, HL7 and HTTP
front-ends of one process can read while one of them writes. PostgreSQL uses a pooled engine
whose connections are checked (``SELECT 1``) before reuse once they sat idle in the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

SessionFactory = Callable[[], Session]


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # FULL: a commit is on disk before it returns, so an order ACKed AA survives a power cut too
    # (NORMAL in WAL mode would only survive a process crash).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


@dataclass(frozen=True)
class PoolLimits:
    """Connection pool bounds (SQLAlchemy ``QueuePool``)."""

    size: int = 10
    overflow: int = 20
    timeout: float = 30.0  # seconds a session waits for a connection before it fails

    @classmethod
    def for_front_ends(
        cls, max_associations: int, *, dicom: bool = True, hl7: bool = True
    ) -> PoolLimits:
        """Room for every DICOM association at once plus the rest of the process.

        An association runs one DIMSE operation at a time and each holds at most one
        connection, so DICOM can never take more than ``max_associations``: the HL7 workers
        (``HL7_WORKERS``) and HTTP requests and background jobs (``OTHER_HEADROOM``) always find
        one. The short timeout makes a starved request fail with a status instead of hanging.
        A process that runs only some front ends (``serve --only``) sizes for those.
        """
        return cls(
            size=(max_associations if dicom else 0) + (HL7_WORKERS if hl7 else 0) + OTHER_HEADROOM,
            overflow=OTHER_HEADROOM,
            timeout=FRONT_END_POOL_TIMEOUT,
        )


HL7_WORKERS = 8  # hl7_ingest.server.MllpServer's worker threads
OTHER_HEADROOM = 10  # HTTP requests, event streams, the outbox and the retention job
FRONT_END_POOL_TIMEOUT = 5.0


def _is_memory(url: str) -> bool:
    return make_url(url).database in (None, "", ":memory:")


def create_db_engine(url: str, pool: PoolLimits | None = None) -> Engine:
    limits = pool or PoolLimits()
    sized: dict[str, Any] = {
        "pool_size": limits.size,
        "max_overflow": limits.overflow,
        "pool_timeout": limits.timeout,
    }
    if url.startswith("sqlite"):
        _prepare_sqlite_file(url)
        extra = {} if _is_memory(url) else sized
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **extra
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, **sized)
    _ping_after_idle(engine)
    return engine


PING_AFTER_IDLE = 1.0  # seconds in the pool after which a connection is checked before use
_IDLE_SINCE = "mwl_idle_since"


def _ping_after_idle(engine: Engine) -> None:
    """Check a connection that sat in the pool for ``PING_AFTER_IDLE`` seconds before handing
    it out; a dead one (the server restarted, a firewall dropped it) is replaced unseen.

    SQLAlchemy's ``pool_pre_ping`` checks on every checkout: a round trip per session, beside
    the 11 an HL7 order makes on PostgreSQL. A connection in steady use was just used; one that
    a restart could have killed has waited for that restart.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # new, or back from use just now
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool connects afresh (DisconnectionError's contract)
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


BULK_CACHE_KIB = 16384  # page cache per connection while importing (SQLite default: 2 MiB)
BULK_WAL_PAGES = 20000  # WAL pages between automatic checkpoints while importing (default 1000)


def tune_for_bulk_writes(engine: Engine) -> None:
    """Set an engine that only bulk-loads (``import-wl``) for large transactions.

    SQLite: a bigger page cache (the indexes of 100,000 items outgrow the default 2 MiB) and
    fewer, larger WAL checkpoints. ``synchronous`` stays FULL: a committed batch is on disk as
    any commit is. Per connection of this engine only; the server's connections keep the
    defaults, and their next commit checkpoints the WAL. PostgreSQL: nothing to change.
    """
    if engine.dialect.name != "sqlite":
        return

    def tune(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={BULK_WAL_PAGES}")
        cursor.close()

    event.listen(engine, "connect", tune)


def create_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def check_database(engine: Engine) -> str | None:
    """``None`` when the database answers, else the reason it does not."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # the health endpoint reports any failure, whatever its type
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None
