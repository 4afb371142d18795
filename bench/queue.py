"""Task queue throughput and latency: botlite's runner against bare Huey on SQLite.
Prints one JSON line.

For each engine, in this process with 2 worker threads:

- enqueue: time to enqueue ``--n`` no-op tasks in a loop (the workers are not
  running yet, so these are also the drain's tasks);
- drain: start the workers and time until all ``--n`` tasks have run;
- latency: ``--latency-n`` tasks sent 20 ms apart while the workers run (idle
  in between); enqueue -> start of each, p50 and p99;
- idle: after ``--idle`` seconds with nothing queued, enqueue -> start of one task.

botlite runs on ``--broker`` (default: a SQLite file in a fresh temp dir). The
baseline, measured in the same run, is always a bare ``SqliteHuey`` on a temp
file with Huey's default consumer (which, when idle, polls with a delay growing
up to 10 s).

    python bench/queue.py [--broker URL] [--n 5000] [--latency-n 200] [--idle 5]
"""
import os
import sys

# This file is named queue.py: as a script, its folder comes first on sys.path and
# would shadow the standard library's ``queue`` (imported by redis, psycopg, ...).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's botlite

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

WORKERS = 2
SPACING = 0.020  # seconds between the latency phase's enqueues


def log(message, *args):
    print("queue bench: " + (message % args if args else message), file=sys.stderr, flush=True)


class Probe:
    """What the task function records: its start time by argument, and a count
    that sets ``done`` when the expected number of tasks has started."""

    def __init__(self):
        self.lock = threading.Lock()
        self.starts = {}
        self.count = 0
        self.target = None
        self.done = threading.Event()

    def expect(self, count):
        with self.lock:
            self.count = 0
            self.target = count
            self.done.clear()

    def hit(self, i):
        now = time.perf_counter()
        with self.lock:
            self.starts[i] = now
            self.count += 1
            if self.count == self.target:
                self.done.set()

    def wait(self, timeout, what):
        if not self.done.wait(timeout):
            with self.lock:
                count, target = self.count, self.target
            raise RuntimeError("%s: only %d of %d task(s) started within %ss"
                               % (what, count, target, timeout))


class _KeepSignals:
    """Huey's Consumer.start() installs handlers for SIGINT/SIGTERM/SIGHUP that only
    its run() loop reads; put the script's own back so Ctrl-C still works."""

    SIGNALS = [s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP"))
               if s is not None]

    def __enter__(self):
        self.saved = {s: signal.getsignal(s) for s in self.SIGNALS}

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            if handler is not None:
                signal.signal(signum, handler)


class BotliteEngine:
    def __init__(self, url, probe):
        from botlite.runner import Runtime, TaskRunner, task

        self.runner = TaskRunner(url, name="bench-%s" % uuid.uuid4().hex[:8])

        @task()
        def noop(i):
            probe.hit(i)

        self.runner.register(noop)
        self.runtime = Runtime(self.runner, workers=WORKERS, periodic=False)
        self.last_id = None

    def enqueue(self, i):
        self.last_id = self.runner.enqueue("noop", [i])

    def start(self):
        with _KeepSignals():
            self.runtime.start()

    def stop(self):
        finished = self.runtime.stop()
        if not finished:
            log("botlite: Runtime.stop() reported workers still busy")
        try:  # sanity checks: reported on stderr, never fatal
            depth = self.runner.queue_depth()
            if depth["pending"] or depth["scheduled"]:
                log("botlite: queue not empty after the run: %s", depth)
            state = self.runner.state(self.last_id)
            if state.get("status") != "SUCCESS" or not state.get("started_at"):
                log("botlite: unexpected state of the last task: %s", state)
        except Exception as exc:
            log("botlite: checking the queue after the run failed: %r", exc)

    def close(self):
        try:
            self.runner.huey.flush()
        finally:
            self.runner.close()


