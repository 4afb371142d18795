"""Housekeeping tasks."""
from __future__ import annotations

import time

from botlite.db import database
from botlite.runner import task
from botlite.timeutil import isoformat, utcnow


@task(priority=0)
def health_check() -> dict:
    """Prove the worker can reach the database; report how long that took."""
    started = time.perf_counter()
    database.execute_sql("select 1").fetchone()
    return {"status": "ok", "database_ms": round((time.perf_counter() - started) * 1000, 3),
            "checked_at": isoformat(utcnow())}
