"""What /healthz reports: the database, the queue, the workers' heartbeats, the
data directory's disk, the chat turn log.

The endpoint is public, so failures are reported generically; the details go
to the log. `check_storage` is the storage part on its own (for a readiness
check: a server whose disk is full should not get new traffic).
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time

from botlite import errors, operations
from botlite.knowledge import embedding, vectors
from botlite.runner import HEARTBEAT_MAX_AGE

logger = logging.getLogger(__name__)

PROBE_INTERVAL = 1.0
"""After a failed write, seconds between test writes into the data directory."""
PROBE_BYTES = 4096

STORAGE_REASONS = {
    errors.FULL: "the disk holding the data directory is full: free space on it",
    errors.READ_ONLY: "the data directory is not writable (a read-only disk or missing "
                      "permissions)",
    errors.FAILING: "writes to the data directory's disk fail (I/O errors): check the disk",
    "error": "the data directory cannot be checked (the server log has the details)",
}

_lock = threading.Lock()
_failures: dict[str, tuple[str, float]] = {}  # data dir -> (problem, last test write)


def _key(data_dir: str) -> str:
    return os.path.realpath(data_dir)


def note_storage_failure(data_dir: str, problem: str) -> None:
    """A write of this process failed for ``problem`` (see errors.storage_problem):
    `check_storage` reports it until a test write into ``data_dir`` succeeds,
    also when the disk's free space looks fine (a quota, a database elsewhere)."""
    with _lock:
        _failures[_key(data_dir)] = (problem, time.monotonic())


def _test_write(data_dir: str) -> str | None:
    """None when a small file can be written into ``data_dir``, else the problem."""
    try:
        with tempfile.TemporaryFile(dir=data_dir, prefix=".botlite-write-test-") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
        return None
    except OSError as exc:
        return errors.storage_problem(exc, data_dir) or errors.FAILING


def _last_failure(data_dir: str) -> str | None:
    """The problem a recent write met, while test writes (one a `PROBE_INTERVAL`
    at most) still fail; None once one succeeds."""
    key = _key(data_dir)
    with _lock:
        failure = _failures.get(key)
    if failure is None:
        return None
    problem, tested = failure
    if time.monotonic() - tested < PROBE_INTERVAL:
        return problem
    now_problem = _test_write(data_dir)
    with _lock:
        if _failures.get(key) == failure:  # not noted again meanwhile
            if now_problem is None:
                del _failures[key]
            else:
                _failures[key] = (now_problem, time.monotonic())
    return now_problem


def check_storage(data_dir: str, detail: bool = False) -> tuple[bool, dict]:
    """(writable, entry) for the data directory's disk. ``entry["status"]`` is
    ``ok``, ``full`` (less than errors.FULL_BELOW_BYTES free, or a write failed
    for lack of space), ``read_only``, ``failing`` (I/O errors) or ``error`` (it
    cannot be checked), with ``reason`` when not ok; ``detail`` adds the free and
    total bytes. One statvfs; a test write only after a failed write."""
    try:
        usage = os.statvfs(data_dir)
    except OSError:
        logger.exception("health check: cannot check the data directory's disk")
        return False, {"status": "error", "reason": STORAGE_REASONS["error"]}
    free = usage.f_bavail * usage.f_frsize
    if usage.f_flag & os.ST_RDONLY:
        status = errors.READ_ONLY
    elif free < errors.FULL_BELOW_BYTES:
        status = errors.FULL
    else:
        status = _last_failure(data_dir) or "ok"
    entry = {"status": status}
    if detail:
        entry.update(free_bytes=free, total_bytes=usage.f_blocks * usage.f_frsize)
    if status != "ok":
        entry["reason"] = STORAGE_REASONS[status]
    return status == "ok", entry


def turn_log_view(turn_log) -> dict:
    """This process's chat turns not written yet, and the analytics actions of
    written turns that wait for the queue, or were dropped (see chat.turnlog)."""
    return {"turns_waiting": turn_log.pending, "actions_waiting": turn_log.actions_waiting,
            "actions_dropped": turn_log.actions_dropped}


def retrieval_view(app, detail: bool = False) -> dict:
    """Which retrieval answers (hybrid or bm25) and why; with ``detail``, how many
    live chunks have their vector (hybrid takes over source by source as they arrive)."""
    status = embedding.status()
    view = {"mode": status["retrieval"], "semantic": status["semantic"]}
    if detail:
        view["detail"] = status["detail"]
        embedder = embedding.current() if status["semantic"] == "on" else None
        if embedder is not None:
            try:
                with app.database.connection_context():
                    progress = vectors.progress(embedder.model_id).values()
            except Exception:
                logger.exception("health check: cannot count the vectors")
            else:
                view["chunks"] = sum(p.chunks for p in progress)
                view["vectors"] = sum(p.vectors for p in progress)
    return view


def public_view(last_check: dict | None) -> dict | None:
    """What anyone may see of the last health_check: its outcome and age, not the
    host, process, disk sizes or dead-task count (those need the admin token)."""
    if last_check is None:
        return None
    return {"status": last_check.get("status"), "checked_at": last_check.get("checked_at"),
            "age_s": last_check.get("age_s"),
            "disk": {"status": (last_check.get("disk") or {}).get("status")}}


def check(app, detail: bool = False) -> tuple[bool, dict]:
    """(healthy, report). Unhealthy reasons are listed in report["reasons"]."""
    reasons = []
    started = time.perf_counter()
    last_check = None
    try:
        with app.database.connection_context():
            app.database.execute_sql("select 1").fetchone()
            database = {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 2)}
            try:
                last_check = operations.last_check()
            except Exception:
                logger.exception("health check: cannot read the last health_check result")
    except Exception:
        logger.exception("health check: database unreachable")
        database = {"status": "error"}
        reasons.append("database unreachable (the server log has the details)")

    alive = []
    try:
        queue = dict(app.runner.queue_depth(), status="ok")
        alive = app.runner.storage.workers(HEARTBEAT_MAX_AGE)
    except Exception:
        logger.exception("health check: queue unreachable")
        queue = {"status": "error"}
        reasons.append("queue unreachable (the server log has the details)")

    now = time.time()
    workers = {
        "alive": len(alive),
        "threads": sum(w.get("workers", 0) for w in alive),
        "heartbeat_age_s": round(now - alive[0]["beat_at"], 2) if alive else None,
        "max_age_s": HEARTBEAT_MAX_AGE,
    }
    if queue["status"] == "ok" and not workers["threads"]:
        reasons.append("no worker heartbeat in the last %ds: start `python -m botlite "
                       "worker` or `serve` without --no-worker" % HEARTBEAT_MAX_AGE)

    writable, storage = check_storage(app.settings.data_dir, detail)
    if not writable:
        reasons.append(storage["reason"])

    report = {"status": "ok" if not reasons else "unavailable",
              "database": database, "queue": queue, "workers": workers, "storage": storage,
              "retrieval": retrieval_view(app, detail and database["status"] == "ok"),
              "turn_log": turn_log_view(app.turn_log),
              "last_check": last_check if detail else public_view(last_check)}
    if reasons:
        report["reasons"] = reasons
        report["error"] = {"code": "unavailable", "message": "; ".join(reasons)}
    return not reasons, report