class HueyEngine:
    def __init__(self, filename, probe):
        from huey import SqliteHuey

        self.huey = SqliteHuey("bench", filename=filename)

        @self.huey.task()
        def noop(i):
            probe.hit(i)

        self.noop = noop
        self.consumer = self.huey.create_consumer(workers=WORKERS, worker_type="thread")

    def enqueue(self, i):
        self.noop(i)

    def start(self):
        with _KeepSignals():
            self.consumer.start()

    def stop(self):
        self.consumer.stop(graceful=True)
        if self.huey.pending_count():
            log("huey: %d task(s) still queued after the run", self.huey.pending_count())

    def close(self):
        self.huey.storage.close()


def _percentile(values, pct):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def measure(label, make_engine, n, latency_n, idle, timeout):
    probe = Probe()
    engine = make_engine(probe)
    started = False
    try:
        probe.expect(n)
        begin = time.perf_counter()
        for i in range(n):
            engine.enqueue(i)
        enqueue_s = time.perf_counter() - begin
        log("%s: enqueued %d in %.2f s", label, n, enqueue_s)

        begin = time.perf_counter()
        engine.start()
        started = True
        probe.wait(timeout, "%s drain" % label)
        drain_s = time.perf_counter() - begin
        log("%s: drained %d in %.2f s", label, n, drain_s)

        base = n
        probe.expect(latency_n)
        sent = []
        t0 = time.perf_counter()
        for k in range(latency_n):
            pause = t0 + k * SPACING - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # pacing the sends, not waiting for a condition
            sent.append(time.perf_counter())
            engine.enqueue(base + k)
        probe.wait(timeout, "%s latency" % label)
        latencies = [(probe.starts[base + k] - sent[k]) * 1000 for k in range(latency_n)]

        idle_arg = n + latency_n
        time.sleep(idle)  # measuring idleness, not waiting for a condition
        probe.expect(1)
        sent_idle = time.perf_counter()
        engine.enqueue(idle_arg)
        probe.wait(max(timeout, 30.0), "%s idle" % label)
        idle_ms = (probe.starts[idle_arg] - sent_idle) * 1000
    finally:
        try:
            if started:
                engine.stop()
        finally:
            engine.close()

    return {
        "enqueue_per_s": round(n / enqueue_s, 1),
        "drain_per_s": round(n / drain_s, 1),
        "latency_p50_ms": round(statistics.median(latencies), 2),
        "latency_p99_ms": round(_percentile(latencies, 99), 2),
        "idle_latency_ms": round(idle_ms, 2),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default=None,
                        help="botlite's broker URL (default: sqlite:/// in a fresh temp dir)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up on a phase after this many seconds")
    args = parser.parse_args()
    if args.n < 1 or args.latency_n < 1 or args.idle < 0:
        parser.error("--n and --latency-n must be >= 1, --idle >= 0")

    botlite_dir = tempfile.mkdtemp(prefix="botlite-bench-queue-")
    huey_dir = tempfile.mkdtemp(prefix="huey-bench-queue-")
    try:
        url = args.broker or "sqlite:///" + os.path.join(botlite_dir, "queue.db")
        scheme = urlsplit(url).scheme

        botlite = measure("botlite[%s]" % scheme, lambda probe: BotliteEngine(url, probe),
                          args.n, args.latency_n, args.idle, args.timeout)
        huey = measure("huey_sqlite",
                       lambda probe: HueyEngine(os.path.join(huey_dir, "huey.db"), probe),
                       args.n, args.latency_n, args.idle, args.timeout)
    finally:
        shutil.rmtree(botlite_dir, ignore_errors=True)
        shutil.rmtree(huey_dir, ignore_errors=True)

    print(json.dumps({
        "bench": "queue", "n": args.n, "workers": WORKERS, "broker": scheme,
        "latency_n": args.latency_n, "idle_seconds": args.idle,
        "botlite": botlite, "huey_sqlite": huey,
        "ratio_drain_vs_huey": round(botlite["drain_per_s"] / huey["drain_per_s"], 2),
    }), flush=True)


if __name__ == "__main__":
    main()
