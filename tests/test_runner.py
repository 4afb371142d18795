"""The task runner, step by step, on SQLite, Redis and PostgreSQL alike."""
import datetime
import threading
import time
import uuid

import pytest

import runner_tasks as rt
from botlite.runner import (HardTimeLimitExceeded, InvalidTransition, RetryPolicy,
                            Runtime, TaskRunner, UnknownTask)
from botlite.runner.runtime import FAIR_EVERY, ClaimingWorker
from conftest import wait_for

# Due retries (delays of ~0.01 s) run at once; tasks delayed by an hour do not.
# A minute from *now*: a constant taken at import would lie in the past once the
# suite has run for a minute.
def future_ts():
    return time.time() + 60


def future():
    return datetime.datetime.fromtimestamp(future_ts(), datetime.timezone.utc).replace(tzinfo=None)


@pytest.fixture
def runner(broker_url):
    rt.calls.clear()
    rt.release.clear()
    rt.started.clear()
    rt.flaky_fails_left["count"] = 0
    runner = _open(broker_url, "test-%s" % uuid.uuid4().hex[:8])
    yield runner
    rt.release.set()
    runner.huey.flush()
    runner.close()


def _open(url, name):
    runner = TaskRunner(url, name=name)
    for fn in rt.ALL:
        runner.register(fn)
    return runner


def run_next(runner, worker_id="local"):
    """Claim and run one task, as a worker thread does, with the clock a minute
    ahead (so retries after a short backoff are due). Returns the task or None."""
    task = runner.huey.dequeue(worker_id, due_by=future_ts())
    if task is not None:
        runner.huey.execute(task, future())
    return task


def run_all(runner, limit=100):
    """Run queued tasks and due retries until nothing is left."""
    for _ in range(limit):
        if run_next(runner) is None:
            return
    raise AssertionError("tasks still queued after %d steps" % limit)


# --- states ---------------------------------------------------------------------

def test_states_go_pending_started_success_with_times_and_result(runner):
    task_id = runner.enqueue("add", [2, 3])
    pending = runner.state(task_id)
    assert pending["status"] == "PENDING" and pending["name"] == "add"
    assert pending["lane"] == "default" and pending["args"] == [2, 3]
    assert pending["enqueued_at"] and pending["started_at"] is None

    seen = []
    runner.huey.signal()(lambda signal, task: seen.append(runner.state(task.id)["status"])
                         if signal == "executing" else None)
    run_next(runner)
    assert "STARTED" in seen
    done = runner.state(task_id)
    assert done["status"] == "SUCCESS" and done["result"] == 5 and done["attempts"] == 1
    assert done["enqueued_at"] <= done["started_at"] <= done["finished_at"]
    assert runner.states(name="add")[0]["task_id"] == task_id


def test_progress_is_recorded(runner):
    task_id = runner.enqueue("progress_steps", [3])
    assert runner.state(task_id)["lane"] == "documents"
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "SUCCESS" and state["result"] == "done 3"


def test_states_survive_a_restart(runner, broker_url):
    done_id = runner.enqueue("add", [1, 1])
    run_next(runner)
    waiting_id = runner.enqueue("add", [4, 4])
    runner.close()
    reopened = _open(broker_url, runner.name)
    try:
        assert reopened.state(done_id)["status"] == "SUCCESS"
        assert reopened.state(waiting_id)["status"] == "PENDING"
        run_next(reopened)
        assert reopened.state(waiting_id)["result"] == 8
    finally:
        reopened.close()


def test_a_result_that_is_not_json_fails_the_task(runner):
    task_id = runner.enqueue("returns_bytes")
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "FAILURE" and "not JSON serialisable" in state["error"]


# --- retries ----------------------------------------------------------------------

def test_a_transient_error_is_retried_then_succeeds(runner):
    rt.flaky_fails_left["count"] = 1
    task_id = runner.enqueue("flaky", ["k"])
    run_next(runner)
    retry = runner.state(task_id)
    assert retry["status"] == "RETRY" and "temporary outage" in retry["error"]
    assert retry["next_attempt_at"] is not None and retry["retries"] == 1
    run_all(runner)
    done = runner.state(task_id)
    assert done["status"] == "SUCCESS" and done["attempts"] == 2 and done["error"] is None
    assert rt.calls["flaky"] == ["k", "k"]


def test_retries_are_never_more_than_configured(runner):
    rt.flaky_fails_left["count"] = 99
    task_id = runner.enqueue("flaky", ["x"])
    run_all(runner)
    state = runner.state(task_id)
    assert state["status"] == "FAILURE" and state["attempts"] == 3  # 1 + retries=2
    assert "ConnectionError" in state["traceback"]


