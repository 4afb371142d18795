"""What /healthz reports: the database, the queue, the workers' heartbeats.

The endpoint is public, so failures are reported generically; the details go
to the log.
"""
from __future__ import annotations

import logging
import time

from botlite import operations
from botlite.runner import HEARTBEAT_MAX_AGE

logger = logging.getLogger(__name__)


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

    report = {"status": "ok" if not reasons else "unavailable",
              "database": database, "queue": queue, "workers": workers,
              "last_check": last_check if detail else public_view(last_check)}
    if reasons:
        report["reasons"] = reasons
        report["error"] = {"code": "unavailable", "message": "; ".join(reasons)}
    return not reasons, report
