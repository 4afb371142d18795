"""The periodic schedule, kept in the app database and editable while botlite runs.

Each job names a registered task, a crontab (UTC) and JSON positional args. Every
`serve` and `worker` process runs a ``Scheduler`` thread; at each minute it reads
the enabled jobs and, for each job, the newest due slot it has not handled yet.
A slot is claimed by inserting the unique row (job, slot) into ``schedule_run``:
whichever scheduler inserts it enqueues the task, the others get a unique-key
violation and move on — so with any number of schedulers over one database each
(job, slot) is enqueued once. After downtime only the newest missed slot runs
(once, not a burst). A job with ``no_overlap`` skips a slot while its previous
run is still queued or running, and records the skip.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import peewee

from botlite import validate
from botlite.db import database, write_transaction
from botlite.errors import BadRequest, Conflict, NotFound
from botlite.models import ScheduleJob, ScheduleRun
from botlite.runner import TaskNotFound, TaskRunner
from botlite.runner.cron import CronError, Crontab
from botlite.task_control import check_call
from botlite.timeutil import isoformat, utcnow

logger = logging.getLogger(__name__)

ACTIVE = ("PENDING", "STARTED", "RETRY")
FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
REDRIVE_AFTER = 60  # seconds a claim may stay unconfirmed before another scheduler enqueues it
REDRIVE_WITHIN = 3600  # ... as long as its slot is this recent
MAX_ARGS_BYTES = 16 * 1024
SLOT_IDS = uuid.UUID("5d0c7a52-8d3f-4a8e-9b8a-2f9e4c1b7a10")
RUN_HISTORY_DAYS = 30
PREVIEW_RUNS = 5
NAME_PATTERN = "letters, digits, '_' and '-'"


@dataclass(frozen=True)
class DefaultJob:
    name: str
    crontab: str
    args: list = field(default_factory=list)
    description: str = ""

    @property
    def task(self) -> str:
        return self.name  # each default job is named after its task


DEFAULT_JOBS = (
    DefaultJob("health_check", "* * * * *", [], "database, queue depth, workers, free disk"),
    DefaultJob("update_analytics", "*/5 * * * *", [], "daily analytics rollups per bot"),
    DefaultJob("cleanup_old_data", "0 2 * * *", [90],
               "delete conversations, task states and read notifications older than N days"),
    DefaultJob("cleanup_temp_files", "0 * * * *", [], "orphaned uploads and old temp files"),
    DefaultJob("backup_data", "30 3 * * *", [], "online backup of the SQLite databases"),
    DefaultJob("generate_reports", "0 4 * * *", [], "system report: throughput, failures, "
                                                    "queue depth, slowest tasks"),
    DefaultJob("resync_websites", "*/15 * * * *", [], "re-crawl websites due for a refresh"),
    DefaultJob("recover_sources", "* * * * *", [],
               "queue sources whose processing a crash kept from being queued"),
    DefaultJob("embed_chunks", "* * * * *", [],
               "embed chunks that have no vector yet (hybrid retrieval; nothing without it)"),
    DefaultJob("expire_results", "*/10 * * * *", [],
               "forget expired task results and old finished task states"),
)


def _minute_precision(when: datetime.datetime) -> datetime.datetime:
    """A naive UTC datetime (what the database stores)."""
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return when


def _minute(when: datetime.datetime) -> datetime.datetime:
    return _minute_precision(when).replace(second=0, microsecond=0)


def slot_task_id(job: str, slot: datetime.datetime) -> str:
    """The task id of a job's slot: the same in every scheduler."""
    return str(uuid.uuid5(SLOT_IDS, "%s|%s" % (job, slot.isoformat())))


def ensure_default_jobs(runner: TaskRunner, now: datetime.datetime | None = None) -> list[str]:
    """Create the default jobs whose task is registered and that do not exist yet
    (never overwriting an edit); return the names created."""
    now = now or utcnow()
    rows = [{"name": job.name, "task": job.task, "crontab": job.crontab,
             "args": json.dumps(job.args), "description": job.description,
             "last_slot": _minute(now), "created_at": now, "updated_at": now}
            for job in DEFAULT_JOBS if job.task in runner.tasks]
    if not rows:
        return []
    existing = {name for (name,) in ScheduleJob.select(ScheduleJob.name).tuples()}
    missing = [row for row in rows if row["name"] not in existing]
    if missing:
        with write_transaction():
            ScheduleJob.insert_many(missing).on_conflict_ignore().execute()
    return [row["name"] for row in missing]