def test_permanent_errors_and_unlisted_exceptions_are_not_retried(runner):
    a = runner.enqueue("bad_input", [1])
    b = runner.enqueue("wrong_type", [2])
    run_all(runner)
    assert runner.state(a)["status"] == "FAILURE" and runner.state(a)["attempts"] == 1
    assert runner.state(b)["status"] == "FAILURE" and runner.state(b)["attempts"] == 1
    assert "PermanentError" in runner.state(a)["error"]
    assert runner.state(a)["retries"] == 0  # none left: it was 3 until now


def test_a_child_process_failure_shows_the_childs_error_and_traceback(runner):
    task_id = runner.enqueue("child_bad_input", [7])
    run_all(runner)
    state = runner.state(task_id)
    assert state["status"] == "FAILURE"
    assert state["error"] == "PermanentError: value 7 can never work"  # not ChildTaskError: …
    assert "in child_bad_input" in state["traceback"]  # where it was raised, in the child


@pytest.mark.parametrize("name, expected", [
    ("bad_input", True), ("child_bad_input", True), ("site_down", True),
    ("wrong_type", False),  # a ValueError nobody meant: a bug, with its traceback
])
def test_expected_failures_are_one_warning_line_and_bugs_keep_their_traceback(
        runner, caplog, name, expected):
    import logging
    caplog.set_level(logging.INFO, logger="huey")
    task_id = runner.enqueue(name, [1])
    run_all(runner)
    assert runner.state(task_id)["traceback"]  # kept in the task's state either way
    logged = [r for r in caplog.records if r.name == "huey" and task_id in r.getMessage()
              and r.levelno >= logging.WARNING]
    assert logged, caplog.text
    for record in logged:
        if expected:
            assert record.levelname == "WARNING" and record.exc_info is None
            assert "can never work" in record.getMessage() or \
                "did not answer" in record.getMessage()
        else:
            assert record.levelname == "ERROR" and record.exc_info is not None
    assert ("Traceback" in caplog.text) is not expected


def test_an_exception_with_an_expected_byte_count_is_no_expected_failure():
    import http.client
    from botlite.runner.core import expected_failure
    assert not expected_failure(http.client.IncompleteRead(b"ab", 10))  # .expected == 10
    assert expected_failure(rt.SiteDown("down")) and expected_failure(rt.PermanentError("no"))


def test_a_task_knows_how_many_retries_are_left(runner):
    task_id = runner.enqueue("counts_down", ["k"])
    child_id = runner.enqueue("child_counts_down", ["k"])
    run_all(runner)
    assert rt.calls["counts_down"] == [2, 1, 0]
    assert runner.state(task_id)["status"] == "FAILURE"
    assert runner.state(child_id)["error"].endswith("retries left: 0")  # its second attempt
    from botlite.runner import retries_left
    assert retries_left() == 0  # outside a task


def test_backoff_delays_stay_within_their_jitter_bounds():
    policy = RetryPolicy(delay=60, backoff=2, jitter=0.25, max_delay=200)
    for attempt, base in ((1, 60), (2, 120), (3, 200), (4, 200)):
        samples = [policy.delay_for(attempt) for _ in range(500)]
        assert all(min(base * 0.75, 200) <= s <= min(base * 1.25, 200) for s in samples)
        assert max(samples) - min(samples) > base * 0.1  # it really is jittered


def test_the_retry_time_follows_the_policy(runner):
    rt.flaky_fails_left["count"] = 1
    task_id = runner.enqueue("flaky", ["t"])
    before = time.time()
    run_next(runner)
    delay = runner.state(task_id)["next_attempt_at"] - before
    assert 0 <= delay < 1  # retry_delay=0.01 with no jitter


# --- dedup, result cache, locks -----------------------------------------------------------

def test_ten_concurrent_submitters_get_one_task_that_runs_once(runner):
    ids, barrier = [], threading.Barrier(10)

    def submit():
        barrier.wait(5)
        ids.append(runner.enqueue("dedup_once", [21]))

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 10 and len(set(ids)) == 1
    assert runner.queue_depth()["pending"] == 1
    run_all(runner)
    assert rt.calls["dedup_once"] == [21]
    assert runner.state(ids[0])["result"] == 42


