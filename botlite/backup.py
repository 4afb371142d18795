"""Online backups of the SQLite databases, and restoring one.

A backup is a consistent copy made with SQLite's online backup API while
botlite runs (readers never block writers in WAL mode), written as
``<data dir>/backups/<kind>-<UTC time>.db`` where kind is ``app`` (the app
database) or ``queue`` (the task queue). Each copy carries a table
``botlite_backup`` naming its kind, which is how ``restore`` knows a botlite
backup and where it goes. PostgreSQL databases and Redis queues are not copied
(their own tools do that): the result says so.

While ``serve`` or ``worker`` runs it holds a shared lock on
``<database file>.running.lock`` next to each SQLite database it uses;
``restore`` takes that lock exclusively (without waiting), so it refuses while
any botlite process has the database open, heartbeat or not.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import sqlite3
import time

from botlite import __version__
from botlite.db import MIGRATIONS_DIR, sqlite_path
from botlite.timeutil import isoformat, utcnow

BACKUP_DIR = "backups"
MARKER = "botlite_backup"
KINDS = ("app", "queue")
SQLITE_MAGIC = b"SQLite format 3\x00"
NAME = re.compile(r"^(app|queue)-\d{8}T\d{6}(\d{3})?Z(-\d+)?\.db$")


class BackupError(Exception):
    """A file that cannot be restored, or a restore that must not run now."""


class BotliteRunning(BackupError):
    """A serve or worker process holds the database's running lock."""


RUNNING_LOCK_SUFFIX = ".running.lock"


def _lock_file(path: str):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    return open(path + RUNNING_LOCK_SUFFIX, "a+")


@contextlib.contextmanager
def running(database_url: str, broker_url: str):
    """Held by serve and worker for as long as they run: a shared lock on each
    SQLite database's running lock (restore takes it exclusively)."""
    handles = []
    try:
        for url in dict.fromkeys((database_url, broker_url)):
            path = sqlite_path(url)
            if path is not None:
                handle = _lock_file(path)
                handles.append(handle)
                fcntl.flock(handle, fcntl.LOCK_SH)
        yield
    finally:
        for handle in handles:
            handle.close()  # closing the file releases its lock


@contextlib.contextmanager
def _exclusive(path: str):
    """The database's running lock, exclusively; BotliteRunning at once if taken."""
    handle = _lock_file(path)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BotliteRunning("botlite is running (a serve or worker process holds %s): "
                                 "stop every serve and worker first"
                                 % (path + RUNNING_LOCK_SUFFIX)) from None
        yield
    finally:
        handle.close()


def backup_dir(data_dir: str) -> str:
    return os.path.join(data_dir, BACKUP_DIR)


def _skip_reason(kind: str, url: str) -> str:
    scheme = url.split(":", 1)[0]
    if kind == "app":
        return ("the app database is on PostgreSQL: back it up with pg_dump "
                "(botlite copies SQLite files only)")
    if scheme.startswith("redis"):
        return ("the queue is on Redis: its own persistence (RDB snapshots or AOF) is the "
                "backup; botlite copies SQLite files only")
    return ("the queue is on PostgreSQL: back it up with pg_dump "
            "(botlite copies SQLite files only)")


def _copy(source: str, target: str) -> None:
    """A consistent copy of the SQLite file ``source`` as ``target`` (rollback journal)."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("pragma journal_mode=delete")
        finally:
            dst.close()
    finally:
        src.close()


def _private_folder(folder: str) -> None:
    """The backups folder, readable by its owner only (backups hold every secret)."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)


