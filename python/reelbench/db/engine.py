"""Engines, sessions and schema upgrades for SQLite and PostgreSQL.

``open_database(url)`` is the one entry point commands use: it builds the
engine, brings the schema to the newest migration (an empty database is
created on first use) and returns a session factory.

SQLite is configured for several threads and processes sharing one file:
WAL journal (readers never block the writer), a busy timeout (writers wait
instead of failing), foreign keys enforced, and every transaction opened with
``BEGIN IMMEDIATE``. A deferred transaction that reads first and writes later
fails with SQLITE_BUSY when another writer got in between (the busy timeout
cannot help an upgrade from a stale snapshot); taking the write lock up front
makes writers queue in order instead. Python's ``sqlite3`` driver would issue
its own ``BEGIN`` lazily, so it is switched off and SQLAlchemy's ``begin``
event emits ours (the recipe in SQLAlchemy's pysqlite documentation).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from reelbench.errors import ReelbenchError
from reelbench.settings import DEFAULT_DATABASE_URL, display_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Database",
    "DatabaseNotFound",
    "current_revision",
    "head_revision",
    "make_engine",
    "missing_database_message",
    "normalize_url",
    "open_database",
    "read_transaction",
    "session_factory",
    "sqlite_file",
    "upgrade",
]

#: Seconds a SQLite writer waits for the lock before giving up.
SQLITE_BUSY_TIMEOUT_SECONDS = 60

#: Seconds a PostgreSQL statement waits for a lock (a row another transaction
#: is writing, a table under migration) before it fails. Every transaction of
#: the queue is short, so a longer wait means something is stuck; the failure
#: is an ``OperationalError``, retried like an outage (with a warning in the
#: log), and a stopping worker gives up instead of hanging.
LOCK_TIMEOUT_SECONDS = 30.0

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant works; it only has to be the same in every process.
_PG_MIGRATION_LOCK_KEY = 0x7265656C  # "reel"


class DatabaseNotFound(ReelbenchError):
    """The database URL points to an SQLite file that does not exist."""


def normalize_url(url: str) -> str:
    """Return ``url`` with the driver reelbench uses made explicit.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``
    (psycopg 3).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def missing_database_message(url: str, path: Path) -> str:
    """What to say when a command that only reads finds no SQLite file."""
    return (
        f"no database at {path.resolve()} (from {display_url(url)}); run "
        "`reelbench run SPEC` or `reelbench submit SPEC` first, or pass --db"
    )


_HOLDS_WRITE_LOCK = "reelbench_holds_write_lock"

#: Execution option of a transaction that only reads (see :func:`read_transaction`).
READ_ONLY = "reelbench_read_only"


