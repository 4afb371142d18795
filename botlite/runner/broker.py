"""A Huey instance from a broker URL, on botlite's extensions of Huey's storages.

``BotliteHuey`` changes three things in Huey and keeps the rest (task classes,
scheduler, revocation, locks, pipelines, signals):

- ``dequeue`` claims a task instead of deleting it, and ``execute`` acks the claim
  together with the attempt's recorded outcome (one write), so a task whose
  process dies mid-run is still in the queue.
- ``_requeue_task`` turns a retry into that same queue row, available again
  after exponential backoff with jitter and a cap (the task's ``RetryPolicy``),
  written with the attempt's outcome.
- the storage learns each message's task id, name, lane and due time from
  ``describe``; delayed tasks wait in botlite's queue, not Huey's schedule
  (which is left to periodic tasks).
"""
from __future__ import annotations

import datetime
import json
import logging
import random
import time
import traceback
from dataclasses import dataclass
from urllib.parse import urlsplit

from huey import Huey
from huey import signals as S

from botlite.runner import limits
from botlite.runner.serializer import JSONSerializer
from botlite.runner.storage import PostgresQueueStorage, RedisQueueStorage, SqliteQueueStorage

logger = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"

# Lanes (named queues) and their priorities: a task's priority is its lane's plus
# its own. Unknown lanes get priority 0.
LANE_PRIORITIES = {
    "high_priority": 30,
    "notifications": 20,
    "default": 10,
    "documents": 10,
    "websites": 5,
    "low_priority": 0,
}


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before retry n (1-based): min(cap, delay * backoff**(n-1)), times a
    random factor in [1 - jitter, 1 + jitter]."""
    delay: float = 60.0
    backoff: float = 2.0
    jitter: float = 0.25
    max_delay: float = 3600.0

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_delay, self.delay * (self.backoff ** max(attempt - 1, 0)))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, min(self.max_delay, base * spread))


def storage_options(url: str) -> tuple[type, dict]:
    """The storage class and its keyword arguments for a broker ``url``."""
    scheme = urlsplit(url).scheme
    if url.startswith(SQLITE_PREFIX):
        return SqliteQueueStorage, {"filename": url[len(SQLITE_PREFIX):], "timeout": 10,
                                    "create_tables": False}  # TaskRunner migrates
    if scheme in ("redis", "rediss"):
        return RedisQueueStorage, {"url": url, "blocking": False}
    if scheme in ("postgresql", "postgres"):
        return PostgresQueueStorage, {"dsn": url}
    raise ValueError("unsupported broker URL %r (use sqlite:///, redis:// or postgresql://)" % url)


class BotliteHuey(Huey):
    def __init__(self, name: str, url: str) -> None:
        storage_class, options = storage_options(url)
        self.url = url
        self.routes: dict[str, str] = {}  # registered task key -> lane
        # Results live in the task states (see runner.core), not Huey's result store.
        # Error handlers (on_error pipelines) run after the final failure only.
        super().__init__(name, results=False, storage_class=storage_class,
                         serializer=JSONSerializer(), utc=True, describe=self.describe,
                         store_intermediate_errors=False, **options)

    def describe(self, data: bytes) -> dict:
        fields = json.loads(data)["__huey_message__"]
        task_id, name, eta, retries, args, kwargs = (fields[0], fields[1], fields[2], fields[3],
                                                     fields[6], fields[7])
        available_at = 0.0
        if isinstance(eta, dict) and "__datetime__" in eta:
            available_at = _timestamp(datetime.datetime.fromisoformat(eta["__datetime__"]))
        return {"task_id": task_id, "name": name.rsplit(".", 1)[-1],
                "lane": self.routes.get(name, "default"), "args": args, "kwargs": kwargs,
                "retries": retries, "available_at": available_at}

    def dequeue(self, worker_id: str = "local", lanes=None, oldest_first: bool = False,
                finish: tuple | None = None, due_by: float | None = None):
        """Claim the next available task (and record ``finish``, a previous
        attempt's outcome, in the same write). ``due_by``: see storage.claim."""
        claimed = self.storage.claim(worker_id, lanes, oldest_first, finish, due_by)
        if claimed is None:
            return None
        claim_id, data, reruns = claimed
        try:
            task = self.deserialize_task(data)
        except Exception as exc:
            # Unknown task name (an older worker?) or a damaged message: make it a
            # dead letter that can be retried, rather than losing it silently.
            logger.exception("cannot run a queued message; recording it as failed")
            try:
                task_id = self.describe(data)["task_id"]
            except Exception:
                task_id = None
            self.storage.finish(claim_id, worker_id, task_id, {
                "status": "FAILURE", "finished_at": time.time(),
                "error": "this worker cannot run it: %s" % exc})
            return None
        task.claim_id, task.claimed_by, task.reruns = claim_id, worker_id, reruns
        return task

    def enqueue_task(self, task, dedup_key: str | None = None, dedup_ttl: float = 0.0,
                     state: dict | None = None) -> str | None:
        """``Huey.enqueue`` for one task, written in one step with its dedup lock
        and ``state`` fields (see storage.enqueue_task). Returns None when queued,
        else the id of the identical task holding the dedup lock."""
        if task.expires:
            task.resolve_expires(self.utc)
        holder = self.storage.enqueue_task(self.serialize_task(task), task.priority,
                                           dedup_key, dedup_ttl, state)
        if holder is None:
            self._emit(S.SIGNAL_ENQUEUED, task)
        return holder

    def execute(self, task, timestamp=None):
        """Run a claimed task, then ack it with its outcome."""
        self.storage.finish(*self.execute_deferred(task, timestamp))

    def execute_deferred(self, task, timestamp=None) -> tuple:
        """Run a claimed task; return (claim_id, worker_id, task_id, outcome) for
        the caller to write, usually together with its next claim."""
        task.outcome = outcome = {}
        try:
            super().execute(task, timestamp)
        except BaseException as exc:  # Huey lets SystemExit and the like through
            if isinstance(exc, limits.Abandoned):  # released: storage.finish drops this
                logger.info("task %s: %s", task.id, exc)
            else:
                logger.exception("task %s ended abnormally", task.id)
            outcome.clear()
            outcome.update(status="FAILURE", finished_at=time.time(),
                           error="%s: %s" % (type(exc).__name__, exc),
                           traceback=traceback.format_exc())
            if isinstance(exc, KeyboardInterrupt):
                raise
        if "status" not in outcome and "requeue" not in outcome:
            outcome.update(status="FAILURE", finished_at=time.time(),
                           error="the attempt ended without an outcome")
        return (getattr(task, "claim_id", None), getattr(task, "claimed_by", None), task.id,
                outcome)

    def _requeue_task(self, task, timestamp, retry_eta=None):
        outcome = getattr(task, "outcome", None)
        if outcome is None or getattr(task, "claim_id", None) is None:
            return super()._requeue_task(task, timestamp, retry_eta)
        # The retry is written together with the end of this attempt (finish),
        # as the same queue row made available later: never lost, never doubled.
        task.retries -= 1
        policy = getattr(task, "retry_policy", None)
        if retry_eta is None and policy is not None:
            attempt = (task.default_retries or 0) - task.retries
            retry_eta = timestamp + datetime.timedelta(seconds=policy.delay_for(attempt))
        task.eta = retry_eta or timestamp
        available_at = _timestamp(task.eta)
        outcome["requeue"] = (self.serialize_task(task), available_at, task.priority)
        outcome["next_attempt_at"] = available_at


def _timestamp(moment: datetime.datetime) -> float:
    """A naive UTC datetime (Huey's) as a Unix timestamp."""
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def build_huey(url: str, name: str = "botlite") -> BotliteHuey:
    """Huey on the storage named by ``url``, with JSON payloads and UTC times."""
    return BotliteHuey(name, url)
