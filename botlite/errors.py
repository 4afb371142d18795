"""The errors botlite reports to clients: an HTTP status, a code, a message.

Every API error reaches the client as ``{"error": {"code", "message"}}``.
A full, read-only or failing disk is not a bug: `storage_error` tells those
exceptions apart, wherever they were raised (os, sqlite3, peewee, huey).
"""
from __future__ import annotations

import errno
import os
import sqlite3

import peewee


class BotliteError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class BadRequest(BotliteError):
    status, code = 400, "bad_request"


class Unauthorized(BotliteError):
    status, code = 401, "unauthorized"


class Forbidden(BotliteError):
    status, code = 403, "forbidden"


class NotFound(BotliteError):
    status, code = 404, "not_found"


class MethodNotAllowed(BotliteError):
    status, code = 405, "method_not_allowed"


class Conflict(BotliteError):
    status, code = 409, "conflict"


class PayloadTooLarge(BotliteError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(BotliteError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(BotliteError):
    """Over a rate limit; ``retry_after`` seconds until the next request is accepted."""
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after)}


class InternalError(BotliteError):
    status, code = 500, "internal_error"


class ServiceUnavailable(BotliteError):
    status, code = 503, "unavailable"


class StorageUnavailable(BotliteError):
    """The disk refused a write: read-only, not permitted, or failing."""
    status, code = 503, "storage_read_only"


class InsufficientStorage(BotliteError):
    status, code = 507, "insufficient_storage"


STATUS_CODES = {cls.status: cls.code for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
    PayloadTooLarge, UnsupportedMediaType, TooManyRequests, InternalError, ServiceUnavailable,
    InsufficientStorage)}


# -- storage failures ------------------------------------------------------------------

FULL, READ_ONLY, FAILING = "full", "read_only", "failing"
"""What `storage_problem` finds: no space left, no write allowed, the disk failing."""

FULL_BELOW_BYTES = 1024 * 1024
"""A disk with less free space than this counts as full."""

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
# SQLite's messages (peewee and huey pass them on): SQLITE_FULL, SQLITE_READONLY,
# SQLITE_CANTOPEN, SQLITE_IOERR. A new connection on a full disk often gets an
# I/O error (it cannot grow the -shm or -wal file) rather than SQLITE_FULL.
_SQLITE_FULL = "database or disk is full"
_SQLITE_READ_ONLY = "attempt to write a readonly database"
_SQLITE_CANTOPEN = "unable to open database file"
_SQLITE_IOERR = "disk i/o error"


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or while handling."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_is_full(path: str) -> bool:
    try:
        usage = os.statvfs(path)
    except OSError:
        return False
    return usage.f_bavail * usage.f_frsize < FULL_BELOW_BYTES


def _not_writable(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY) or not os.access(path, os.W_OK)
    except OSError:
        return False


def _inside(filename, data_dir: str | None) -> bool:
    if data_dir is None or not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    path = os.path.realpath(os.fsdecode(filename))
    root = os.path.realpath(data_dir)
    return path == root or path.startswith(root + os.sep)


def _problem_of(exc: BaseException, data_dir: str | None) -> str | None:
    if isinstance(exc, OSError):
        if exc.errno in _FULL_ERRNOS:
            return FULL
        if exc.errno == errno.EROFS:
            return READ_ONLY
        if exc.errno in _DENIED_ERRNOS and (_inside(exc.filename, data_dir) or
                                            _inside(exc.filename2, data_dir)):
            return READ_ONLY
        if exc.errno == errno.EIO:
            return FAILING
        return None
    if not isinstance(exc, (sqlite3.Error, peewee.PeeweeException)):
        return None
    message = str(exc).lower()
    if _SQLITE_FULL in message:
        return FULL
    if _SQLITE_READ_ONLY in message:
        return READ_ONLY
    if _SQLITE_IOERR in message or _SQLITE_CANTOPEN in message:
        if data_dir is not None and disk_is_full(data_dir):
            return FULL
        if data_dir is not None and _not_writable(data_dir):
            return READ_ONLY
        # SQLITE_CANTOPEN on a writable disk with room: no storage problem (too many
        # open files, a missing directory): a bug to look into.
        return FAILING if _SQLITE_IOERR in message else None
    return None


def storage_failure(exc: BaseException, data_dir: str | None = None
                    ) -> tuple[str, BaseException] | None:
    """(`FULL`, `READ_ONLY` or `FAILING`, the exception that says so) when ``exc``
    (or an exception it was raised from or while handling) is the disk refusing a
    write, else None.

    Permission errors count only on files under ``data_dir``; SQLite's vaguer
    errors (an I/O error, a file it cannot open) are told apart by looking at
    ``data_dir``'s disk.
    """
    for each in _chain(exc):
        problem = _problem_of(each, data_dir)
        if problem is not None:
            return problem, each
    return None


def storage_problem(exc: BaseException, data_dir: str | None = None) -> str | None:
    """The problem of `storage_failure`, or None."""
    failure = storage_failure(exc, data_dir)
    return None if failure is None else failure[0]


def describe(exc: BaseException) -> str:
    """``exc`` in one line, for a log: its type and first line."""
    lines = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, lines[0]) if lines else type(exc).__name__


def storage_error(problem: str, data_dir: str, public: bool = False) -> BotliteError:
    """The client error for a `storage_problem`: 507 when the disk is full, 503
    when it takes no writes. ``public``: for anonymous callers, whose message
    does not name the data directory."""
    where = os.path.abspath(data_dir)
    if problem == FULL:
        return InsufficientStorage(
            "the server is out of disk space; try again later" if public else
            "the disk holding %s is full: free space on it, then retry" % where)
    if problem == READ_ONLY:
        return StorageUnavailable(
            "the server cannot store data right now; try again later" if public else
            "botlite may not write to %s (a read-only disk or missing permissions): make "
            "it writable for the user botlite runs as, then retry" % where)
    return StorageUnavailable(
        "the server cannot store data right now; try again later" if public else
        "a write to the disk holding %s failed (an I/O error): check the disk and "
        "the system log, then retry" % where, code="storage_failing")