def read_transaction(session: Session) -> None:
    """Mark the session's next transaction as read-only; call before its first statement.

    On SQLite it then begins DEFERRED instead of IMMEDIATE, so a read never
    queues behind writers for the write lock. It must not write: a deferred
    transaction that tries to write after another writer committed fails.
    """
    if not session.in_transaction():
        session.connection(execution_options={READ_ONLY: True})


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL is durable across application crashes; only a power
        # loss can drop the last commits, never corrupt the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # Writers of one process queue on a Python lock before BEGIN IMMEDIATE:
    # SQLite's own busy handler makes a waiting writer sleep 1, 2, 5, 10 ms...
    # between tries, which on the queue's hot path costs more than the
    # transactions themselves. Other processes still meet SQLite's lock.
    writers = threading.Lock()

    def _release(info: dict[str, Any]) -> None:
        if info.pop(_HOLDS_WRITE_LOCK, False):
            writers.release()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads marked with read_transaction() take no write lock: in WAL mode
        # they never wait for a writer, nor make one wait.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN DEFERRED")
            return
        info = conn.connection.info
        if not info.get(_HOLDS_WRITE_LOCK) and writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_SECONDS):
            info[_HOLDS_WRITE_LOCK] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(info)
            raise

    def _on_end(conn: Connection) -> None:
        _release(conn.connection.info)

    # Pool listeners take each event's exact arguments: SQLAlchemy tells its
    # signatures apart by the number of positional parameters.
    def _on_returned(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            _release(record.info)

    def _on_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        if record is not None:
            _release(record.info)

    def _on_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
        if record is not None:
            _release(record.info)

    for name in ("commit", "rollback"):
        event.listen(engine, name, _on_end)
    # Safety nets: a connection returned, reset or dropped never keeps the lock.
    event.listen(engine.pool, "checkin", _on_returned)
    event.listen(engine.pool, "close", _on_returned)
    event.listen(engine.pool, "reset", _on_reset)
    event.listen(engine.pool, "invalidate", _on_invalidate)


#: A pooled PostgreSQL connection idle for longer than this is checked before use.
IDLE_PING_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling, only for connections that sat idle.

    After a server restart every pooled connection is dead; a ping on checkout
    swaps each for a fresh one before the caller sees an error. SQLAlchemy's
    ``pool_pre_ping`` pings on every checkout, which costs a round trip per
    transaction on the queue's hot path; a connection returned a moment ago
    is alive often enough that the ping is skipped. One that dies anyway
    raises a disconnect error, the pool is invalidated and the caller retries.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in_at")
        if last is None or time.monotonic() - last < IDLE_PING_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool discards this connection and tries a new one.
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _bound_lock_waits(engine: Engine, seconds: float) -> None:
    """Give every new PostgreSQL connection a ``lock_timeout`` (see LOCK_TIMEOUT_SECONDS)."""
    milliseconds = max(1, round(seconds * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {milliseconds}")
        cursor.close()
        # A session-level SET survives the commit (a rollback would undo it).
        dbapi_connection.commit()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` configured for concurrent workers.

    PostgreSQL connections idle in the pool are checked with a ping before
    use, so a worker survives a database restart, and no statement waits
    for a lock longer than ``lock_timeout`` seconds (default
    :data:`LOCK_TIMEOUT_SECONDS`); SQLite gets WAL, a busy timeout,
    foreign keys and ``BEGIN IMMEDIATE`` transactions.
    """
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        # No overflow limit: a worker's threads hold at most one connection
        # each, so --concurrency already bounds the count; a fixed cap would
        # make threads time out waiting for the pool instead.
        options: dict[str, Any] = {
            "connect_args": {"check_same_thread": False},
            "pool_size": 5,
            "max_overflow": -1,
        }
        options.update(kwargs)
        engine = create_engine(url, **options)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        lock_timeout = float(kwargs.pop("lock_timeout", LOCK_TIMEOUT_SECONDS))
        options = {"pool_size": 10, "max_overflow": -1}  # see the SQLite case
        options.update(kwargs)
        engine = create_engine(url, **options)
        _ping_idle_connections(engine)
        _bound_lock_waits(engine, lock_timeout)
        return engine
    raise ValueError(
        f"unsupported database URL {make_url(url).render_as_string()!r}: "
        "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/dbname"
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory for ``engine``.

    ``expire_on_commit=False``: reading an attribute after a commit must not
    silently open a new transaction (on SQLite that would hold the write lock
    while a provider works).
    """
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> Config:
    # Alembic is imported only when a migration may be needed: every command
    # that opens a database pays for it otherwise (about half a second).
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of reelbench."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database at ``engine`` is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_REVISION = re.compile(r"^revision(?:\s*:\s*[^=]+)?\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:\s*[^=]+)?\s*=(.*)$", re.M)


@functools.cache
def _shipped_head() -> str | None:
    """The newest shipped migration read from the files' ``revision``/``down_revision`` lines.

    None when it is not one plain head (the caller then asks Alembic).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.findall(source)
        if not found:
            continue
        if len(found) != 1:
            return None
        revisions.add(found[0])
        down = _DOWN.search(source)
        if down is not None:
            parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """True when the database is at the newest shipped migration, read with one plain query."""
    head = _shipped_head()
    if head is None:
        return False
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return False  # no version table yet (an empty database): migrate
    return [row[0] for row in rows] == [head]


def upgrade(target: Engine | str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), creating it if empty.

    Safe when several workers start at once against an empty database: on
    PostgreSQL an advisory lock serializes them, on SQLite the migration runs
    inside one ``BEGIN IMMEDIATE`` transaction; the loser finds it done.
    """
    if isinstance(target, str):
        path = sqlite_file(normalize_url(target))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        if revision == "head" and _at_head(engine):
            return
        if revision == "head" and current_revision(engine) == head_revision():
            return
        from alembic import command

        config = _alembic_config()
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


@dataclass(frozen=True)
class Database:
    """An engine and its session factory, schema up to date."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    #: True when this call created the SQLite file (a new, empty database).
    created: bool = False

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_upgraded: set[str] = set()
_upgraded_lock = threading.Lock()


def open_database(
    url: str = DEFAULT_DATABASE_URL, *, migrate: bool = True, create: bool = True
) -> Database:
    """Connect to ``url`` and upgrade its schema on first use in this process.

    A SQLite file that does not exist is created (with its folder) only when
    ``create`` is true; otherwise :class:`DatabaseNotFound` is raised, so a
    mistyped path never silently starts an empty database.
    """
    url = normalize_url(url)
    path = sqlite_file(url)
    created = False
    if path is not None and not path.exists():
        if not create:
            raise DatabaseNotFound(missing_database_message(url, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        created = True
    engine = make_engine(url)
    if migrate:
        with _upgraded_lock:
            if url not in _upgraded:
                upgrade(engine)
                _upgraded.add(url)
    return Database(url=url, engine=engine, sessions=session_factory(engine), created=created)
