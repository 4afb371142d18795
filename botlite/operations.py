"""Housekeeping behind the maintenance tasks: health samples, retention
cleanup, temp-file cleanup and the system report. The task functions in
botlite/tasks/maintenance.py call these with the running app's pieces."""
from __future__ import annotations

import collections
import datetime
import json
import os
import shutil
import time

import peewee
from peewee import fn

from botlite.analytics import p95
from botlite.db import write_transaction
from botlite.knowledge.sources import UPLOADS
from botlite.models import (AnalyticsReport, Conversation, HealthSample, Message, Notification,
                            Source, SystemReport, UserAction)
from botlite.runner import HEARTBEAT_MAX_AGE
from botlite.timeutil import isoformat, utcnow

BATCH = 500
SAMPLE_RETENTION = datetime.timedelta(days=7)
LOW_DISK_MB = 500
LOW_DISK_PERCENT = 5.0
INCOMING_PREFIX = ".incoming-"
PARTIAL_SUFFIX = ".partial"
REPORT_MAX_TASKS = 20000
SLOWEST_N = 10


# -- health ----------------------------------------------------------------------------

def check_health(runner, database: peewee.Database, data_dir: str, ran_by: str | None) -> dict:
    """Database, queue depth, workers and free disk, stored as the latest sample."""
    now = utcnow()
    started = time.perf_counter()
    database.execute_sql("select 1").fetchone()
    result = {"status": "ok", "checked_at": isoformat(now), "ran_by": ran_by,
              "database": {"status": "ok",
                           "ms": round((time.perf_counter() - started) * 1000, 3)}}
    pending = scheduled = running = None
    try:
        lanes = runner.queues()
        pending = sum(lane["pending"] for lane in lanes["queues"].values())
        scheduled = sum(lane["scheduled"] for lane in lanes["queues"].values())
        running = sum(lane["running"] for lane in lanes["queues"].values())
        result["queue"] = {"status": "ok", "pending": pending, "scheduled": scheduled,
                           "running": running, "dead": lanes["dead"],
                           "workers": len(runner.storage.workers(HEARTBEAT_MAX_AGE))}
    except Exception as exc:
        result["queue"] = {"status": "error", "error": type(exc).__name__}
        result["status"] = "error"
    usage = shutil.disk_usage(data_dir)
    free_mb, free_pct = usage.free / 2 ** 20, 100.0 * usage.free / usage.total
    low = free_mb < LOW_DISK_MB or free_pct < LOW_DISK_PERCENT
    result["disk"] = {"status": "low" if low else "ok", "free_mb": round(free_mb, 1),
                      "total_mb": round(usage.total / 2 ** 20, 1),
                      "free_percent": round(free_pct, 2)}
    if low and result["status"] == "ok":
        result["status"] = "warning"
    with write_transaction():
        HealthSample.create(checked_at=now, status=result["status"], pending=pending,
                            scheduled=scheduled, running=running, result=json.dumps(result))
        HealthSample.delete().where(HealthSample.checked_at < now - SAMPLE_RETENTION).execute()
    return result


def last_check() -> dict | None:
    """The latest health_check result, with its age, or None before the first."""
    sample = HealthSample.select().order_by(HealthSample.checked_at.desc(),
                                            HealthSample.id.desc()).first()
    if sample is None:
        return None
    result = json.loads(sample.result)
    result["age_s"] = round((utcnow() - sample.checked_at).total_seconds(), 1)
    return result


# -- retention ---------------------------------------------------------------------------

def delete_in_batches(model, condition) -> int:
    """Delete matching rows BATCH at a time, each batch its own short transaction,
    so chat turns get the write lock between batches."""
    key = model._meta.primary_key
    total = 0
    while True:
        with write_transaction():
            ids = model.select(key).where(condition).limit(BATCH)
            deleted = model.delete().where(key.in_(ids)).execute()
        total += deleted
        if deleted < BATCH:
            return total


