"""Real processes: a worker killed with SIGKILL mid-batch loses no task and, after a
restart, every task's effect is there exactly once."""
import os
import signal
import sqlite3
import subprocess
import sys
import uuid


import pytest

from conftest import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
N = 60


def _start_worker(url, effects, name, **env):
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_worker.py"), url,
                             effects, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=HERE, env=dict(os.environ, PYTHONPATH=HERE, **env))
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _count(effects, sql):
    with sqlite3.connect(effects, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def test_sigkill_mid_batch_then_restart_runs_every_task_exactly_once(broker_url, tmp_path):
    sys.path.insert(0, HERE)
    from botlite.runner import TaskRunner
    sys.argv = ["crash_worker.py", broker_url, str(tmp_path / "effects.db"), "unused"]
    import crash_worker

    effects = str(tmp_path / "effects.db")
    with sqlite3.connect(effects) as conn:
        conn.execute("create table attempts (item integer, pid integer)")
        conn.execute("create table effects (item integer primary key, pid integer)")

    name = "crash-%s" % uuid.uuid4().hex[:8]
    runner = TaskRunner(broker_url, name=name)
    runner.register(crash_worker.record_effect)
    workers = []
    try:
        ids = [runner.enqueue("record_effect", [i]) for i in range(N)]
        first = _start_worker(broker_url, effects, name)
        workers.append(first)
        # Kill while an attempt is in progress: started (attempt row) but no effect yet.
        in_flight = ("select (select count(*) from effects) >= %d and "
                     "(select count(distinct item) from attempts) > "
                     "(select count(*) from effects)" % (N // 3))
        wait_for(lambda: _count(effects, in_flight)[0][0], timeout=60, interval=0.005,
                 message="a third of the batch done and a task in flight")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        done_at_kill = _count(effects, "select count(*) from effects")[0][0]
        assert done_at_kill < N, "the kill came too late to test anything"

        second = _start_worker(broker_url, effects, name)
        workers.append(second)
        try:
            try:
                wait_for(lambda: _count(effects, "select count(*) from effects")[0][0] == N,
                         timeout=60, message="every effect after the restart")
            except AssertionError:
                second.kill()
                raise AssertionError("%d effects; queues %s; worker log:\n%s" % (
                    _count(effects, "select count(*) from effects")[0][0], runner.queues(),
                    second.stderr.read()[-3000:])) from None
            wait_for(lambda: all(runner.state(i)["status"] == "SUCCESS" for i in ids),
                     timeout=30, message="every task state to be SUCCESS")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(15) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        runner.huey.flush()
        runner.close()

    per_item = dict(_count(effects, "select item, count(*) from effects group by item"))
    assert sorted(per_item) == list(range(N)) and set(per_item.values()) == {1}
    attempts = dict(_count(effects, "select item, count(*) from attempts group by item"))
    rerun = [item for item, count in attempts.items() if count > 1]
    assert rerun, "no task was in flight at the kill, so none was re-run"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as handle:  # a zombie is gone too
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def _child_task_runner(broker_url, tmp_path, monkeypatch, prefix):
    """A runner of crash_worker's child_sleeps on a fresh queue, and the effects
    database its task children write their pids to."""
    monkeypatch.syspath_prepend(HERE)
    from botlite.runner import TaskRunner
    monkeypatch.setattr(sys, "argv", ["crash_worker.py", broker_url,
                                      str(tmp_path / "effects.db"), "unused"])
    import crash_worker

    effects = str(tmp_path / "effects.db")
    with sqlite3.connect(effects) as conn:
        conn.execute("create table children (pid integer)")
    name = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
    runner = TaskRunner(broker_url, name=name)
    runner.register(crash_worker.child_sleeps)
    return runner, crash_worker, effects, name


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_a_task_process_does_not_outlive_its_worker(broker_url, tmp_path, stop,
                                                    monkeypatch):
    """A task with a hard time limit runs in a child process: when its worker is
    killed, or stops and releases the task for a re-run, the child ends too (it
    would otherwise go on running beside the re-run on another worker), and the
    abandoned attempt is no failure: the task waits for its re-run, with its
    deduplication key."""
    import time
    runner, crash_worker, effects, name = _child_task_runner(broker_url, tmp_path,
                                                             monkeypatch, "orphan")
    worker = _start_worker(broker_url, effects, name, CRASH_SHUTDOWN_TIMEOUT="1")
    child = None
    try:
        task_id = runner.enqueue("child_sleeps", [60])
        child = wait_for(lambda: (_count(effects, "select pid from children") or [[None]])[0][0],
                         timeout=30, message="the task's child process")
        assert _alive(child)
        began = time.monotonic()
        worker.send_signal(getattr(signal, stop))
        assert worker.wait(15) == (0 if stop == "SIGTERM" else -signal.SIGKILL)
        wait_for(lambda: not _alive(child), timeout=10, message="the child to end")
        assert time.monotonic() - began < 15  # not the 60 s of the task
        if stop == "SIGTERM":  # released for a re-run, not failed
            assert runner.state(task_id)["status"] == "PENDING"
            assert runner.enqueue("child_sleeps", [60]) == task_id  # still deduplicated
            log = worker.stderr.read()
            assert "Traceback" not in log and "released 1 task(s)" in log, log
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)
        runner.huey.flush()
        runner.close()


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_a_deduplicated_task_cut_off_mid_attempt_runs_again_at_once(broker_url, tmp_path,
                                                                    stop, monkeypatch):
    """A deduplicated task (send_notification's options) whose worker is killed,
    or stops with it still running past --shutdown-timeout, holds its execution
    lock: the re-run of the same task takes that lock over and runs once (it was
    refused as 'an identical task is running' until the lock's 300 s TTL, past its
    retries: a dead letter, the notification never stored)."""
    monkeypatch.syspath_prepend(HERE)
    from botlite.runner import TaskRunner
    monkeypatch.setattr(sys, "argv", ["crash_worker.py", broker_url,
                                      str(tmp_path / "effects.db"), "unused"])
    import crash_worker

    effects = str(tmp_path / "effects.db")
    with sqlite3.connect(effects) as conn:
        conn.execute("create table attempts (item integer, pid integer)")
        conn.execute("create table effects (item integer primary key, pid integer)")
    name = "gated-%s" % uuid.uuid4().hex[:8]
    runner = TaskRunner(broker_url, name=name)
    runner.register(crash_worker.gated_once)
    workers = [_start_worker(broker_url, effects, name, CRASH_SHUTDOWN_TIMEOUT="0.5")]
    try:
        task_id = runner.enqueue("gated_once", [7])
        wait_for(lambda: _count(effects, "select count(*) from attempts")[0][0] == 1,
                 timeout=30, message="the first attempt to start")
        workers[0].send_signal(getattr(signal, stop))
        assert workers[0].wait(15) == (0 if stop == "SIGTERM" else -signal.SIGKILL)
        open(effects + ".go", "w").close()  # the receiver answers from now on
        workers.append(_start_worker(broker_url, effects, name))
        wait_for(lambda: runner.state(task_id)["status"] in ("SUCCESS", "FAILURE"),
                 timeout=60, message="the re-run to end")
        state = runner.state(task_id)
        assert state["status"] == "SUCCESS", state
        assert (state["attempts"], state["reruns"]) == (2, 1), state
        assert runner.storage.count_states("FAILURE") == 0
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(15) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        runner.huey.flush()
        runner.close()
    assert _count(effects, "select item, count(*) from effects group by item") == [(7, 1)]
    assert _count(effects, "select count(*) from attempts")[0][0] == 2


def test_a_task_process_obeys_a_sigterm_of_its_own_but_not_its_workers_group(
        broker_url, tmp_path, monkeypatch):
    """An operator's `kill PID` ends a runaway task process (it ignored SIGTERM);
    a SIGTERM to the worker's process group (Ctrl-C, a service manager) still
    reaches only the worker, which lets the task finish within its timeout."""
    runner, crash_worker, effects, name = _child_task_runner(broker_url, tmp_path,
                                                             monkeypatch, "sigterm")
    worker = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_worker.py"),
                               broker_url, effects, name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=HERE,
                              env=dict(os.environ, PYTHONPATH=HERE), start_new_session=True)
    assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    try:
        first = runner.enqueue("child_sleeps", [60])
        child = wait_for(lambda: (_count(effects, "select pid from children") or [[None]])[0][0],
                         timeout=30, message="the task's child process")
        assert os.getpgid(child) != os.getpgid(worker.pid)
        os.kill(child, signal.SIGTERM)
        wait_for(lambda: not _alive(child), timeout=10, message="the child to obey SIGTERM")
        wait_for(lambda: runner.state(first)["status"] == "FAILURE", timeout=10,
                 message="the attempt to end")
        assert "exited with code -15" in runner.state(first)["error"]
        assert worker.poll() is None  # the worker goes on

        second = runner.enqueue("child_sleeps", [0.5])
        child = wait_for(lambda: [pid for pid, in _count(effects, "select pid from children")
                                  if pid != child and _alive(pid)], timeout=30,
                         message="the second task's child")[0]
        os.killpg(os.getpgid(worker.pid), signal.SIGTERM)  # the whole group
        assert worker.wait(15) == 0
        assert runner.state(second)["status"] == "SUCCESS"  # it finished its work
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        runner.huey.flush()
        runner.close()