def backup_one(kind: str, path: str, folder: str, keep: int) -> dict:
    _private_folder(folder)
    now = utcnow()
    stamp = now.strftime("%Y%m%dT%H%M%S") + "%03dZ" % (now.microsecond // 1000)
    target = os.path.join(folder, "%s-%s.db" % (kind, stamp))
    number = 2
    while os.path.exists(target):
        target = os.path.join(folder, "%s-%s-%d.db" % (kind, stamp, number))
        number += 1
    partial = target + ".partial"
    started = time.perf_counter()
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        _copy(path, partial)
        conn = sqlite3.connect(partial)
        try:
            with conn:
                conn.execute("create table %s (kind text not null, created_at text not null, "
                             "source text not null, version text not null)" % MARKER)
                conn.execute("insert into %s values (?, ?, ?, ?)" % MARKER,
                             (kind, isoformat(now), path, __version__))
            check = conn.execute("pragma quick_check").fetchone()[0]
        finally:
            conn.close()
        if check != "ok":
            raise BackupError("the copy of %s failed its integrity check: %s" % (path, check))
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    removed = prune(folder, kind, keep)
    return {"file": target, "bytes": os.path.getsize(target),
            "seconds": round(time.perf_counter() - started, 3), "removed": removed}


def prune(folder: str, kind: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` backups of ``kind``."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, kind + "-*.db"))
                   if NAME.match(os.path.basename(p)))
    stale = names[:-keep] if keep > 0 else names
    for name in stale:
        os.unlink(os.path.join(folder, name))
    return [os.path.join(folder, name) for name in stale]


def backup_all(data_dir: str, database_url: str, broker_url: str, keep: int) -> dict:
    """Back up the app database and the queue (each when it is SQLite)."""
    folder = backup_dir(data_dir)
    result = {"folder": folder, "keep": keep}
    for kind, url in (("app", database_url), ("queue", broker_url)):
        path = sqlite_path(url)
        result[kind] = ({"skipped": _skip_reason(kind, url)} if path is None
                        else backup_one(kind, path, folder, keep))
    return result


# -- restore ------------------------------------------------------------------------------

def inspect(file: str) -> dict:
    """The marker of a botlite backup file, or BackupError saying why it is not one."""
    if not os.path.isfile(file):
        raise BackupError("no such file: %s" % file)
    with open(file, "rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise BackupError("%s is not a SQLite database, so not a botlite backup" % file)
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % os.path.abspath(file), uri=True)
    except sqlite3.Error as exc:
        raise BackupError("cannot open %s: %s" % (file, exc)) from None
    try:
        try:
            rows = conn.execute("select kind, created_at, source, version from %s"
                                % MARKER).fetchall()
        except sqlite3.DatabaseError:
            raise BackupError("%s is not a botlite backup (no %s table; make backups with "
                              "backup_data or `python -m botlite backup`)"
                              % (file, MARKER)) from None
        if len(rows) != 1 or rows[0][0] not in KINDS:
            raise BackupError("%s has a damaged %s table" % (file, MARKER))
        check = conn.execute("pragma quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError("%s is damaged: %s" % (file, check))
    except sqlite3.DatabaseError as exc:
        raise BackupError("%s is damaged: %s" % (file, exc)) from None
    finally:
        conn.close()
    kind, created_at, source, version = rows[0]
    return {"kind": kind, "created_at": created_at, "source": source, "version": version}


def known_migrations() -> set[str]:
    return {name[:-3] for name in os.listdir(MIGRATIONS_DIR)
            if name[:4].isdigit() and name.endswith(".py")}


def _newer_schema(file: str) -> list[str]:
    """Migrations the backup has applied that this code does not know."""
    conn = sqlite3.connect("file:%s?mode=ro" % os.path.abspath(file), uri=True)
    try:
        applied = [name for (name,) in conn.execute("select name from botlite_migration")]
    except sqlite3.DatabaseError:
        return []  # a queue backup, or an app database older than migrations
    finally:
        conn.close()
    return sorted(set(applied) - known_migrations())


def _stamp() -> str:
    now = utcnow()
    return now.strftime("%Y%m%dT%H%M%S") + "%06dZ" % now.microsecond


def _set_aside(target: str) -> str:
    """Copy the current database to ``<target>.before-restore-<UTC time>``: with
    SQLite when it can read it, else (a damaged file) byte for byte with its
    -wal and -shm."""
    previous = "%s.before-restore-%s" % (target, _stamp())
    partial = previous + ".partial"
    try:
        if not _readable(target):
            raise sqlite3.DatabaseError("not readable")
        _copy(target, partial)
    except sqlite3.Error:
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(partial + suffix):
                os.unlink(partial + suffix)
        shutil.copyfile(target, partial)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(target + suffix):
                shutil.copyfile(target + suffix, previous + suffix)
    os.chmod(partial, 0o600)
    os.replace(partial, previous)
    return previous


def _readable(target: str) -> bool:
    """Whether SQLite can read ``target``. A file without SQLite's header is judged
    without opening it: SQLite keeps per-file state in the process, and the file
    is about to be overwritten."""
    with open(target, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        return False
    conn = sqlite3.connect(target, timeout=30)
    try:
        conn.execute("select count(*) from sqlite_master").fetchone()
        return True
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _copy_into(staged: str, target: str) -> None:
    """Write the staged database's pages into ``target`` with SQLite's backup API:
    the file keeps its inode, owner and mode, and SQLite takes care of its WAL."""
    src = sqlite3.connect(staged)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst)
            dst.execute("pragma journal_mode=wal")
        finally:
            dst.close()
    finally:
        src.close()


def _overwrite_in_place(staged: str, target: str) -> None:
    """Write the staged file's bytes over a damaged database (SQLite cannot open
    it), keeping the file's inode, owner and mode; its -wal/-shm go."""
    for suffix in ("-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.unlink(target + suffix)
    with open(staged, "rb") as source, open(target, "r+b") as handle:
        handle.truncate(0)
        shutil.copyfileobj(source, handle)
        handle.flush()
        os.fsync(handle.fileno())


def restore(file: str, database_url: str, broker_url: str) -> dict:
    """Put a backup back in place of the database it came from (app or queue).

    botlite must be stopped: this holds the database's running lock exclusively
    (BotliteRunning otherwise). The current file is first copied to
    ``<file>.before-restore-<UTC time>``; then the backup's pages are written into
    the live file, which keeps its inode, owner and mode. Dashboard sessions are
    not restored: browsers log in again.
    """
    marker = inspect(file)
    newer = _newer_schema(file)
    if newer:
        raise BackupError("%s was made by a newer botlite (schema %s, unknown to version %s): "
                          "restore it with that version or newer" % (file, newer[-1],
                                                                      __version__))
    url = database_url if marker["kind"] == "app" else broker_url
    target = sqlite_path(url)
    if target is None:
        raise BackupError("%s is a backup of a SQLite %s database, but this botlite uses %s"
                          % (file, marker["kind"], url.split(":", 1)[0]))
    with _exclusive(target):
        previous = _set_aside(target) if os.path.exists(target) else None
        staged = "%s.restoring-%s" % (target, _stamp())
        try:
            _copy(file, staged)
            conn = sqlite3.connect(staged)
            try:
                with conn:
                    conn.execute("drop table %s" % MARKER)
                    if marker["kind"] == "app" and conn.execute(
                            "select 1 from sqlite_master where name = 'web_session'").fetchone():
                        # Logins ended since the backup was made must not come back:
                        # after a restore everyone logs in again.
                        conn.execute("delete from web_session")
            finally:
                conn.close()
            if previous is not None and not _readable(previous):
                _overwrite_in_place(staged, target)  # damaged: kept as ``previous``
            else:
                _copy_into(staged, target)
        finally:
            for leftover in (staged, staged + "-journal"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
    return dict(marker, restored=target, previous=previous)