def cleanup_old_data(runner, days: int) -> dict:
    """Delete what is older than ``days`` days; return how many of each."""
    cutoff = utcnow() - datetime.timedelta(days=days)
    counts = {"cutoff": isoformat(cutoff)}
    counts["messages"] = delete_in_batches(Message, Message.created_at < cutoff)
    counts["conversations"] = delete_in_batches(Conversation,
                                                Conversation.last_message_at < cutoff)
    # Conversations that go on past the cutoff lost their old messages: recount.
    with write_transaction():
        Conversation.update(message_count=(
            Message.select(fn.COUNT(Message.id)).where(Message.conversation == Conversation.id)
        )).where(Conversation.started_at < cutoff).execute()
    counts["user_actions"] = delete_in_batches(UserAction, UserAction.created_at < cutoff)
    read = Notification.read == True  # noqa: E712 (SQL, not Python)
    counts["notifications"] = delete_in_batches(
        Notification, read & (Notification.created_at < cutoff))
    counts["health_samples"] = delete_in_batches(HealthSample, HealthSample.checked_at < cutoff)
    counts["system_reports"] = delete_in_batches(SystemReport, SystemReport.created_at < cutoff)
    counts["analytics_reports"] = delete_in_batches(AnalyticsReport,
                                                    AnalyticsReport.generated_at < cutoff)
    now = time.time()
    results, states = runner.storage.prune_states(now - runner.result_expires,
                                                  cutoff.replace(tzinfo=datetime.timezone.utc)
                                                  .timestamp())
    counts["task_results"], counts["task_states"] = results, states
    return counts


# -- temp files ----------------------------------------------------------------------------

def _newest_mtime(path: str) -> float:
    newest = os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _size(path: str) -> int:
    if not os.path.isdir(path):
        return os.lstat(path).st_size
    return sum(os.lstat(os.path.join(root, name)).st_size
               for root, _, files in os.walk(path) for name in files)


