"""Worker threads and the scheduler inside the calling process.

Huey's consumer runs the threads; this module gives it a worker that claims
tasks (optionally from some lanes only), wakes at once on an in-process enqueue,
and polls the queue at a bounded interval otherwise (Redis and PostgreSQL block on
their own wake-up signal). It keeps a heartbeat, releases the claims of dead
worker processes, prunes old results, and on stop releases the claims of tasks
that did not finish within the shutdown timeout so another worker runs them.

Starvation: every ``FAIR_EVERY``-th claim of a worker takes the oldest queued
task instead of the highest-priority one, so under a continuous flood of
high-priority tasks a low-priority task still starts after at most about
``FAIR_EVERY`` x (tasks queued before it) claims.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence

from huey.consumer import Consumer, Worker

from botlite.runner import limits
from botlite.runner.core import TaskRunner

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_MAX_AGE = 30.0
POLL_INTERVAL = 0.05
BLOCKING_WAIT = 1.0
FAIR_EVERY = 4
SLOW_LANES = frozenset({"documents", "websites"})
"""Lanes whose tasks may run for minutes (ingestion): with several worker threads,
at most all but one run them at a time, so a notification, a chat turn's action or
a health check never waits for a document to finish."""
PRUNE_INTERVAL = 600.0
CHECKPOINT_INTERVAL = 1.0


def _pid_namespace() -> str:
    """Identifies this PID namespace: containers sharing a host name do not
    share it, so a PID is only checked where it means the same process."""
    try:
        return "%x" % os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "0"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_ticks(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc): with its
    number, it names one process, not a later one that got the same number.
    "" where /proc cannot tell."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _process_state(pid: int) -> str:
    """The process's state letter from /proc ("Z" for a zombie), "" where unknown."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def _process_alive(pid: int, started: str) -> bool:
    """Whether the process ``pid`` that started at ``started`` (see _start_ticks;
    "" = unknown, then its number alone) still runs. A zombie (killed, not yet
    reaped by its parent) answers kill(pid, 0) but runs nothing: it is dead."""
    if not _pid_alive(pid) or _process_state(pid) in ("Z", "X"):
        return False
    return not started or _start_ticks(pid) in ("", started)


class ClaimingWorker(Worker):
    def __init__(self, huey, stop_flag, runtime: "Runtime", **kwargs):
        super().__init__(huey, stop_flag, **kwargs)
        self.runtime = runtime
        self.claims = 0
        self.pending = None  # the last attempt's outcome, written with the next claim

    def loop(self, now=None):
        runtime = self.runtime
        # A slow lane's task only with a slot: one thread always stays for the rest.
        slot = runtime.slow_slots.acquire(blocking=False)
        try:
            try:
                task = self.huey.dequeue(
                    runtime.worker_id, runtime.lanes if slot else runtime.fast_lanes(),
                    oldest_first=self.claims % FAIR_EVERY == FAIR_EVERY - 1,
                    finish=self.pending)
                self.pending = None
            except Exception:
                self._logger.exception("error claiming from the queue")
                self.stop_flag.wait(1.0)
                return
            if task is None:
                if slot:
                    runtime.slow_slots.release()
                    slot = False
                runtime.wait_for_work()
                return
            if slot and not runtime.is_slow(task):
                runtime.slow_slots.release()
                slot = False
            self.claims += 1
            task.worker_id = runtime.worker_id
            try:
                self.pending = self.huey.execute_deferred(task, now)
            except Exception:
                self._logger.exception("unhandled error executing task %s", task.id)
            if self.stop_flag.is_set():
                self.write_pending()
        finally:
            if slot:
                runtime.slow_slots.release()

    def write_pending(self) -> None:
        if self.pending is not None:
            self.huey.storage.finish(*self.pending)
            self.pending = None

    def shutdown(self):
        try:
            self.write_pending()
        except Exception:
            self._logger.exception("could not record the last task's outcome")
        super().shutdown()


class _EmbeddedConsumer(Consumer):
    def __init__(self, huey, runtime: "Runtime", **options):
        self.runtime = runtime
        super().__init__(huey, **options)

    def _create_worker(self):
        return ClaimingWorker(self.huey, self.stop_flag, self.runtime,
                              default_delay=self.default_delay, max_delay=self.max_delay,
                              backoff=self.backoff, max_tasks=self.max_tasks)

    def _set_signal_handlers(self) -> None:
        """The embedding process decides what signals do."""