def test_a_cached_result_is_returned_within_the_ttl(runner):
    first = runner.enqueue("dedup_once", [5])
    run_all(runner)
    again = runner.enqueue("dedup_once", [5])
    assert again == first and runner.state(again)["status"] == "SUCCESS"
    assert runner.queue_depth()["pending"] == 0 and rt.calls["dedup_once"] == [5]
    other = runner.enqueue("dedup_once", [6])
    assert other != first


def test_after_the_ttl_the_task_runs_again(runner):
    first = runner.enqueue("dedup_short", [1])
    run_all(runner)
    second = wait_for(lambda: (lambda tid: tid if tid != first else None)(
        runner.enqueue("dedup_short", [1])), timeout=5, message="the dedup TTL to pass")
    run_all(runner)
    assert second != first and rt.calls["dedup_short"] == [1, 1]


def test_a_failed_task_does_not_block_a_new_submission(runner):
    first = runner.enqueue("bad_input", [9])
    run_all(runner)
    assert runner.state(first)["status"] == "FAILURE"
    # bad_input has no dedup; a dedup task that failed must not be "cached" either
    spec_failed = runner.enqueue("dedup_once", [77])
    runner.revoke(spec_failed)
    assert runner.enqueue("dedup_once", [77]) != spec_failed


def _run_lock(task_name, args):
    from botlite.runner.core import dedup_key
    from botlite.runner.storage import lock_name
    return lock_name("run", dedup_key(task_name, args, {}))


@pytest.mark.parametrize("holder", [None, "FAILURE", "PENDING", "legacy"])
def test_a_run_lock_whose_holder_no_longer_runs_is_broken_at_once(runner, holder):
    """A run that died holding the execution lock (its task failed, was released
    for a re-run, or left no state) does not veto the next identical task until
    the lock's TTL (minutes) runs out."""
    key = _run_lock("dedup_short", [3])
    if holder == "legacy":  # what botlite before 0.2 wrote
        value = b"1"
    else:
        value = b"crashed-task"
        if holder is not None:
            runner.storage.save_state("crashed-task", status=holder, name="dedup_short")
    assert runner.storage.put_if_empty(key, value, 300)
    task_id = runner.enqueue("dedup_short", [3])
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "SUCCESS" and state["attempts"] == 1, state
    assert not runner.storage.has_data_for_key(key)  # freed when the run ended


def test_an_identical_task_that_is_running_still_holds_the_lock(runner):
    key = _run_lock("dedup_short", [4])
    runner.storage.save_state("twin", status="STARTED", name="dedup_short")
    assert runner.storage.put_if_empty(key, b"twin", 300)
    task_id = runner.enqueue("dedup_short", [4])
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] in ("FAILURE", "RETRY")
    assert "identical task twin is running" in state["error"]
    assert bytes(runner.storage.peek_data(key)) == b"twin"  # not taken from the twin


def test_a_rerun_after_its_worker_died_takes_over_its_own_lock(runner):
    """The attempt of a worker that died holds the run lock; the re-run of the
    same task (its claim released) runs at once, as a re-run, not a retry."""
    task_id = runner.enqueue("dedup_short", [5])
    dead = runner.huey.dequeue("deadhost:1:0:0.dead")
    assert dead.id == task_id
    assert runner.storage.put_if_empty(_run_lock("dedup_short", [5]), task_id.encode(), 300)
    assert runner.storage.release_claims(["deadhost:1:0:0.dead"]) == 1
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "SUCCESS" and rt.calls["dedup_short"] == [5], state
    assert (state["attempts"], state["reruns"]) == (2, 1)
    from botlite.task_control import task_view
    view = task_view(state)
    assert (view["retries"], view["reruns"], view["attempts"]) == (0, 1, 2)


def test_a_task_whose_process_dies_on_every_attempt_ends_after_max_reruns(runner):
    task_id = runner.enqueue("dedup_short", [6])
    spec = runner.specs["dedup_short"]
    for n in range(spec.max_reruns + 1):
        owner = "deadhost:%d:0:0.dead" % n
        assert runner.huey.dequeue(owner, due_by=future_ts()).id == task_id
        runner.storage.release_claims([owner])
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "FAILURE" and not rt.calls.get("dedup_short")
    assert "its process ended before the attempt did %d times" % (spec.max_reruns + 1) \
        in state["error"]
    assert state["reruns"] == spec.max_reruns + 1
    # A dead letter like any other: retried by hand, it runs (counts start again).
    assert runner.retry(task_id)["reruns"] == 0
    run_all(runner)
    assert runner.state(task_id)["status"] == "SUCCESS"