def cleanup_temp_files(data_dir: str, max_age_hours: float) -> dict:
    """Remove unfinished uploads and backups, upload folders no source owns and
    stray files in a source's folder, once they are older than ``max_age_hours``
    (younger ones may be in use)."""
    cutoff = time.time() - max_age_hours * 3600
    removed = {"temp_files": 0, "orphaned_uploads": 0, "bytes": 0, "paths": []}

    def remove(path: str, kind: str) -> None:
        size = _size(path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        removed[kind] += 1
        removed["bytes"] += size
        removed["paths"].append(os.path.relpath(path, data_dir))

    uploads = os.path.join(data_dir, UPLOADS)
    folders = {}
    if os.path.isdir(uploads):
        for entry in os.scandir(uploads):
            if entry.name.startswith(INCOMING_PREFIX) and entry.is_file(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    remove(entry.path, "temp_files")
            elif entry.is_dir(follow_symlinks=False):
                folders[entry.name] = entry.path
    names = sorted(folders)
    known = {}
    for start in range(0, len(names), BATCH):
        known.update(Source.select(Source.id, Source.stored_path).where(
            Source.id.in_(names[start:start + BATCH])).tuples())
    for name in names:
        if name not in known:
            if _newest_mtime(folders[name]) < cutoff:
                remove(folders[name], "orphaned_uploads")
            continue
        # A source's folder holds its one file; anything else there is left over.
        kept = os.path.normpath(os.path.join(data_dir, known[name] or ""))
        for root, _, files in os.walk(folders[name]):
            for file in files:
                path = os.path.join(root, file)
                if os.path.normpath(path) != kept and os.lstat(path).st_mtime < cutoff:
                    remove(path, "orphaned_uploads")
    backups = os.path.join(data_dir, "backups")
    if os.path.isdir(backups):
        for entry in os.scandir(backups):
            if entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                remove(entry.path, "temp_files")
    return removed


# -- the system report ---------------------------------------------------------------------

def _hourly_depth(since: datetime.datetime) -> list[dict]:
    buckets = collections.OrderedDict()
    for at, pending, scheduled, running in (HealthSample.select(
            HealthSample.checked_at, HealthSample.pending, HealthSample.scheduled,
            HealthSample.running).where(HealthSample.checked_at >= since)
            .order_by(HealthSample.checked_at).tuples()):
        if pending is None:
            continue
        hour = at.replace(minute=0, second=0, microsecond=0)
        buckets.setdefault(hour, []).append((pending, scheduled or 0, running or 0))
    return [{"hour": isoformat(hour), "samples": len(rows),
             "pending_avg": round(sum(r[0] for r in rows) / len(rows), 2),
             "pending_max": max(r[0] for r in rows),
             "scheduled_max": max(r[1] for r in rows),
             "running_max": max(r[2] for r in rows)} for hour, rows in buckets.items()]


def system_report(runner, hours: float) -> dict:
    """Throughput, failure rate and durations per task name, queue depth per hour
    (from health_check's samples) and the slowest tasks, over the last ``hours``."""
    now = time.time()
    since = now - hours * 3600
    states = runner.storage.list_states(limit=REPORT_MAX_TASKS + 1)
    truncated = len(states) > REPORT_MAX_TASKS
    states = [s for s in states[:REPORT_MAX_TASKS] if (s["enqueued_at"] or 0) >= since]
    per_name: dict[str, dict] = {}
    durations: dict[str, list[float]] = collections.defaultdict(list)
    finished = []
    for state in states:
        row = per_name.setdefault(state["name"], {
            "enqueued": 0, "succeeded": 0, "failed": 0, "revoked": 0, "waiting": 0,
            "retried": 0})
        row["enqueued"] += 1
        status = state["status"]
        row[{"SUCCESS": "succeeded", "FAILURE": "failed", "REVOKED": "revoked"}.get(
            status, "waiting")] += 1
        if (state["attempts"] or 0) > 1:
            row["retried"] += 1
        if status in ("SUCCESS", "FAILURE") and state["started_at"] and state["finished_at"]:
            seconds = max(0.0, state["finished_at"] - state["started_at"])
            durations[state["name"]].append(seconds)
            finished.append((seconds, state))
    for name, row in per_name.items():
        done = row["succeeded"] + row["failed"]
        took = durations.get(name, [])
        row.update(
            throughput_per_hour=round(done / hours, 3),
            failure_rate=round(row["failed"] / done, 4) if done else 0.0,
            avg_seconds=round(sum(took) / len(took), 4) if took else None,
            p95_seconds=round(p95(took), 4) if took else None,
            max_seconds=round(max(took), 4) if took else None)
    finished.sort(key=lambda item: item[0], reverse=True)
    created = utcnow()
    report = {
        "created_at": isoformat(created), "hours": hours,
        "from": isoformat(datetime.datetime.fromtimestamp(since, datetime.timezone.utc)),
        "to": isoformat(datetime.datetime.fromtimestamp(now, datetime.timezone.utc)),
        "tasks_seen": len(states), "truncated": truncated,
        "tasks": dict(sorted(per_name.items())),
        "queue_depth": _hourly_depth(created - datetime.timedelta(hours=hours)),
        "slowest": [{"task_id": s["task_id"], "name": s["name"], "status": s["status"],
                     "seconds": round(seconds, 4),
                     "finished_at": isoformat(datetime.datetime.fromtimestamp(
                         s["finished_at"], datetime.timezone.utc))}
                    for seconds, s in finished[:SLOWEST_N]],
    }
    row = SystemReport.create(created_at=created, report=json.dumps(report))
    return dict(report, report_id=str(row.id))


def latest_system_report() -> dict | None:
    row = SystemReport.select().order_by(SystemReport.created_at.desc(),
                                         SystemReport.id.desc()).first()
    return None if row is None else dict(json.loads(row.report), report_id=str(row.id))


def system_report_for_request(runner, query) -> dict:
    """GET /api/reports/system: the latest stored report; a new one with
    ?refresh=1 or when none was made yet."""
    from botlite import validate
    latest = None if validate.flag(query.get("refresh"), "refresh") else latest_system_report()
    return latest if latest is not None else system_report(runner, 24)