class Runtime:
    def __init__(self, runner: TaskRunner, workers: int = 2, *, lanes=None,
                 periodic: bool = True, shutdown_timeout: float = 10.0,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL,
                 poll_interval: float = POLL_INTERVAL,
                 prune_interval: float | None = PRUNE_INTERVAL,
                 services: Sequence = ()) -> None:
        self.runner = runner
        self.storage = runner.storage
        self.workers = workers
        self.lanes = tuple(lanes) if lanes else None
        self.shutdown_timeout = shutdown_timeout
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        self.prune_interval = prune_interval
        # Objects with start() and stop(wait): started after the workers, stopped before.
        self.services = tuple(services)
        # One thread is kept from the slow lanes (when there is more than one, and
        # this process serves other lanes too).
        self.slow_slots = threading.BoundedSemaphore(max(workers - 1, 1))
        self._fast_lanes: tuple | None = None
        self.hostname = socket.gethostname()
        self.namespace = _pid_namespace()
        # host:pid:pid namespace:process start.random: on its own host, whether
        # the process behind a worker id still runs can be checked (see recover).
        self.worker_id = "%s:%d:%s:%s.%s" % (self.hostname, os.getpid(), self.namespace,
                                             _start_ticks(os.getpid()), uuid.uuid4().hex[:8])
        self.started_at = time.time()
        self.consumer = _EmbeddedConsumer(
            runner.huey, self, workers=workers, periodic=periodic,
            shutdown_timeout=shutdown_timeout)
        self._blocking_wait = getattr(self.storage, "wait_for_work", None)
        self._stopping = threading.Event()
        self._last_prune = 0.0
        self._last_failure = ("", 0.0)  # the maintenance loop's last error, and when logged
        self._paused_seen: set[str] = set()  # stale heartbeat, live process: logged once
        self._heartbeat = threading.Thread(target=self._heartbeat_loop,
                                           name="botlite-heartbeat", daemon=True)
        self._maintenance = threading.Thread(target=self._maintenance_loop,
                                             name="botlite-maintenance", daemon=True)

    def info(self) -> dict:
        return {"hostname": self.hostname, "pid": os.getpid(), "workers": self.workers,
                "lanes": list(self.lanes) if self.lanes else None,
                "started_at": self.started_at}

    def fast_lanes(self):
        """The lanes this process serves but the slow ones (None: all of them,
        when it serves only slow lanes or has a single thread)."""
        if self._fast_lanes is None:
            lanes = self.lanes or self.runner.lane_names()
            fast = tuple(lane for lane in lanes if lane not in SLOW_LANES)
            self._fast_lanes = fast if fast and self.workers > 1 else ()
        return self._fast_lanes or self.lanes

    def is_slow(self, task) -> bool:
        spec = self.runner.specs.get(type(task).__name__)
        return spec is not None and spec.queue in SLOW_LANES

    def wait_for_work(self) -> None:
        """Sleep until an enqueue (in this process, or anywhere for Redis and
        PostgreSQL) or the poll interval passes."""
        if self._blocking_wait is not None:
            self._blocking_wait(BLOCKING_WAIT)
        elif self.runner.wake.wait(self.poll_interval):
            self.runner.wake.clear()

    def beat(self) -> None:
        self.storage.beat(self.worker_id, self.info())

    def _local_process_alive(self, owner: str) -> bool | None:
        """For a worker id of this host and PID namespace: whether its process
        still runs; None for other hosts (only their heartbeat tells)."""
        parts = owner.split(":")
        if len(parts) != 4 or parts[0] != self.hostname or parts[2] != self.namespace \
                or not parts[1].isdigit():
            return None
        started = parts[3].split(".")[0] if "." in parts[3] else ""
        return _process_alive(int(parts[1]), started)

    def recover(self) -> int:
        """Release claims held by worker processes that are gone: no heartbeat
        within HEARTBEAT_MAX_AGE, or (on this host) a process that no longer exists.
        A worker of this host whose process still runs keeps its claims even with
        a stale heartbeat (a long pause, a stopped process): it may still be
        running them."""
        # Owners first, then heartbeats: a worker that starts and claims in between
        # is then seen alive, never released by mistake.
        owners = self.storage.claim_owners()
        alive = {w["id"] for w in self.storage.workers(HEARTBEAT_MAX_AGE)}
        alive.add(self.worker_id)
        dead = set()
        for owner in owners:
            local = self._local_process_alive(owner)
            if local is False or (owner not in alive and local is None):
                dead.add(owner)
            elif owner not in alive and owner not in self._paused_seen:
                self._paused_seen.add(owner)
                logger.warning("worker %s has no fresh heartbeat but its process runs: "
                               "its tasks are left to it", owner)
        dead.discard(self.worker_id)
        if not dead:
            return 0
        released = self.storage.release_claims(dead)
        for owner in dead - alive:
            self.storage.forget(owner)
        if released:
            logger.warning("released %d task(s) claimed by stopped worker(s) %s",
                           released, ", ".join(sorted(dead)))
        return released

    def start(self) -> None:
        self.beat()
        self.recover()
        self.consumer.start()
        self._heartbeat.start()
        self._maintenance.start()
        for service in self.services:
            service.start()
        logger.info("started %d worker thread(s) as %s%s", self.workers, self.worker_id,
                    " on queues %s" % ",".join(self.lanes) if self.lanes else "")

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            try:
                self.consumer.check_worker_health()
                self.beat()
                self.recover()
            except Exception:
                logger.exception("heartbeat failed; trying again in %ss",
                                 self.heartbeat_interval)

    def _maintenance_loop(self) -> None:
        """SQLite WAL checkpoints every second (off the workers' commits), and
        pruning of old results and states every PRUNE_INTERVAL (off the
        heartbeat, which must never be late)."""
        checkpoint = getattr(self.storage, "checkpoint", None)
        while not self._stopping.wait(CHECKPOINT_INTERVAL):
            try:
                if checkpoint is not None:
                    checkpoint()
                if (self.prune_interval is not None
                        and time.monotonic() - self._last_prune > self.prune_interval):
                    self._last_prune = time.monotonic()
                    pruned = self.runner.prune()
                    if any(pruned.values()):
                        logger.info("pruned %(results)d result(s), %(states)d task state(s)",
                                    pruned)
            except Exception as exc:
                # Once with its traceback; the same failure again (a full disk)
                # once a minute, in one line.
                again = repr(exc) == self._last_failure[0]
                if not again or time.monotonic() - self._last_failure[1] > 60:
                    (logger.warning if again else logger.exception)(
                        "maintenance failed (%s); trying again", exc)
                    self._last_failure = (repr(exc), time.monotonic())

    def stop(self) -> bool:
        """Stop claiming; wait up to the shutdown timeout for running tasks, then
        release the ones still running so another worker runs them again.

        Returns True when every worker finished in time.
        """
        self._stopping.set()
        self._stop_services()
        self.runner.wake.set()
        try:
            self.consumer.stop(graceful=True)
        except KeyboardInterrupt:
            pass  # asked to stop waiting: release what is still running
        self._heartbeat.join(timeout=self.heartbeat_interval + 5)
        self._maintenance.join(timeout=CHECKPOINT_INTERVAL + 5)
        finished = not any(t.is_alive() for _, t in self.consumer.worker_threads)
        if not finished:
            released = self.storage.release_claims([self.worker_id])
            killed = limits.kill_children()  # their attempts now belong to the re-run
            logger.warning("workers still busy after %ss: released %d task(s) for a re-run%s",
                           self.shutdown_timeout, released,
                           " (stopped %d task process(es))" % killed if killed else "")
        self._forget()
        return finished

    def abandon(self) -> None:
        """Stop without waiting: release this process's claims for a re-run."""
        self._stopping.set()
        self._stop_services(wait=False)
        self.consumer.stop_flag.set()
        released = self.storage.release_claims([self.worker_id])
        limits.kill_children()
        if released:
            logger.warning("released %d running task(s) for a re-run", released)
        self._forget()

    def _stop_services(self, wait: bool = True) -> None:
        for service in self.services:
            try:
                service.stop(wait=wait)
            except Exception:
                logger.exception("could not stop %r", service)

    def _forget(self) -> None:
        try:
            self.storage.forget(self.worker_id)
        except Exception:
            logger.exception("could not remove worker %s from the ledger", self.worker_id)
