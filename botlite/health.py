"""What /healthz reports: the database, the queue, the workers' heartbeats."""
from __future__ import annotations

import time

from botlite.runner import HEARTBEAT_MAX_AGE


def check(app) -> tuple[bool, dict]:
    """(healthy, report). Unhealthy reasons are listed in report["reasons"]."""
    reasons = []
    started = time.perf_counter()
    try:
        with app.database.connection_context():
            app.database.execute_sql("select 1").fetchone()
        database = {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:
        database = {"status": "error", "error": str(exc).strip().splitlines()[0]}
        reasons.append("database unreachable: %s" % database["error"])

    try:
        queue = dict(app.runner.queue_depth(), status="ok")
    except Exception as exc:
        queue = {"status": "error", "error": str(exc).strip().splitlines()[0]}
        reasons.append("queue unreachable: %s" % queue["error"])

    try:
        alive = app.runner.ledger.workers(HEARTBEAT_MAX_AGE)
    except Exception as exc:
        alive = []
        reasons.append("worker ledger unreachable: %s" % str(exc).strip().splitlines()[0])
    now = time.time()
    workers = {
        "alive": len(alive),
        "threads": sum(w.get("workers", 0) for w in alive),
        "heartbeat_age_s": round(now - alive[0]["beat_at"], 2) if alive else None,
        "max_age_s": HEARTBEAT_MAX_AGE,
    }
    if not alive and not reasons:
        reasons.append("no worker heartbeat in the last %ds: start `python -m botlite "
                       "worker` or `serve` without --no-worker" % HEARTBEAT_MAX_AGE)

    report = {"status": "ok" if not reasons else "unavailable",
              "database": database, "queue": queue, "workers": workers}
    if reasons:
        report["reasons"] = reasons
    return not reasons, report