def test_a_dedup_key_naming_a_task_that_does_not_exist_is_taken_over(runner):
    """What a crash between taking the key and queueing left (botlite before 0.2):
    the next identical enqueue queues a task instead of naming a missing one."""
    from botlite.runner.core import dedup_key
    from botlite.runner.storage import lock_name
    key = dedup_key("dedup_once", [31], {})
    assert runner.storage.put_if_empty(lock_name("dedup", key), b"never-queued", 300)
    task_id = runner.enqueue("dedup_once", [31])
    assert task_id != "never-queued" and runner.state(task_id)["status"] == "PENDING"
    assert runner.enqueue("dedup_once", [31]) == task_id


@pytest.mark.parametrize("broker_url", ["sqlite", "postgresql"], indirect=True)
def test_a_crash_inside_a_dedup_enqueue_leaves_neither_key_nor_task(runner, monkeypatch):
    """The dedup key, the queue row and the state are one transaction: a failure
    after the key was taken (a crash, a full disk) leaves nothing behind. (On Redis
    they are one Lua script.)"""
    from botlite.runner.core import dedup_key
    from botlite.runner.storage import lock_name
    storage = type(runner.storage)
    insert = storage._insert_queued

    def crash(self, *args, **kwargs):
        raise ConnectionError("the process died here")
    monkeypatch.setattr(storage, "_insert_queued", crash)
    with pytest.raises(ConnectionError):
        runner.enqueue("dedup_once", [32])
    monkeypatch.setattr(storage, "_insert_queued", insert)
    assert not runner.storage.has_data_for_key(lock_name("dedup", dedup_key("dedup_once",
                                                                            [32], {})))
    task_id = runner.enqueue("dedup_once", [32])
    assert runner.state(task_id)["status"] == "PENDING"
    run_all(runner)
    assert runner.state(task_id)["status"] == "SUCCESS" and rt.calls["dedup_once"] == [32]


# --- time limits ----------------------------------------------------------------------

def test_soft_limit_raises_inside_the_task(runner):
    task_id = runner.enqueue("polite_overrun")
    started = time.monotonic()
    run_next(runner)
    assert time.monotonic() - started < 3
    assert runner.state(task_id)["result"] == "cleaned up"


def test_hard_limit_abandons_a_task_that_ignores_the_soft_one(runner):
    task_id = runner.enqueue("stubborn_overrun")
    started = time.monotonic()
    run_next(runner)
    elapsed = time.monotonic() - started
    state = runner.state(task_id)
    assert state["status"] == "FAILURE" and HardTimeLimitExceeded.__name__ in state["error"]
    assert 1.4 <= elapsed < 6


def test_hard_limited_tasks_return_results_from_their_child(runner):
    task_id = runner.enqueue("child_add", [40, 2])
    run_next(runner)
    assert runner.state(task_id)["result"] == 42


# --- queues, priorities, starvation ---------------------------------------------------

def test_high_priority_runs_first_and_a_low_one_is_not_starved(runner):
    runtime = Runtime(runner, workers=1, periodic=False)
    worker = ClaimingWorker(runner.huey, threading.Event(), runtime, default_delay=0.01,
                            max_delay=0.01, backoff=1)
    runner.enqueue("low", ["L"])
    for i in range(5):
        runner.enqueue("high", [i])
    flood = 5
    for step in range(60):  # a continuous flood: one new high task per task run
        worker.loop(future())
        runner.enqueue("high", [flood])
        flood += 1
        if ("low", "L") in rt.calls.get("order", []):
            break
    order = rt.calls["order"]
    assert order[0] == ("high", 0)
    position = order.index(("low", "L"))
    assert position < FAIR_EVERY * 2, order  # the bound: one oldest-first claim in FAIR_EVERY


def test_a_worker_can_be_restricted_to_some_queues(runner):
    a = runner.enqueue("progress_steps", [1])   # documents
    b = runner.enqueue("add", [1, 2])            # default
    task = runner.huey.dequeue("w", lanes=["documents"])
    assert task.id == a
    assert runner.huey.dequeue("w", lanes=["documents"]) is None
    runner.huey.execute(task, future())
    assert runner.state(b)["status"] == "PENDING"


def test_queues_report_depths_and_dead_letters(runner):
    runner.enqueue("add", [1, 1])
    runner.enqueue("progress_steps", [1])
    runner.enqueue("add", [1, 1], delay=3600)
    report = runner.queues()
    assert report["queues"]["default"]["pending"] == 1
    assert report["queues"]["default"]["scheduled"] == 1
    assert report["queues"]["documents"]["pending"] == 1
    assert report["dead"] == 0
    runner.enqueue("bad_input", [1])
    run_all(runner)
    report = runner.queues()
    assert report["dead"] == 1 and report["queues"]["default"]["scheduled"] == 1


