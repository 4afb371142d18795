"""Online backups of the SQLite databases, and restoring one.

A backup is a consistent copy made with SQLite's online backup API while
botlite runs (readers never block writers in WAL mode), written as
``<data dir>/backups/<kind>-<UTC time>.db`` where kind is ``app`` (the app
database) or ``queue`` (the task queue). Each copy carries a table
``botlite_backup`` naming its kind, which is how ``restore`` knows a botlite
backup and where it goes. PostgreSQL databases and Redis queues are not copied
(their own tools do that): the result says so.
"""
from __future__ import annotations

import glob
import os
import re
import sqlite3
import time

from botlite import __version__
from botlite.db import sqlite_path
from botlite.timeutil import isoformat, utcnow

BACKUP_DIR = "backups"
MARKER = "botlite_backup"
KINDS = ("app", "queue")
SQLITE_MAGIC = b"SQLite format 3\x00"
NAME = re.compile(r"^(app|queue)-\d{8}T\d{6}(\d{3})?Z(-\d+)?\.db$")


class BackupError(Exception):
    """A file that cannot be restored, or a restore that must not run now."""


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


def backup_one(kind: str, path: str, folder: str, keep: int) -> dict:
    os.makedirs(folder, exist_ok=True)
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


def restore(file: str, database_url: str, broker_url: str) -> dict:
    """Put a backup back in place of the database it came from (app or queue).

    botlite must be stopped: the caller checks for live workers first. The
    current file is first copied to ``<file>.before-restore``.
    """
    marker = inspect(file)
    url = database_url if marker["kind"] == "app" else broker_url
    target = sqlite_path(url)
    if target is None:
        raise BackupError("%s is a backup of a SQLite %s database, but this botlite uses %s"
                          % (file, marker["kind"], url.split(":", 1)[0]))
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    previous = None
    if os.path.exists(target):
        previous = target + ".before-restore"
        _copy(target, previous + ".partial")
        os.replace(previous + ".partial", previous)
    staged = target + ".restoring"
    try:
        _copy(file, staged)
        conn = sqlite3.connect(staged)
        try:
            with conn:
                conn.execute("drop table %s" % MARKER)
            conn.execute("pragma journal_mode=wal")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):  # they belong to the file being replaced
            if os.path.exists(target + suffix):
                os.unlink(target + suffix)
        os.replace(staged, target)
    finally:
        for leftover in (staged, staged + "-wal", staged + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return dict(marker, restored=target, previous=previous)