# -- reading and editing ------------------------------------------------------------


def _last_status(job: ScheduleJob, runner: TaskRunner) -> str | None:
    if job.last_status != "ENQUEUED" or not job.last_task_id:
        return job.last_status
    try:
        return runner.state(job.last_task_id)["status"]
    except TaskNotFound:  # being enqueued again (see Scheduler._redrive)
        return "ENQUEUED"


def job_view(job: ScheduleJob, runner: TaskRunner, now: datetime.datetime | None = None) -> dict:
    now = now or utcnow()
    next_run = Crontab.parse(job.crontab).next_after(now) if job.enabled else None
    return {
        "name": job.name,
        "task": job.task,
        "crontab": job.crontab,
        "args": job.args_list,
        "enabled": job.enabled,
        "no_overlap": job.no_overlap,
        "description": job.description,
        "next_run": isoformat(next_run),
        "last_run": isoformat(job.last_run),
        "last_status": _last_status(job, runner),
        "last_task_id": job.last_task_id,
    }


def list_jobs(runner: TaskRunner) -> list[dict]:
    now = utcnow()
    return [job_view(job, runner, now) for job in ScheduleJob.select().order_by(ScheduleJob.name)]


def _get(name: str) -> ScheduleJob:
    job = ScheduleJob.get_or_none(ScheduleJob.name == name)
    if job is None:
        raise NotFound("no schedule job named %r" % name)
    return job


def get_job(runner: TaskRunner, name: str) -> dict:
    return job_view(_get(name), runner)


def runs(name: str, limit: str | int | None = None) -> list[dict]:
    """The newest slots of a job: when, what happened, which task."""
    _get(name)
    limit = validate.limit(limit, maximum=1000)
    query = (ScheduleRun.select().where(ScheduleRun.job == name)
             .order_by(ScheduleRun.slot.desc()).limit(limit))
    return [{"slot": isoformat(run.slot), "status": run.status, "task_id": run.task_id,
             "detail": run.detail, "scheduler": run.scheduler,
             "created_at": isoformat(run.created_at)} for run in query]


def parse_crontab(value) -> Crontab:
    if not isinstance(value, str):
        raise BadRequest("field 'crontab' must be a string such as \"*/5 * * * *\"",
                         code="invalid_field")
    try:
        cron = Crontab.parse(value)
    except CronError as exc:
        raise BadRequest("field 'crontab' is not a valid crontab (%s)" % exc,
                         code="invalid_field") from None
    if cron.next_after(utcnow()) is None:
        raise BadRequest("field 'crontab' never matches a date (%s)" % cron.expression,
                         code="invalid_field")
    return cron


def preview(expression, count=PREVIEW_RUNS) -> dict:
    """The next ``count`` run times of a crontab expression (UTC)."""
    try:
        count = PREVIEW_RUNS if count in (None, "") else int(count)
    except ValueError:
        count = 0
    if not 1 <= count <= 50:
        raise BadRequest("count must be a whole number from 1 to 50", code="invalid_field")
    cron = parse_crontab(expression)
    return {"crontab": cron.expression,
            "next_runs": [isoformat(t) for t in cron.next_runs(utcnow(), count)]}