# --- revoke, purge, dead letters -------------------------------------------------

def test_revoking_a_pending_task_means_it_never_runs(runner):
    task_id = runner.enqueue("add", [7, 7])
    assert runner.revoke(task_id)["status"] == "REVOKED"
    run_all(runner)
    assert "add" not in rt.calls and runner.state(task_id)["status"] == "REVOKED"
    with pytest.raises(InvalidTransition):
        runner.revoke(task_id)


def test_revoking_a_scheduled_task_means_it_never_runs(runner):
    task_id = runner.enqueue("add", [8, 8], delay=3600)
    assert runner.huey.scheduled_count() == 1
    assert runner.revoke(task_id)["status"] == "REVOKED"
    run_all(runner)
    assert "add" not in rt.calls


def test_revoking_a_task_waiting_for_a_retry_says_why_it_was_retrying(runner):
    task_id = runner.enqueue("site_down", [1])
    run_next(runner)
    waiting = runner.state(task_id)
    assert waiting["status"] == "RETRY" and waiting["next_attempt_at"] is not None
    revoked = runner.revoke(task_id)
    assert revoked["status"] == "REVOKED" and revoked["next_attempt_at"] is None
    assert revoked["error"] == "revoked; the last attempt failed: " + waiting["error"]
    assert revoked["traceback"] == waiting["traceback"]
    run_all(runner)
    assert runner.state(task_id)["status"] == "REVOKED"
    fresh = runner.enqueue("add", [1, 1], delay=3600)
    assert runner.revoke(fresh)["error"] == "revoked"


def test_revoking_a_running_task_asks_it_to_stop(runner):
    runtime = Runtime(runner, workers=1, periodic=False)
    runtime.start()
    try:
        task_id = runner.enqueue("cooperative")
        assert rt.started.wait(5)
        runner.revoke(task_id)
        state = wait_for(lambda: runner.state(task_id)["status"] == "FAILURE" and
                         runner.state(task_id), timeout=5, message="the task to stop")
        assert "stopped on request" in state["error"]
    finally:
        runtime.stop()


