"""A Huey instance from a broker URL, on botlite's extensions of Huey's storages.

``BotliteHuey`` changes three things in Huey and keeps the rest (task classes,
scheduler, revocation, locks, pipelines, signals):

- ``dequeue`` claims a task instead of deleting it, and ``execute`` acks the claim
  together with the attempt's recorded outcome (one write), so a task whose
  process dies mid-run is still in the queue.
- ``_requeue_task`` computes retry delays with exponential backoff, jitter and a
  cap from the task's ``RetryPolicy``.
- the storage learns each message's task id, name and lane from ``describe``.
"""
from __future__ import annotations

import datetime
import json
import logging
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from huey import Huey

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
        return SqliteQueueStorage, {"filename": url[len(SQLITE_PREFIX):], "timeout": 10}
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
        task_id, name, retries, args, kwargs = fields[0], fields[1], fields[3], fields[6], fields[7]
        return {"task_id": task_id, "name": name.rsplit(".", 1)[-1],
                "lane": self.routes.get(name, "default"), "args": args, "kwargs": kwargs,
                "retries": retries}

    def dequeue(self, worker_id: str = "local", lanes=None, oldest_first: bool = False,
                finish: tuple | None = None):
        """Claim the next task (and record ``finish``, a previous attempt's
        outcome, in the same write)."""
        claimed = self.storage.claim(worker_id, lanes, oldest_first, finish)
        if claimed is None:
            return None
        claim_id, data = claimed
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
            self.storage.finish(claim_id, task_id, status="FAILURE", finished_at=time.time(),
                                error="this worker cannot run it: %s" % exc)
            return None
        task.claim_id = claim_id
        return task

    def execute(self, task, timestamp=None):
        """Run a claimed task, then ack it with its outcome."""
        finish = self.execute_deferred(task, timestamp)
        self.storage.finish(finish[0], finish[1], **finish[2])

    def execute_deferred(self, task, timestamp=None) -> tuple:
        """Run a claimed task; return (claim_id, task_id, outcome) for the caller
        to write, usually together with its next claim."""
        task.outcome = {}
        try:
            super().execute(task, timestamp)
        except Exception:
            logger.exception("error running task %s", task.id)
        return getattr(task, "claim_id", None), task.id, task.outcome

    def _requeue_task(self, task, timestamp, retry_eta=None):
        policy = getattr(task, "retry_policy", None)
        if retry_eta is None and policy is not None:
            attempt = (task.default_retries or 0) - task.retries + 1
            delay = policy.delay_for(attempt)
            retry_eta = timestamp + datetime.timedelta(seconds=delay)
        if retry_eta is not None:
            task.outcome["next_attempt_at"] = retry_eta.replace(
                tzinfo=datetime.timezone.utc).timestamp()
        return super()._requeue_task(task, timestamp, retry_eta)


def build_huey(url: str, name: str = "botlite") -> BotliteHuey:
    """Huey on the storage named by ``url``, with JSON payloads and UTC times."""
    return BotliteHuey(name, url)