def _check_args(runner: TaskRunner, task_name: str, args) -> list:
    if not isinstance(args, list):
        raise BadRequest("field 'args' must be a JSON list of the task's positional arguments",
                         code="invalid_field")
    wrapper = runner.tasks.get(task_name)
    spec = runner.specs.get(task_name)
    if wrapper is None or spec is None:
        raise BadRequest("unknown task %r (registered: %s)" % (
            task_name, ", ".join(sorted(runner.tasks))), code="unknown_task")
    try:
        encoded = json.dumps(args, allow_nan=False)
    except (TypeError, ValueError):
        raise BadRequest("field 'args' must be plain JSON (no NaN or Infinity)",
                         code="invalid_field") from None
    if len(encoded) > MAX_ARGS_BYTES:
        raise BadRequest("field 'args' is larger than %d bytes" % MAX_ARGS_BYTES,
                         code="invalid_field")
    try:
        check_call(spec.fn, args, {})
    except ValueError as exc:
        raise BadRequest("field 'args' does not fit task %s: %s" % (task_name, exc),
                         code="invalid_field") from None
    return args


def _bool(data: dict, key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise BadRequest("field %r must be true or false" % key, code="invalid_field")
    return value


def update_job(runner: TaskRunner, name: str, data: dict) -> dict:
    """Apply an edit; it takes effect at the next minute in every running process."""
    validate.reject_unknown(data, {"enabled", "crontab", "args", "no_overlap", "description"})
    changes: dict = {}
    with write_transaction():
        job = _get(name)
        if "crontab" in data:
            changes["crontab"] = parse_crontab(data["crontab"]).expression
        if "args" in data:
            changes["args"] = json.dumps(_check_args(runner, job.task, data["args"]))
        if "enabled" in data:
            changes["enabled"] = _bool(data, "enabled")
        if "no_overlap" in data:
            changes["no_overlap"] = _bool(data, "no_overlap")
        if "description" in data:
            changes["description"] = validate.text(data, "description", max_length=500)
        now = utcnow()
        if (changes.get("crontab", job.crontab) != job.crontab
                or (changes.get("enabled") and not job.enabled)):
            # A new crontab, or a job enabled again, starts from now: no catch-up
            # run for slots that passed before the edit.
            changes["last_slot"] = _minute(now)
        if changes:
            changes["updated_at"] = now
            ScheduleJob.update(changes).where(ScheduleJob.name == name).execute()
    return get_job(runner, name)


def create_job(runner: TaskRunner, data: dict) -> dict:
    validate.reject_unknown(data, {"name", "task", "crontab", "args", "enabled", "no_overlap",
                                   "description"})
    name = validate.text(data, "name", required=True, max_length=64, allow_blank=False)
    if not all(c.isalnum() or c in "_-" for c in name):
        raise BadRequest("field 'name' may contain only %s" % NAME_PATTERN, code="invalid_field")
    if name == "preview":
        raise BadRequest("field 'name': 'preview' is reserved", code="invalid_field")
    task_name = validate.text(data, "task", required=True, max_length=100, allow_blank=False)
    cron = parse_crontab(data.get("crontab"))
    args = _check_args(runner, task_name, data.get("args", []))
    now = utcnow()
    row = {"name": name, "task": task_name, "crontab": cron.expression,
           "args": json.dumps(args), "last_slot": _minute(now), "created_at": now,
           "updated_at": now,
           "enabled": _bool(data, "enabled") if "enabled" in data else True,
           "no_overlap": _bool(data, "no_overlap") if "no_overlap" in data else True,
           "description": validate.text(data, "description", max_length=500) or ""}
    try:
        with write_transaction():
            ScheduleJob.insert(row).execute()
    except peewee.IntegrityError:
        raise Conflict("a schedule job named %r exists already" % name) from None
    return get_job(runner, name)


def delete_job(runner: TaskRunner, name: str) -> dict:
    view = get_job(runner, name)
    if name in {job.name for job in DEFAULT_JOBS}:
        raise Conflict("%s is a default job and would come back at the next start: "
                       "disable it instead (PATCH {\"enabled\": false})" % name)
    with write_transaction():
        ScheduleJob.delete().where(ScheduleJob.name == name).execute()
        ScheduleRun.delete().where(ScheduleRun.job == name).execute()
    return view


def run_now(runner: TaskRunner, name: str) -> dict:
    """Enqueue a job's task at once, outside its slots (a "run now" button)."""
    job = _get(name)
    if job.task not in runner.tasks:
        raise Conflict("task %s of job %s is not registered" % (job.task, name))
    task_id = runner.enqueue(job.task, job.args_list)
    return {"job": name, "task_id": task_id, "status": runner.state(task_id)["status"]}


# -- the scheduler ------------------------------------------------------------------


class Scheduler:
    """Enqueue due jobs once per (job, slot), however many schedulers run.

    A slot is claimed in one write transaction against the job's current row: a
    compare-and-set moves ``last_slot`` forward (so a scheduler with a stale read
    or a slower clock can never claim an older slot once a newer one is taken),
    the no-overlap check uses the fresh ``last_task_id``, and the unique
    (job, slot) row records the claim. The task is enqueued after the commit with
    an id derived from (job, slot); a claim whose enqueue failed, or whose
    scheduler died in between, is enqueued again by any scheduler a minute later.
    """

    def __init__(self, runner: TaskRunner, clock=utcnow, name: str | None = None) -> None:
        self.runner = runner
        self.clock = clock
        self.name = name or "%s:%d" % (socket.gethostname(), os.getpid())
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_history_prune = 0.0

    def tick(self, now: datetime.datetime | None = None) -> list[dict]:
        """Handle every enabled job's newest unhandled due slot at ``now``;
        return what this scheduler did (enqueued, skipped, failed)."""
        now = _minute_precision(now or self.clock())
        done = []
        with database.connection_context():
            jobs = list(ScheduleJob.select().where(ScheduleJob.enabled == True))  # noqa: E712
            for job in jobs:
                if self._stopping.is_set():
                    break
                if job.task not in self.runner.tasks:
                    continue  # not in this process (an older worker): leave it to one that has it
                try:
                    self._settle(job)
                    outcome = self._handle(job.name, now)
                except Exception:
                    logger.exception("schedule job %s: tick failed; trying again next minute",
                                     job.name)
                    continue
                if outcome is not None:
                    done.append(outcome)
            for step in (self._redrive, self._prune_history):
                try:
                    done.extend(step(now) or ())
                except Exception:
                    logger.exception("scheduler: %s failed", step.__name__)
        return done

    def _settle(self, job: ScheduleJob) -> None:
        """Keep a finished run's final status on the job (task states are pruned)."""
        if job.last_status != "ENQUEUED" or not job.last_task_id:
            return
        try:
            status = self.runner.state(job.last_task_id)["status"]
        except TaskNotFound:
            return
        if status in FINISHED:
            (ScheduleJob.update(last_status=status)
             .where((ScheduleJob.name == job.name) & (ScheduleJob.last_status == "ENQUEUED")
                    & (ScheduleJob.last_task_id == job.last_task_id)).execute())

    def _previous_still_active(self, job: ScheduleJob) -> str | None:
        if not (job.no_overlap and job.last_task_id):
            return None
        try:
            status = self.runner.state(job.last_task_id)["status"]
        except TaskNotFound:
            return None
        return status if status in ACTIVE else None

    def _handle(self, name: str, now: datetime.datetime) -> dict | None:
        with write_transaction():
            job = ScheduleJob.get_or_none(ScheduleJob.name == name)
            if job is None or not job.enabled:
                return None  # deleted or disabled since the tick's read
            slot = Crontab.parse(job.crontab).latest_at_or_before(
                now, not_before=job.last_slot or _minute(job.created_at))
            if slot is None:
                return None
            active = self._previous_still_active(job)
            if active:
                status, task_id = "SKIPPED", None
                detail = "the previous run %s is still %s" % (job.last_task_id, active)
                changes = {ScheduleJob.last_slot: slot, ScheduleJob.last_status: status}
            else:
                status, task_id, detail = "CLAIMED", slot_task_id(name, slot), ""
                changes = {ScheduleJob.last_slot: slot, ScheduleJob.last_status: "ENQUEUED",
                           ScheduleJob.last_run: now, ScheduleJob.last_task_id: task_id}
            claimed = (ScheduleJob.update(changes)
                       .where((ScheduleJob.name == name)
                              & (ScheduleJob.last_slot.is_null()
                                 | (ScheduleJob.last_slot < slot)))
                       .execute())
            if claimed != 1:
                return None  # another scheduler took this slot (or a newer one) first
            (ScheduleRun.insert(job=name, slot=slot, status=status, task_id=task_id,
                                detail=detail, scheduler=self.name, created_at=now)
             .on_conflict_ignore().execute())
        if status == "SKIPPED":
            logger.info("schedule job %s: slot %s skipped: %s", name, slot, detail)
            return {"job": name, "slot": isoformat(slot), "status": status, "task_id": None}
        return self._enqueue(job, slot, task_id)

    def _enqueue(self, job: ScheduleJob, slot: datetime.datetime, task_id: str) -> dict:
        detail = ""
        try:
            queued = self.runner.enqueue(job.task, job.args_list, task_id=task_id)
        except Exception as exc:  # a queue that is down: a later tick enqueues it again
            logger.exception("schedule job %s: could not enqueue %s", job.name, job.task)
            status, queued, detail = "ERROR", task_id, "could not enqueue: %s" % exc
        else:
            status = "ENQUEUED"
            if queued != task_id:  # a dedup task: an identical one is queued or just ran
                status = "SKIPPED"
                detail = "deduplicated: the identical task %s is queued or ran moments ago" % (
                    queued)
        with write_transaction():
            (ScheduleRun.update(status=status, task_id=queued, detail=detail)
             .where((ScheduleRun.job == job.name) & (ScheduleRun.slot == slot)).execute())
            (ScheduleJob.update({ScheduleJob.last_status: "ENQUEUED" if status == "ENQUEUED"
                                 else status, ScheduleJob.last_task_id: queued})
             .where((ScheduleJob.name == job.name) & (ScheduleJob.last_slot == slot)).execute())
        return {"job": job.name, "slot": isoformat(slot), "status": status, "task_id": queued}

    def _redrive(self, now: datetime.datetime) -> list[dict]:
        """Enqueue claimed slots whose enqueue failed or never happened (their
        scheduler died), if they are still the job's newest slot."""
        stale = now - datetime.timedelta(seconds=REDRIVE_AFTER)
        recent = now - datetime.timedelta(seconds=REDRIVE_WITHIN)
        pending = (ScheduleRun.select(ScheduleRun, ScheduleJob)
                   .join(ScheduleJob, on=((ScheduleJob.name == ScheduleRun.job)
                                          & (ScheduleJob.last_slot == ScheduleRun.slot)))
                   .where(ScheduleRun.status.in_(("CLAIMED", "ERROR"))
                          & (ScheduleRun.created_at <= stale) & (ScheduleRun.slot >= recent)))
        done = []
        for run in pending:
            job = run.schedulejob
            if job.task not in self.runner.tasks:
                continue
            try:
                self.runner.state(run.task_id)
            except TaskNotFound:
                pass
            else:  # it was queued; only recording that failed
                ScheduleRun.update(status="ENQUEUED").where(ScheduleRun.id == run.id).execute()
                continue
            # Take the re-drive exclusively: only one scheduler moves created_at on.
            taken = (ScheduleRun.update(created_at=now, detail="enqueued again")
                     .where((ScheduleRun.id == run.id)
                            & (ScheduleRun.created_at == run.created_at)).execute())
            if taken == 1:
                logger.warning("schedule job %s: enqueueing slot %s again", job.name, run.slot)
                done.append(self._enqueue(job, run.slot, run.task_id))
        return done

    def _prune_history(self, now: datetime.datetime) -> None:
        if time.monotonic() - self._last_history_prune < 3600:
            return
        self._last_history_prune = time.monotonic()
        cutoff = now - datetime.timedelta(days=RUN_HISTORY_DAYS)
        with write_transaction():
            ScheduleRun.delete().where(ScheduleRun.created_at < cutoff).execute()

    # -- the thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="botlite-scheduler",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("scheduler tick failed; trying again at the next minute")
            # Wake just after the next minute starts: every scheduler wakes for the
            # same slot, and the claim decides which one enqueues it.
            self._stopping.wait(60.0 - time.time() % 60.0 + 0.05)

    def stop(self, wait: bool = True) -> None:
        self._stopping.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=10)