def test_a_task_released_at_shutdown_is_abandoned_not_failed(runner, caplog):
    """Stopping with a hard-limited task still running: it is released for a re-run
    and its child killed; that attempt is no failure: no on_error, the
    deduplication key kept, nothing logged as an error."""
    import logging
    import time
    from botlite.runner import limits
    runtime = Runtime(runner, workers=1, periodic=False, shutdown_timeout=0.3)
    runtime.start()
    task_id = runner.enqueue("child_sleeps", [30], on_error=("on_fail_note", []))
    wait_for(lambda: any(p.exitcode is None for p in limits._children), timeout=15,
             message="the task's child process")
    began = time.monotonic()
    assert runtime.stop() is False  # it did not finish: released
    wait_for(lambda: not any(t.is_alive() for _, t in runtime.consumer.worker_threads),
             timeout=10, message="the worker thread to end")
    assert time.monotonic() - began < 10  # not the task's 30 s
    assert not limits._children
    assert runner.state(task_id)["status"] == "PENDING"
    assert runner.enqueue("child_sleeps", [30]) == task_id  # its dedup key is kept
    assert "on_fail_note" not in rt.calls
    assert [s["name"] for s in runner.states()] == ["child_sleeps"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_purge_drops_a_queues_waiting_tasks(runner):
    ids = [runner.enqueue("progress_steps", [i]) for i in range(3)]
    kept = runner.enqueue("add", [1, 2])
    assert runner.purge("documents") == 3
    assert all(runner.state(i)["status"] == "REVOKED" for i in ids)
    run_all(runner)
    assert runner.state(kept)["status"] == "SUCCESS"


def test_dead_letters_keep_their_traceback_and_can_be_retried(runner):
    rt.flaky_fails_left["count"] = 1
    task_id = runner.enqueue("always_fails", ["job"])
    run_all(runner)
    dead = runner.states(status="FAILURE")
    assert [d["task_id"] for d in dead] == [task_id]
    assert "RuntimeError: broken job" in dead[0]["traceback"] and dead[0]["attempts"] == 2
    with pytest.raises(InvalidTransition):
        runner.retry(runner.enqueue("add", [1, 1]))
    rt.flaky_fails_left["count"] = 0
    assert runner.retry(task_id)["status"] == "PENDING"
    run_all(runner)
    state = runner.state(task_id)
    assert state["status"] == "SUCCESS" and state["result"] == "fixed job"


def test_unknown_task_names_are_refused(runner):
    with pytest.raises(UnknownTask):
        runner.enqueue("rm_rf")


# --- expiry ------------------------------------------------------------------------

def test_old_results_and_states_are_pruned(runner):
    done = runner.enqueue("add", [2, 2])
    waiting = runner.enqueue("add", [3, 3], delay=3600)
    run_next(runner)
    runner.result_expires = 3600
    assert runner.prune() == {"results": 0, "states": 0}
    runner.result_expires = -1
    assert runner.prune()["results"] == 1
    assert runner.state(done)["status"] == "SUCCESS" and runner.state(done)["result"] is None
    runner.state_retention = -1
    assert runner.prune()["states"] == 1
    assert runner.storage.get_state(done) is None
    assert runner.state(waiting)["status"] == "PENDING"  # unfinished states are kept


# --- claims, crash recovery, shutdown ------------------------------------------------

def test_a_claimed_task_stays_queued_until_its_attempt_ends(runner):
    task_id = runner.enqueue("add", [1, 2])
    task = runner.huey.dequeue("crashing-host:1:w")
    assert task.id == task_id
    assert runner.queues()["queues"]["default"]["running"] == 1
    assert runner.huey.dequeue("other") is None  # claimed: not given twice
    runner.huey.execute(task, future())
    assert runner.queues()["queues"]["default"] == {"pending": 0, "scheduled": 0, "running": 0}


def test_claims_of_a_dead_worker_are_released_and_run_again(runner):
    task_id = runner.enqueue("add", [20, 22])
    runner.huey.dequeue("gone-host:12345:dead")   # claimed by a process that died
    runner.storage.save_state(task_id, status="STARTED")
    runtime = Runtime(runner, workers=1, periodic=False)
    assert runtime.recover() == 1
    assert runner.state(task_id)["status"] == "PENDING"
    run_all(runner)
    assert runner.state(task_id)["result"] == 42


def test_a_live_workers_claims_are_left_alone(runner):
    runner.enqueue("add", [1, 1])
    other = Runtime(runner, workers=1, periodic=False)
    other.beat()
    runner.huey.dequeue(other.worker_id)
    assert Runtime(runner, workers=1, periodic=False).recover() == 0


def test_an_enqueue_wakes_an_idle_worker_at_once(runner):
    runtime = Runtime(runner, workers=1, periodic=False, poll_interval=5)
    runtime.start()
    try:
        time.sleep(0.2)  # let the worker go idle (this measures idleness)
        sent = time.time()
        task_id = runner.enqueue("add", [1, 1])
        state = wait_for(lambda: runner.state(task_id)["status"] == "SUCCESS" and
                         runner.state(task_id), timeout=5, message="the task to run")
        # Not the 5 s poll interval, nor Redis/PostgreSQL's 1 s blocking wait.
        assert state["started_at"] - sent < 0.5
    finally:
        runtime.stop()


def test_shutdown_releases_a_task_that_outlives_the_timeout(runner):
    runtime = Runtime(runner, workers=1, periodic=False, shutdown_timeout=0.2)
    runtime.start()
    task_id = runner.enqueue("blocking", ["slow"])
    assert rt.started.wait(5)
    assert runtime.stop() is False
    assert runner.state(task_id)["status"] == "PENDING"
    assert runner.queue_depth()["pending"] == 1
    rt.release.set()


def test_sqlite_checkpoints_run_in_the_background(tmp_path):
    import sqlite3
    runner = _open("sqlite:///%s" % (tmp_path / "q.db"), "ckpt")
    try:
        for i in range(200):
            runner.enqueue("add", [i, i])
        wal = tmp_path / "q.db-wal"
        assert wal.stat().st_size > 0
        runner.storage.checkpoint()
        with sqlite3.connect(str(tmp_path / "q.db")) as conn:
            busy, frames, done = conn.execute("pragma wal_checkpoint(passive)").fetchone()
        assert busy == 0 and frames == done  # nothing left to copy
        assert Runtime(runner, workers=1, periodic=False)._maintenance is not None
    finally:
        runner.close()


# --- review findings: each of these failed before the fix --------------------------

def test_progress_stays_visible_after_success(runner):
    task_id = runner.enqueue("progress_steps", [3])
    run_next(runner)
    assert runner.state(task_id)["progress"] == {"done": 3, "total": 3}


def test_a_revoked_delayed_task_never_comes_back_and_retry_runs_it_once(runner):
    task_id = runner.enqueue("add", [5, 5], delay=3600)
    assert runner.revoke(task_id)["status"] == "REVOKED"
    assert runner.queue_depth() == {"pending": 0, "scheduled": 0}
    assert runner.retry(task_id)["status"] == "PENDING"
    run_all(runner)
    assert rt.calls["add"] == [(5, 5)] and runner.state(task_id)["status"] == "SUCCESS"


def test_revoking_a_claimed_task_does_not_pretend_it_was_revoked(runner):
    task_id = runner.enqueue("add", [1, 1])
    task = runner.huey.dequeue("w")          # a worker claims it first
    state = runner.revoke(task_id)
    assert state["status"] == "STARTED" and state["error"] == "stop requested"
    runner.huey.execute(task, future())         # Huey skips it: the flag was set
    assert runner.state(task_id)["status"] == "REVOKED" and "add" not in rt.calls


def test_a_retry_is_written_with_the_end_of_its_attempt(runner):
    rt.flaky_fails_left["count"] = 1
    task_id = runner.enqueue("flaky", ["once"])
    task = runner.huey.dequeue("dying-host:1:0:w", due_by=future_ts())
    runner.huey.execute_deferred(task, future())   # fails; the retry is only in memory
    # The process dies before writing it: recovery releases the claim...
    assert Runtime(runner, workers=1, periodic=False).recover() == 1
    run_all(runner)
    # ...and exactly one chain of attempts runs: no second copy from a schedule.
    state = runner.state(task_id)
    assert state["status"] == "SUCCESS" and rt.calls["flaky"] == ["once", "once"]
    assert runner.queue_depth() == {"pending": 0, "scheduled": 0}


def test_oldest_first_takes_the_oldest_task_of_a_lane(runner):
    ids = [runner.enqueue("low", [i]) for i in range(3)]
    task = runner.huey.dequeue("w", oldest_first=True)
    assert task.id == ids[0]


@pytest.mark.parametrize("end", ["revoked", "failed"])
def test_dedup_after_a_finished_holder_yields_one_new_task(runner, end):
    """Identical enqueues racing to take over a finished holder's lock: on
    PostgreSQL each one's UPDATE matched again after the others' commits, and 2-8
    copies were queued in most rounds."""
    for round_ in range(8):
        runner.huey.flush()
        first = runner.enqueue("dedup_once", [round_])
        if end == "revoked":
            runner.revoke(first)
        else:
            runner.storage.save_state(first, status="FAILURE")
        before = runner.queue_depth()["pending"]
        ids, barrier = [], threading.Barrier(8)

        def submit():
            barrier.wait(5)
            ids.append(runner.enqueue("dedup_once", [round_]))

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(ids)) == 1 and ids[0] != first, (round_, ids)
        assert runner.queue_depth()["pending"] == before + 1


