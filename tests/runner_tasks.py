"""Task functions for the runner tests (module-level, so a child process can import them)."""
import threading
import time

from botlite.runner import (PermanentError, SoftTimeLimitExceeded, report_progress,
                            stop_requested, task)

calls = {}
calls_lock = threading.Lock()
release = threading.Event()
started = threading.Event()
flaky_fails_left = {"count": 0}


def record(name, value=None):
    with calls_lock:
        calls.setdefault(name, []).append(value)


@task()
def add(a, b):
    record("add", (a, b))
    return a + b


@task(queue="documents")
def progress_steps(total):
    for done in range(1, total + 1):
        report_progress(done, total)
    return "done %d" % total


@task(retries=2, retry_delay=0.01, retry_backoff=1.0, retry_jitter=0.0)
def flaky(key):
    record("flaky", key)
    if flaky_fails_left["count"] > 0:
        flaky_fails_left["count"] -= 1
        raise ConnectionError("temporary outage")
    return "ok %s" % key


@task(retries=3, retry_delay=0.01)
def bad_input(value):
    record("bad_input", value)
    raise PermanentError("value %r can never work" % value)


@task(retries=3, retry_delay=0.01, autoretry_for=(ConnectionError,))
def wrong_type(value):
    record("wrong_type", value)
    raise ValueError("not retried: only ConnectionError is")


@task(retries=1, retry_delay=0.01)
def always_fails(value):
    record("always_fails", value)
    if flaky_fails_left["count"] > 0:
        raise RuntimeError("broken %s" % value)
    return "fixed %s" % value


@task(dedup=True, dedup_ttl=3600)
def dedup_once(value):
    record("dedup_once", value)
    return value * 2


@task(dedup=True, dedup_ttl=0.5)
def dedup_short(value):
    record("dedup_short", value)
    return value


@task(soft_time_limit=0.2)
def polite_overrun():
    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "cleaned up"


@task(soft_time_limit=0.2, hard_time_limit=1.5)
def stubborn_overrun():
    while True:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            pass  # ignores the soft limit


@task(hard_time_limit=10)
def child_add(a, b):
    return a + b


@task(hard_time_limit=10)
def child_bad_input(value):
    raise PermanentError("value %r can never work" % value)


@task(retries=2, retry_delay=0.01, retry_backoff=1.0, retry_jitter=0.0)
def counts_down(key):
    from botlite.runner import retries_left
    record("counts_down", retries_left())
    raise ConnectionError("still down")


@task(retries=1, retry_delay=0.01, retry_backoff=1.0, retry_jitter=0.0, hard_time_limit=10)
def child_counts_down(key):
    from botlite.runner import retries_left
    raise ConnectionError("retries left: %d" % retries_left())


@task(hard_time_limit=60, dedup=True)
def child_sleeps(seconds):
    time.sleep(seconds)
    return seconds


@task()
def on_fail_note(*args, **kwargs):
    record("on_fail_note", args)


class SiteDown(Exception):
    expected = True  # as botlite's CrawlError and DeliveryFailed


@task(retries=1, retry_delay=0.01)
def site_down(value):
    raise SiteDown("http://example.invalid/ did not answer")


@task(queue="low_priority")
def low(value):
    record("order", ("low", value))


@task(queue="high_priority")
def high(value):
    record("order", ("high", value))


@task()
def blocking(value):
    started.set()
    release.wait(10)
    record("blocking", value)
    return value


@task(queue="documents")
def slow_document(value):
    """An ingestion that takes long: runs until `release` is set."""
    record("slow_document_started", value)
    release.wait(30)
    record("slow_document", value)
    return value


@task()
def cooperative():
    started.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if stop_requested():
            raise PermanentError("stopped on request")
        time.sleep(0.01)
    return "ran to the end"


@task()
def returns_bytes():
    return b"not json"


ALL = (add, progress_steps, flaky, bad_input, wrong_type, always_fails, dedup_once,
       dedup_short, polite_overrun, stubborn_overrun, child_add, low, high, blocking,
       cooperative, returns_bytes, slow_document)


@task()
def exits():
    raise SystemExit(3)


@task(expires=0.001)
def expiring():
    record("expiring")


ALL = ALL + (exits, expiring, child_bad_input, site_down, counts_down, child_counts_down,
             child_sleeps, on_fail_note)
