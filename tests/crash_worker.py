"""A worker process for the crash test: runs `record_effect` tasks on a broker URL.

    python tests/crash_worker.py BROKER_URL EFFECTS_DB QUEUE_NAME
"""
import os
import signal
import sqlite3
import sys
import threading
import time

from botlite.runner import Runtime, TaskRunner, task

EFFECTS_DB = sys.argv[2]


def _db():
    conn = sqlite3.connect(EFFECTS_DB, timeout=30)
    conn.execute("pragma journal_mode=wal")
    return conn


@task(retries=3, retry_delay=0.1)
def record_effect(item):
    with _db() as conn:
        conn.execute("insert into attempts (item, pid) values (?, ?)", (item, os.getpid()))
    time.sleep(0.1)  # the work; a kill here leaves an attempt without an effect
    with _db() as conn:
        # Idempotent by the item's key: a re-run after a crash changes nothing.
        conn.execute("insert or ignore into effects (item, pid) values (?, ?)",
                     (item, os.getpid()))
    return item


@task(hard_time_limit=120, dedup=True)
def child_sleeps(seconds):
    """Runs in a child process (hard time limit): records that child's pid, sleeps."""
    with _db() as conn:
        conn.execute("insert into children (pid) values (?)", (os.getpid(),))
    time.sleep(seconds)
    return seconds


@task(retries=3, retry_delay=0.1, dedup=True, dedup_ttl=300)
def gated_once(item):
    """Like send_notification: deduplicated, retried, run in the worker's thread.
    Records its attempt, then waits until the file <effects db>.go exists."""
    with _db() as conn:
        conn.execute("insert into attempts (item, pid) values (?, ?)", (item, os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(EFFECTS_DB + ".go") and time.monotonic() < deadline:
        time.sleep(0.01)  # the work: a webhook receiver that is slow to answer
    with _db() as conn:
        conn.execute("insert or ignore into effects (item, pid) values (?, ?)",
                     (item, os.getpid()))
    return item


def main():
    import crash_worker  # register it under its module name, not __main__

    runner = TaskRunner(sys.argv[1], name=sys.argv[3])
    runner.register(crash_worker.record_effect)
    runner.register(crash_worker.child_sleeps)
    runner.register(crash_worker.gated_once)
    runtime = Runtime(runner, workers=2, periodic=False, heartbeat_interval=1,
                      shutdown_timeout=float(os.environ.get("CRASH_SHUTDOWN_TIMEOUT", 30)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("ready", flush=True)
    stop.wait()
    runtime.stop()


if __name__ == "__main__":
    main()