def test_a_failed_enqueue_leaves_no_dedup_key_behind(runner, monkeypatch):
    real = runner.storage.enqueue_task

    def broken(*args, **kwargs):
        raise ConnectionError("queue down")

    monkeypatch.setattr(runner.storage, "enqueue_task", broken)
    with pytest.raises(ConnectionError):
        runner.enqueue("dedup_once", [9])
    monkeypatch.setattr(runner.storage, "enqueue_task", real)
    task_id = runner.enqueue("dedup_once", [9])
    assert runner.state(task_id)["status"] == "PENDING"


def test_a_task_that_raises_systemexit_fails_instead_of_staying_started(runner):
    task_id = runner.enqueue("exits")
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "FAILURE" and "SystemExit" in state["error"]
    assert runner.queues()["queues"]["default"]["running"] == 0


def test_an_expired_task_is_revoked_not_run(runner):
    task_id = runner.enqueue("expiring")
    time.sleep(0.01)  # let its 1 ms expiry pass (this measures time, not a condition)
    run_next(runner)
    state = runner.state(task_id)
    assert state["status"] == "REVOKED" and "expired" in state["error"]
    assert "expiring" not in rt.calls and state["started_at"] is None


def test_a_worker_with_a_fresh_heartbeat_keeps_its_claims_even_if_unknown_pid(runner):
    other = Runtime(runner, workers=1, periodic=False)
    other.worker_id = "another-host:1:ffff:abcd"  # same pid number, other machine
    other.beat()
    runner.enqueue("add", [1, 1])
    runner.huey.dequeue(other.worker_id)
    assert Runtime(runner, workers=1, periodic=False).recover() == 0
    assert [w["id"] for w in runner.storage.workers(30)] == [other.worker_id]


