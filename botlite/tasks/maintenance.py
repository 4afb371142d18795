"""Housekeeping tasks. The schedule (botlite/schedule.py) enqueues them by name
with JSON positional arguments; each runs correctly with none."""
from __future__ import annotations

import os
import socket

from botlite import backup, operations
from botlite.db import database
from botlite.runner import PermanentError, current_runner, task
from botlite.tasks.context import context

MAX_DAYS = 36500


def _number(name: str, value, minimum: float, maximum: float, whole: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (whole and not isinstance(value, int)):
        raise PermanentError("%s must be a %snumber" % (name, "whole " if whole else ""))
    if not minimum <= value <= maximum:
        raise PermanentError("%s must be between %g and %g" % (name, minimum, maximum))
    return value


def _runner():
    runner = current_runner()
    if runner is None:
        raise PermanentError("this task needs the task runner; enqueue it")
    return runner


@task()
def health_check() -> dict:
    """Database, queue depth, workers and free disk; stored for /healthz and the
    system report's queue-depth history."""
    return operations.check_health(_runner(), database.obj, context.data_dir,
                                   "%s:%d" % (socket.gethostname(), os.getpid()))


@task(dedup=True, dedup_ttl=60)
def cleanup_old_data(days: int = 90) -> dict:
    """Delete conversations, messages, user actions, read notifications, samples,
    reports and finished task states older than ``days`` days, in small batches."""
    days = _number("days", days, 1, MAX_DAYS, whole=True)
    return operations.cleanup_old_data(_runner(), days)


@task(dedup=True, dedup_ttl=60)
def cleanup_temp_files(max_age_hours: float = 6) -> dict:
    """Remove unfinished uploads/backups and upload folders without a source,
    older than ``max_age_hours``."""
    max_age_hours = _number("max_age_hours", max_age_hours, 0, 24 * 365)
    return operations.cleanup_temp_files(context.data_dir, max_age_hours)


@task(queue="low_priority", dedup=True, dedup_ttl=60)
def backup_data(keep: int | None = None) -> dict:
    """Online backup of the SQLite app database and queue into <data dir>/backups,
    keeping the newest ``keep`` (default BOTLITE_BACKUP_KEEP) of each."""
    keep = context.backup_keep if keep is None else _number("keep", keep, 1, 10000, whole=True)
    return backup.backup_all(context.data_dir, context.database_url, context.broker_url, keep)


@task(queue="low_priority", dedup=True, dedup_ttl=60)
def generate_reports(hours: float = 24) -> dict:
    """The system report over the last ``hours``: per-task throughput, failure
    rate and durations, queue depth per hour, the slowest tasks."""
    hours = _number("hours", hours, 1, 24 * 90)
    return operations.system_report(_runner(), hours)
