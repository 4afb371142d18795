"""The same task path on every broker URL: SQLite always, Redis and PostgreSQL
on this machine's services."""
import datetime
import json
import uuid

import pytest
from conftest import wait_for

from botlite.runner import Runtime, TaskRunner, UnknownTask, task
from botlite.runner.serializer import JSONSerializer


@task(retries=1)
def add(a, b):
    return {"sum": a + b, "at": "done"}


@pytest.fixture
def runner(broker_url):
    runner = TaskRunner(broker_url, name="test-%s" % uuid.uuid4().hex[:8])
    runner.register(add)
    yield runner
    runner.huey.flush()
    runner.close()


def test_a_task_is_enqueued_and_run_step_by_step(runner):
    task_id = runner.enqueue("add", [2, 3])
    assert runner.queue_depth()["pending"] == 1
    queued = runner.huey.dequeue()
    assert queued.id == task_id and list(queued.args) == [2, 3]
    runner.huey.execute(queued)
    assert runner.state(task_id)["result"] == {"sum": 5, "at": "done"}
    assert runner.queue_depth() == {"pending": 0, "scheduled": 0}


def test_a_task_runs_on_worker_threads(runner):
    runtime = Runtime(runner, workers=2, heartbeat_interval=60)
    runtime.start()
    try:
        task_id = runner.enqueue("add", [20, 22])
        state = wait_for(lambda: runner.state(task_id)["status"] == "SUCCESS" and
                         runner.state(task_id), message="the task to succeed")
        assert state["result"] == {"sum": 42, "at": "done"}
        assert [w["id"] for w in runner.storage.workers(30)] == [runtime.worker_id]
    finally:
        assert runtime.stop()
    assert runner.storage.workers(30) == []


def test_queue_payloads_are_json_not_pickle(runner):
    runner.enqueue("add", [1, 2], delay=3600)  # waits in the queue until then
    raw = bytes(runner.huey.storage.enqueued_items()[0])
    fields = json.loads(raw)["__huey_message__"]
    assert fields[1].endswith(".add") and fields[6] == [1, 2]


def test_non_json_arguments_are_refused_at_enqueue(runner):
    with pytest.raises(TypeError, match="not JSON serialisable"):
        runner.enqueue("add", [object(), 1])
    with pytest.raises(TypeError):
        runner.enqueue("add", [b"bytes", 1])
    assert runner.queue_depth()["pending"] == 0


def test_unknown_task_names_are_refused(runner):
    with pytest.raises(UnknownTask):
        runner.enqueue("rm_rf", [])


def test_serializer_round_trips_huey_messages_and_errors():
    from huey.registry import Message
    from huey.utils import Error
    serializer = JSONSerializer()
    eta = datetime.datetime(2026, 1, 2, 3, 4, 5)
    inner = Message("id2", "t.b", None, 0, 0, None, (1,), {}, None, None, None, None,
                    None, None, None)
    message = Message("id1", "t.a", eta, 3, 1.5, 10, ("x",), {"k": [1, 2]}, inner, None,
                      datetime.timedelta(seconds=30), eta, 60, None, 2)
    assert serializer.deserialize(serializer.serialize(message)) == message
    error = Error({"error": "boom", "retries": 0})
    assert serializer.deserialize(serializer.serialize(error)) == error


@pytest.mark.parametrize("value", [
    {"__skipped__": True}, {"__datetime__": "not a date"}, {"__huey_message__": [1]},
    {"__escaped__": {"__skipped__": 1}}, {"outer": {"__timedelta__": "x"}},
])
def test_user_data_that_looks_like_a_tag_round_trips_unchanged(value):
    serializer = JSONSerializer()
    assert serializer.deserialize(serializer.serialize(value)) == value


def test_a_queue_from_an_earlier_version_is_upgraded_in_place(tmp_path):
    import sqlite3
    path = tmp_path / "old-queue.db"
    with sqlite3.connect(str(path)) as conn:  # the table as botlite 0.1's first runner made it
        conn.execute("create table botlite_queue (id integer primary key autoincrement, "
                     "queue text not null, lane text not null, priority real not null "
                     "default 0, task_id text not null, data blob not null, enqueued_at real "
                     "not null, claimed_by text, claimed_at real)")
    runner = TaskRunner("sqlite:///%s" % path, name="old")
    runner.register(add)
    try:
        task_id = runner.enqueue("add", [1, 2])
        runner.huey.execute(runner.huey.dequeue())
        assert runner.state(task_id)["result"] == {"sum": 3, "at": "done"}
    finally:
        runner.close()
