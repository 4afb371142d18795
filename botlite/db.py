"""The app database from a URL: SQLite (default) or PostgreSQL, through peewee.

Models are bound to ``database`` (a proxy) so the URL is chosen at start-up.
peewee keeps one connection per thread; web requests and tasks each take one
from the pool on entry and give it back on exit (see web/app.py and app.py).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect as connect_url
from playhouse.migrations import Runner
from playhouse.pool import PooledSqliteDatabase

logger = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "synchronous": "normal",
    "cache_size": -16000,
}


def sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL, or None for other schemes."""
    if not url.startswith("sqlite:///"):
        return None
    return os.path.abspath(url[len("sqlite:///"):])


POOL_SIZE = 64          # connections kept open for web threads and workers
POOL_IDLE_SECONDS = 600  # an idle connection older than this is closed


def open_database(url: str) -> peewee.Database:
    """A pooled peewee database for ``url`` (not yet connected).

    Requests and tasks still "open" a connection on entry and "close" it on exit,
    but the pool keeps it: opening a SQLite connection (pragmas, schema, a cold
    page cache) costs milliseconds a chat turn cannot spare.
    """
    path = sqlite_path(url)
    if path is not None:
        return PooledSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, max_connections=POOL_SIZE,
                                    stale_timeout=POOL_IDLE_SECONDS, timeout=30,
                                    check_same_thread=False)
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        return connect_url(scheme + "+pool" + url[len(scheme):], max_connections=POOL_SIZE,
                           stale_timeout=POOL_IDLE_SECONDS, timeout=30)
    raise ValueError("unsupported database URL scheme %r" % scheme)


def bind(db: peewee.Database) -> peewee.Database:
    database.initialize(db)
    return db


@contextlib.contextmanager
def _migration_lock(db: peewee.Database):
    """Serialise schema changes between processes starting at the same time."""
    if isinstance(db, peewee.SqliteDatabase):
        descriptor = os.open(db.database + ".migrate.lock", os.O_CREAT | os.O_RDWR, 0o600)
        with open(descriptor, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        key = int.from_bytes(hashlib.sha256(b"botlite-migrate").digest()[:7], "big")
        db.execute_sql("select pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            db.execute_sql("select pg_advisory_unlock(%s)", (key,))


def migrate(db: peewee.Database, target: str | None = None) -> list[str]:
    """Apply pending migrations in order (up to ``target``); return their names."""
    runner = Runner(db, MIGRATIONS_DIR, table_name="botlite_migration")
    with db.connection_context(), _migration_lock(db):
        applied = runner.up(target)
    return applied


def schema_version(db: peewee.Database) -> str | None:
    runner = Runner(db, MIGRATIONS_DIR, table_name="botlite_migration")
    with db.connection_context():
        names = sorted(runner.applied())
    return names[-1] if names else None


def execute(statement: str, params: tuple = ()):
    """Run plain SQL written with ``?`` placeholders on the app database (either
    kind) and return the cursor. For the hot paths (a chat turn), where building
    the query with peewee costs more than running it."""
    db = database.obj
    if db.param != "?":
        statement = statement.replace("?", db.param)
    return db.execute_sql(statement, params)


def write_transaction():
    """A transaction that will write: on SQLite it takes the write lock up front
    (BEGIN IMMEDIATE), because a deferred one that reads first cannot upgrade
    once another connection has committed (it fails with "database is locked")."""
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()
