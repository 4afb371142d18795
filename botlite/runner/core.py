"""The task runner: Huey from a URL, registered tasks with their options, durable
task states, deduplication, revoke/retry/purge. It knows nothing about chat.

Task options (``@task(...)``):

- ``queue``: the lane (``default``, ``documents``, ``websites``, ``notifications``,
  ``high_priority``, ``low_priority``…); ``priority`` adds to the lane's priority.
- ``retries`` (default 0, never infinite), ``retry_delay``, ``retry_backoff``,
  ``retry_jitter``, ``retry_max_delay``: see ``RetryPolicy``. ``autoretry_for``:
  the exception classes that are retried (default: any ``Exception``); a
  ``PermanentError`` is never retried.
- ``soft_time_limit``: seconds, then ``SoftTimeLimitExceeded`` is raised inside
  the task (catchable). ``hard_time_limit``: seconds, then the attempt is
  abandoned; such tasks run in a child process that is killed (see limits.py).
- ``dedup``: True (key = SHA-256 of name + canonical JSON arguments) or a function
  of the arguments returning a key; ``dedup_ttl`` seconds (default 3600).
- ``expires``: seconds after enqueue after which a not-yet-started task is dropped.
- ``max_reruns`` (default 5): how often a task is run again after its attempt's
  process died or was stopped (kill -9, a crash, a shutdown timeout) before it
  ends as a FAILURE; such re-runs use no retries (``reruns`` in its state).
- ``periodic``: a ``huey.crontab(...)``; every worker process's scheduler queues
  the task when it is due (give such tasks ``dedup`` so only one copy runs).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from huey import signals as S
from huey.api import TaskWrapper
from huey.constants import EmptyData
from huey.exceptions import CancelExecution, RetryTask, TaskLockedException

from botlite.runner import limits
from botlite.runner.broker import LANE_PRIORITIES, RetryPolicy, build_huey
from botlite.runner.serializer import to_json
from botlite.runner.storage import FINISHED, lock_name

logger = logging.getLogger(__name__)

TASK_OPTIONS = "_botlite_task_options"
RESULT_EXPIRES = 3600.0
STATE_RETENTION = 7 * 86400.0
MAX_RERUNS = 5


class PermanentError(Exception):
    """Raised by a task when retrying cannot help (bad input, missing object)."""


def expected_failure(exc: BaseException) -> bool:
    """A failure a task meets on purpose or by the world, not by a bug:
    `PermanentError` (bad input, a corrupt file), or an exception whose class
    says ``expected = True`` (a site that is down, a webhook that answers 500).
    Huey logs it as one WARNING line, not an ERROR with a traceback (the
    traceback is in the task's state); see `_ExpectedFailuresLog`."""
    # The class's, and only True: http.client.IncompleteRead has an ``expected`` byte count.
    return isinstance(exc, PermanentError) or getattr(type(exc), "expected", None) is True \
        or getattr(exc, "child_expected", None) is True  # limits.ChildTaskError


class _ExpectedFailuresLog(logging.Filter):
    """On huey's logger: 'Unhandled exception in task …' for an `expected_failure`
    becomes a WARNING line naming the exception, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and record.levelno >= logging.ERROR and expected_failure(exc):
            record.msg = "%s %s: %s" % (record.getMessage().rstrip("."), type(exc).__name__,
                                        str(exc).splitlines()[0] if str(exc) else "")
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_huey_log = logging.getLogger("huey")
if not any(isinstance(f, _ExpectedFailuresLog) for f in _huey_log.filters):
    _huey_log.addFilter(_ExpectedFailuresLog())


class UnknownTask(LookupError):
    """No task of that name is registered."""


class UnknownQueue(LookupError):
    """No queue of that name."""


class TaskNotFound(LookupError):
    """No state is recorded for that task id."""


class InvalidTransition(ValueError):
    """The task is not in a state that allows the requested action."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: Callable
    queue: str = "default"
    priority: int = 0
    retries: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    autoretry_for: tuple[type[BaseException], ...] = (Exception,)
    soft_time_limit: float | None = None
    hard_time_limit: float | None = None
    dedup: bool | Callable[..., str] = False
    dedup_ttl: float = 3600.0
    expires: float | None = None
    periodic: Callable | None = None  # a huey.crontab(...): the scheduler queues it
    max_reruns: int = MAX_RERUNS


def task(**options: Any) -> Callable[[Callable], Callable]:
    """Mark a plain function as a task. ``TaskRunner.register`` binds it."""
    def mark(fn: Callable) -> Callable:
        setattr(fn, TASK_OPTIONS, options)
        return fn
    return mark


def _spec_from(fn: Callable, overrides: dict | None = None) -> TaskSpec:
    options = dict(getattr(fn, TASK_OPTIONS, {}), **(overrides or {}))
    retry = RetryPolicy(
        delay=options.pop("retry_delay", RetryPolicy.delay),
        backoff=options.pop("retry_backoff", RetryPolicy.backoff),
        jitter=options.pop("retry_jitter", RetryPolicy.jitter),
        max_delay=options.pop("retry_max_delay", RetryPolicy.max_delay))
    if "autoretry_for" in options:
        options["autoretry_for"] = tuple(options["autoretry_for"])
    retries = options.get("retries", 0)
    if not isinstance(retries, int) or retries < 0:
        raise ValueError("%s: retries must be a whole number >= 0 (never infinite)"
                         % fn.__name__)
    return TaskSpec(name=fn.__name__, fn=fn, retry=retry, **options)


def dedup_key(name: str, args: list, kwargs: dict) -> str:
    canonical = json.dumps([name, args, kwargs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Current(threading.local):
    task_id: str | None = None
    runner: "TaskRunner | None" = None
    revoked: Callable[[], bool] | None = None
    retries_left: int = 0


_current = _Current()


def current_runner() -> "TaskRunner | None":
    """The runner executing the current task (None outside a task)."""
    return _current.runner


def current_task_id() -> str | None:
    """The id of the task running in this thread (None outside a task)."""
    return _current.task_id


def retries_left() -> int:
    """How many more attempts the running task gets if this one fails with an
    exception it retries on (0 on its last attempt, and outside a task)."""
    return _current.retries_left


def report_progress(done: int, total: int | None = None) -> None:
    """Record the running task's progress (shown in its state). No-op outside a task."""
    runner, task_id = _current.runner, _current.task_id
    if runner is not None and task_id is not None:
        runner.huey.storage.save_state(task_id, progress={"done": done, "total": total})


def stop_requested() -> bool:
    """True when the running task was revoked: it should stop at a safe point."""
    runner, task_id = _current.runner, _current.task_id
    return bool(runner and task_id and runner.revoke_requested(task_id))


class TaskRunner:
    def __init__(self, url: str, name: str = "botlite", *,
                 child_setup: tuple[str, Any] | None = None,
                 result_expires: float = RESULT_EXPIRES,
                 state_retention: float = STATE_RETENTION, migrate: bool = True) -> None:
        """``migrate``: create or upgrade the queue's tables if they are not current
        (what a starting process does; a task's child process passes False)."""
        self.url = url
        self.name = name
        self.huey = build_huey(url, name)
        self.storage = self.huey.storage
        if migrate:
            self.storage.migrate()
        self.specs: dict[str, TaskSpec] = {}
        self.tasks: dict[str, TaskWrapper] = {}
        self.child_setup = child_setup
        self.result_expires = result_expires
        self.state_retention = state_retention
        self.wake = threading.Event()  # set by every enqueue in this process
        self._connect_signals()

    # -- registration ----------------------------------------------------------------

    def register(self, fn: Callable, **overrides: Any) -> TaskWrapper:
        """Bind a ``@task`` function; ``overrides`` replace some of its options
        (for example a retry delay taken from the settings)."""
        spec = _spec_from(fn, overrides)
        runner = self

        def run(*args, task=None, **kwargs):
            return runner._run_attempt(spec, task, list(args), kwargs)
        run.__name__ = spec.name
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__

        options = dict(name=spec.name, context=True, retries=spec.retries, retry_delay=0,
                       priority=LANE_PRIORITIES.get(spec.queue, 0) + spec.priority,
                       expires=spec.expires, retry_policy=spec.retry)
        if spec.periodic is not None:
            wrapper = self.huey.periodic_task(spec.periodic, **options)(run)
        else:
            wrapper = self.huey.task(**options)(run)
        self.huey.routes[self.huey._registry.task_to_string(wrapper.task_class)] = spec.queue
        self.specs[spec.name] = spec
        self.tasks[spec.name] = wrapper
        return wrapper

    def _run_attempt(self, spec: TaskSpec, task, args: list, kwargs: dict):
        _current.runner, _current.task_id = self, task.id
        _current.retries_left = task.retries
        lock_key = lock_value = None
        try:
            reruns = getattr(task, "reruns", 0) or 0
            if reruns > spec.max_reruns:
                task.retries = 0
                raise PermanentError(
                    "not run again: its process ended before the attempt did %d times "
                    "(killed, crashed, or stopped past the shutdown timeout); the limit "
                    "is %d re-runs" % (reruns, spec.max_reruns))
            if spec.dedup:
                key = self._dedup_key(spec, args, kwargs)
                # Keep the enqueue-side key alive while the task is still going.
                self.storage.extend_lock(lock_name("dedup", key),
                                         spec.dedup_ttl + spec.retry.max_delay)
                # Not Huey's lock_task: it remembers every lock name in a set that
                # would grow with every distinct argument list.
                lock_key = lock_name("run", key)
                lock_value = ("%s:%s" % (task.id, uuid.uuid4().hex)).encode()
                holder = self._take_run_lock(lock_key, lock_value,
                                             spec.hard_time_limit or spec.dedup_ttl)
                if holder is not None:
                    lock_key = None
                    raise TaskLockedException("an identical task %s is running" % holder)
            if spec.hard_time_limit:
                return limits.run_in_child(self, spec, task.id, args, kwargs, task.retries)
            with limits.soft_time_limit(spec.soft_time_limit):
                value = spec.fn(*args, **kwargs)
            return to_json(value)  # a result that is not JSON fails the task here
        except (RetryTask, CancelExecution, TaskLockedException):
            raise
        except Exception as exc:
            if not self._retryable(spec, exc):
                task.retries = 0
            raise
        finally:
            if lock_key is not None:  # unless a re-run of this task took it over
                self.storage.delete_lock(lock_key, lock_value)
            _current.runner = _current.task_id = None
            _current.retries_left = 0

    def _take_run_lock(self, lock: str, value: bytes, ttl: float) -> str | None:
        """Take the execution lock of a dedup key for this attempt (``value`` is
        "<task id>:<attempt token>"); or return the id of the other, running task
        that holds it.

        A re-run of the same task (after a kill, a release at shutdown) takes the
        lock over, since the claim protocol lets only one attempt of a task run at
        a time; the attempt token keeps an earlier attempt that still ends (a
        worker cut off past the heartbeat timeout) from deleting the re-run's
        lock. A lock held by a task that is no longer running (its claim was
        released, it ended, it has no state: a crash) is broken at once, not when
        its TTL runs out."""
        task_id = value.split(b":", 1)[0]
        holder = b""
        for _ in range(5):
            if self.storage.put_if_empty(lock, value, ttl):
                return None
            holder = self.storage.peek_data(lock)
            if holder is EmptyData:
                continue  # freed meanwhile: try again
            holder = bytes(holder)
            holder_task = holder.split(b":", 1)[0]  # a lock of older code is the id alone
            if holder_task != task_id:
                state = self.storage.get_state(holder_task.decode(errors="replace"))
                if state is not None and state["status"] == "STARTED":
                    return state["task_id"]
            self.storage.delete_lock(lock, holder)  # only if it still names that attempt
        return holder.split(b":", 1)[0].decode(errors="replace")

    @staticmethod
    def _retryable(spec: TaskSpec, exc: BaseException) -> bool:
        if isinstance(exc, PermanentError) or getattr(exc, "permanent", False):
            return False
        if isinstance(exc, limits.ChildTaskError):  # raised in a child: match by name
            names = {cls.__name__ for kind in spec.autoretry_for for cls in kind.__mro__}
            return exc.type_name in names or Exception in spec.autoretry_for
        return isinstance(exc, spec.autoretry_for)

    # -- states from Huey's signals ----------------------------------------------

    def _connect_signals(self) -> None:
        huey = self.huey

        # STARTED is written by the claim itself (same transaction).

        @huey.signal(S.SIGNAL_SCHEDULED)
        def not_due_yet(signal, task):
            outcome = getattr(task, "outcome", None)
            # Claimed before it was due (clocks of two machines differ): Huey put
            # it in its schedule; it is still pending.
            if outcome is not None and "status" not in outcome:
                outcome.update(status="PENDING", next_attempt_at=_timestamp(task.eta))

        @huey.post_execute("botlite-states")
        def finished(task, value, exc):
            spec = self.specs.get(type(task).__name__)
            now = time.time()
            if exc is None:
                task.outcome.update(status="SUCCESS", result=value, error=None,
                                    traceback=None, finished_at=now)
                if spec is not None and spec.dedup:
                    self._keep_dedup(spec, task, now)
                return
            if isinstance(exc, limits.ChildTaskError):  # what the child raised, where
                error, tb = str(exc), exc.child_traceback or str(exc)
            else:
                error = "%s: %s" % (type(exc).__name__, exc)
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            if task.retries:
                task.outcome.update(status="RETRY", error=error, traceback=tb,
                                    retries=task.retries - 1)
            else:
                task.outcome.update(status="FAILURE", error=error, traceback=tb,
                                    finished_at=now, retries=0)
                self._drop_dedup(spec, task)

        @huey.signal(S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED)
        def dropped(signal, task):
            task.outcome.update(status="REVOKED", finished_at=time.time(), started_at=None,
                                error="expired before it started" if signal == S.SIGNAL_EXPIRED
                                else "revoked")
            self._drop_dedup(self.specs.get(type(task).__name__), task)

        @huey.signal(S.SIGNAL_CANCELED)
        def cancelled(signal, task):
            # A pre-execute hook cancelled it (post_execute overrides this when the
            # task itself raised CancelExecution).
            outcome = getattr(task, "outcome", None)
            if outcome is not None and "status" not in outcome:
                outcome.update(status="REVOKED", finished_at=time.time(),
                               error="cancelled before it started")

        @huey.signal(S.SIGNAL_ENQUEUED)
        def enqueued(signal, task):
            self.wake.set()

    # -- enqueue, dedup ------------------------------------------------------------

    def _dedup_key(self, spec: TaskSpec, args: list, kwargs: dict) -> str:
        if callable(spec.dedup):
            return str(spec.dedup(*args, **kwargs))
        return dedup_key(spec.name, args, kwargs)

    def _keep_dedup(self, spec: TaskSpec, task, now: float) -> None:
        key = self._dedup_key(spec, list(task.args), task.kwargs)
        self.storage.extend_lock(lock_name("dedup", key), spec.dedup_ttl)

    def _drop_dedup(self, spec: TaskSpec | None, task) -> None:
        """Free the task's dedup key (only if it still names this task)."""
        if spec is not None and spec.dedup:
            key = self._dedup_key(spec, list(task.args), task.kwargs)
            self.storage.delete_lock(lock_name("dedup", key), task.id.encode())

    def _drop_dedup_of(self, state: dict) -> None:
        if state.get("dedup_key"):
            self.storage.delete_lock(lock_name("dedup", state["dedup_key"]),
                                     state["task_id"].encode())

    def enqueue(self, name: str, args: list | tuple = (), kwargs: dict | None = None,
                delay: float | None = None, then: tuple[str, list] | None = None,
                on_error: tuple[str, list] | None = None, task_id: str | None = None) -> str:
        """Queue task ``name``; return its id.

        With ``dedup``, an identical task that is pending, running, or succeeded
        within ``dedup_ttl`` is not queued again: its id is returned.
        ``task_id``: the id to use (so follow-ups can name it); default: a new one.
        ``then`` / ``on_error``: (task name, args) queued after success / after
        the final failure (Huey pipelines; the first gets the result appended,
        the second the error).
        Raises UnknownTask, or TypeError when the arguments are not JSON.
        """
        try:
            wrapper, spec = self.tasks[name], self.specs[name]
        except KeyError:
            raise UnknownTask(name) from None
        args, kwargs = to_json(list(args)), to_json(kwargs or {})
        new = wrapper.s(*args, **kwargs)
        if task_id is not None:
            new.id = task_id
        for follow_up, attach in ((then, new.then), (on_error, new.error)):
            if follow_up is not None:
                if follow_up[0] not in self.tasks:
                    raise UnknownTask(follow_up[0])
                attach(self.tasks[follow_up[0]], *to_json(list(follow_up[1])))
        if delay:
            new.eta = _eta(delay)  # waits in the queue until then
        if not spec.dedup:
            self.huey.enqueue(new)
            return new.id
        # The key, the queue row and its state in one write: a crash leaves all or none.
        key = self._dedup_key(spec, args, kwargs)
        return self.huey.enqueue_task(new, key, spec.dedup_ttl + (delay or 0)) or new.id

    # -- queries -----------------------------------------------------------------

    def state(self, task_id: str) -> dict:
        state = self.storage.get_state(task_id)
        if state is None:
            raise TaskNotFound(task_id)
        if state["status"] == "STARTED" and not state["error"] and self.revoke_requested(task_id):
            state["error"] = "stop requested"  # revoked while claimed: it will stop
        return state

    def states(self, status: str | None = None, name: str | None = None,
               limit: int = 50) -> list[dict]:
        return self.storage.list_states(status=status, name=name, limit=limit)

    def queue_depth(self) -> dict[str, int]:
        return {"pending": self.huey.pending_count(),
                "scheduled": self.huey.scheduled_count()}

    def lane_names(self) -> list[str]:
        """The queues tasks can be on: the built-in lanes and every task's own."""
        return sorted(set(LANE_PRIORITIES) | {s.queue for s in self.specs.values()})

    def queues(self) -> dict:
        lanes = {lane: {"pending": 0, "scheduled": 0, "running": 0}
                 for lane in self.lane_names()}
        for lane, counts in self.storage.lane_counts().items():
            lanes.setdefault(lane, {"pending": 0, "scheduled": 0, "running": 0}).update(counts)
        for scheduled in self.huey.scheduled():
            lane = self.specs.get(type(scheduled).__name__)
            lane = lane.queue if lane else "default"
            lanes.setdefault(lane, {"pending": 0, "scheduled": 0, "running": 0})
            lanes[lane]["scheduled"] += 1
        return {"queues": lanes, "dead": self.storage.count_states("FAILURE")}

    # -- actions -----------------------------------------------------------------

    def revoke(self, task_id: str) -> dict:
        """Revoke a pending, scheduled or retrying task; ask a running one to stop."""
        state = self.state(task_id)
        if state["status"] in FINISHED:
            raise InvalidTransition("task %s already finished (%s)" % (task_id, state["status"]))
        # The flag first: if a worker claims it meanwhile, Huey skips it on start.
        self.huey.revoke_by_id(task_id)
        if self.storage.remove_queued(task_id):
            self.huey.restore_by_id(task_id)  # gone from the queue: no flag needed
            # A task waiting for a retry keeps why its last attempt failed (and the
            # traceback); it has no next attempt any more.
            error = "revoked" if not state["error"] else \
                "revoked; the last attempt failed: %s" % state["error"]
            self.storage.save_state(task_id, status="REVOKED", finished_at=time.time(),
                                    error=error, next_attempt_at=None)
            self._drop_dedup_of(state)
        # Else it is claimed: running now, or about to start and be skipped. Nothing
        # is written to its state (a write here could overwrite the final error of
        # a task that ends at this moment); `state` derives the note from the flag.
        return self.state(task_id)

    def revoke_requested(self, task_id: str) -> bool:
        return self.huey.is_revoked(task_id)

    def retry(self, task_id: str) -> dict:
        """Run a failed (dead) or revoked task again, with its retries restored."""
        state = self.state(task_id)
        if state["status"] not in ("FAILURE", "REVOKED"):
            raise InvalidTransition("only failed or revoked tasks can be retried; %s is %s"
                                    % (task_id, state["status"]))
        try:
            wrapper, spec = self.tasks[state["name"]], self.specs[state["name"]]
        except KeyError:
            raise UnknownTask(state["name"]) from None
        self.huey.restore_by_id(task_id)
        self.storage.remove_queued(task_id)  # never two copies of one task id
        again = wrapper.s(*(state["args"] or []), **(state["kwargs"] or {}))
        again.id = task_id
        key = state.get("dedup_key") if spec.dedup else None
        # The queue row, its fresh state (and its dedup key) in one write.
        holder = self.huey.enqueue_task(again, key, spec.dedup_ttl, state={
            "status": "PENDING", "finished_at": None, "error": None, "traceback": None,
            "next_attempt_at": None, "retries": spec.retries, "reruns": 0})
        if holder is not None:
            raise InvalidTransition("an identical task %s is already queued" % holder)
        return self.state(task_id)

    def purge(self, lane: str) -> int:
        """Drop every queued (not running) task of a lane; they become REVOKED.
        A name that is no queue (a typo) raises `UnknownQueue`."""
        if lane not in self.lane_names() and lane not in self.storage.lane_counts():
            raise UnknownQueue(lane)
        removed = self.storage.purge_lane(lane)
        now = time.time()
        for task_id in removed:
            state = self.storage.get_state(task_id)
            self.storage.save_state(task_id, status="REVOKED", finished_at=now,
                                    error="purged from queue %s" % lane)
            if state is not None:
                self._drop_dedup_of(state)
        return len(removed)

    def prune(self) -> dict:
        """Forget results older than result_expires and finished states older
        than state_retention."""
        now = time.time()
        results, states = self.storage.prune_states(now - self.result_expires,
                                                    now - self.state_retention)
        return {"results": results, "states": states}

    def close(self) -> None:
        self.huey.storage.close()


def _timestamp(eta) -> float | None:
    import datetime
    return None if eta is None else eta.replace(tzinfo=datetime.timezone.utc).timestamp()


def _eta(delay: float):
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + \
        datetime.timedelta(seconds=delay)