def test_a_worker_of_this_host_with_a_stale_heartbeat_keeps_its_claims_while_it_runs(runner):
    """A long pause (GC, SIGSTOP) makes a heartbeat stale while the process still
    runs its tasks: on its own host, its live process keeps its claims. A process
    with the same number but started later (the number reused) does not."""
    import subprocess
    import sys

    from botlite.runner.runtime import _start_ticks
    paused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        here = Runtime(runner, workers=1, periodic=False)
        host, _, namespace, _ = here.worker_id.split(":")
        live = "%s:%d:%s:%s.cafe0001" % (host, paused.pid, namespace, _start_ticks(paused.pid))
        reused = "%s:%d:%s:%s.cafe0002" % (host, paused.pid, namespace, "1")
        first = runner.enqueue("add", [1, 2])
        second = runner.enqueue("add", [3, 4])
        assert runner.huey.dequeue(live).id == first  # no heartbeat at all: stale
        assert runner.huey.dequeue(reused).id == second
        assert here.recover() == 1
        assert runner.state(first)["status"] == "STARTED"
        assert runner.state(second)["status"] == "PENDING"
        paused.kill()
        paused.wait(10)
        assert here.recover() == 1  # the process is gone now
        assert runner.state(first)["status"] == "PENDING"
    finally:
        if paused.poll() is None:
            paused.kill()
            paused.wait(10)


def test_documents_being_processed_never_hold_up_urgent_tasks(runner):
    """Both worker threads could be busy with long ingestions while a notification
    waits; one thread is always kept from the documents and websites lanes."""
    runtime = Runtime(runner, workers=2, periodic=False)
    runtime.start()
    try:
        documents = [runner.enqueue("slow_document", [n]) for n in range(3)]
        wait_for(lambda: len(rt.calls.get("slow_document_started", [])) == 1, timeout=10,
                 message="a document to start")
        urgent = runner.enqueue("add", [2, 3])
        wait_for(lambda: runner.state(urgent)["status"] == "SUCCESS", timeout=10,
                 message="the urgent task to run beside the document")
        assert rt.calls["slow_document_started"] == [0]  # the second waits for a slot
        assert [runner.state(d)["status"] for d in documents[1:]] == ["PENDING"] * 2
        rt.release.set()
        wait_for(lambda: all(runner.state(d)["status"] == "SUCCESS" for d in documents),
                 timeout=30, message="the documents, one after the other")
    finally:
        rt.release.set()
        runtime.stop()


def test_a_worker_for_the_documents_lane_only_uses_every_thread_for_it(runner):
    runtime = Runtime(runner, workers=2, periodic=False, lanes=["documents"])
    runtime.start()
    try:
        for n in range(2):
            runner.enqueue("slow_document", [n])
        wait_for(lambda: len(rt.calls.get("slow_document_started", [])) == 2, timeout=10,
                 message="both documents to run at once")
    finally:
        rt.release.set()
        runtime.stop()


def test_a_zombie_worker_process_counts_as_dead():
    """A killed worker its parent has not reaped passes kill(pid, 0): its claims
    were kept for ever."""
    import os
    import signal
    import subprocess
    import sys
    from botlite.runner.runtime import _process_alive, _start_ticks
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = _start_ticks(child.pid)
        assert _process_alive(child.pid, started)
        os.kill(child.pid, signal.SIGKILL)
        from conftest import wait_for
        wait_for(lambda: open("/proc/%d/stat" % child.pid).read().rsplit(")", 1)[1]
                 .split()[0] == "Z", message="the child to be a zombie")
        assert not _process_alive(child.pid, started)
    finally:
        child.kill()
        child.wait()


def test_an_earlier_attempt_that_ends_late_keeps_the_re_runs_run_lock(runner):
    """A worker cut off past the heartbeat timeout still ends its attempt after the
    re-run took the lock over: it deleted the re-run's lock, and an identical task
    could then start beside it."""
    task_id = runner.enqueue("dedup_once", [99])
    runner.storage.save_state(task_id, status="STARTED")
    lock = "run-lock-test"
    first, rerun = ("%s:a" % task_id).encode(), ("%s:b" % task_id).encode()
    assert runner._take_run_lock(lock, first, 60) is None
    assert runner._take_run_lock(lock, rerun, 60) is None  # the same task takes it over
    runner.storage.delete_lock(lock, first)  # the first attempt's end
    assert bytes(runner.storage.peek_data(lock)) == rerun
    assert runner._take_run_lock(lock, b"other-task:c", 60) == task_id
