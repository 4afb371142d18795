"""The queue's schema changes only where a process starts: a runner, its workers
and the child process of a hard-time-limited task issue no DDL (on PostgreSQL even
`alter table ... add column if not exists` takes an AccessExclusiveLock, so every
enqueue waited behind any long reader). An older queue is upgraded in place."""
import sqlite3
import uuid

import pytest

import runner_tasks as rt
from botlite.runner import Runtime, TaskRunner
from botlite.runner.storage import SCHEMA_VERSION, SqliteQueueStorage
from conftest import POSTGRES_URL, _require_service, wait_for


def _work(url, name):
    """What a worker process does all day: enqueue, dedup, claim, run in a child
    process (hard time limit), retry, revoke, recover."""
    runner = TaskRunner(url, name=name)
    for fn in rt.ALL:
        runner.register(fn)
    runtime = Runtime(runner, workers=1, periodic=False, heartbeat_interval=0.2)
    runtime.start()
    try:
        ids = [runner.enqueue("add", [1, 2]), runner.enqueue("child_add", [2, 3]),
               runner.enqueue("dedup_once", [1]), runner.enqueue("dedup_once", [1]),
               runner.enqueue("bad_input", [1])]
        wait_for(lambda: all(runner.state(i)["status"] in ("SUCCESS", "FAILURE") for i in ids),
                 timeout=30, message="the tasks to end")
        assert runner.state(ids[1])["result"] == 5  # the child process ran
        runner.retry(ids[4])
        delayed = runner.enqueue("add", [0, 0], delay=3600)
        runner.revoke(delayed)
        runtime.recover()
        runner.queues()
    finally:
        runtime.stop()
        runner.huey.flush()
        runner.close()


@pytest.fixture
def ddl_database():
    """A fresh PostgreSQL database whose event trigger records every DDL command
    (event triggers are per database; a fresh one sees only this test)."""
    _require_service(POSTGRES_URL, "PostgreSQL")
    import psycopg
    name = "botlite_ddl_%s" % uuid.uuid4().hex[:10]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute('create database "%s"' % name)
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table ddl_log (tag text, command text)")
        conn.execute("create function log_ddl() returns event_trigger language plpgsql as $$ "
                     "begin insert into ddl_log values (tg_tag, current_query()); end $$")
        conn.execute("create event trigger log_ddl on ddl_command_start "
                     "execute function log_ddl()")
    yield url
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute('drop database "%s" with (force)' % name)


def _ddl(url):
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        return [row for row in conn.execute("select tag, command from ddl_log")]


def test_postgresql_no_ddl_after_the_queue_exists(ddl_database):
    TaskRunner(ddl_database, name="first").close()  # the first start creates the tables
    created = _ddl(ddl_database)
    assert any(tag == "CREATE TABLE" for tag, _ in created)
    _work(ddl_database, "botlite-%s" % uuid.uuid4().hex[:8])
    assert _ddl(ddl_database) == created, "DDL issued after start"


def test_sqlite_no_ddl_after_the_queue_exists(tmp_path, monkeypatch):
    url = "sqlite:///%s" % (tmp_path / "queue.db")
    TaskRunner(url).close()
    statements = []
    create = SqliteQueueStorage._create_connection

    def traced(self):
        conn = create(self)
        conn.set_trace_callback(statements.append)
        return conn
    monkeypatch.setattr(SqliteQueueStorage, "_create_connection", traced)
    _work(url, "botlite")
    assert statements, "the trace saw nothing"
    ddl = [s for s in statements if s.lstrip().split(" ", 1)[0].lower()
           in ("create", "alter", "drop")]
    assert ddl == []


# The queue as botlite 0.1 (SCHEMA_VERSION 1) created it: no reruns, no botlite_schema.
_V1_STATE = ("create table botlite_state (queue text not null, task_id text not null, "
             "name text not null, lane text not null, status text not null, args text, "
             "kwargs text, result text, error text, traceback text, retries integer, "
             "attempts integer not null default 0, progress text, next_attempt_at {real}, "
             "enqueued_at {real}, started_at {real}, finished_at {real}, "
             "updated_at {real} not null, dedup_key text, worker text, "
             "primary key (queue, task_id))")


@pytest.mark.parametrize("broker_url", ["sqlite", "postgresql"], indirect=True)
def test_a_queue_of_an_older_botlite_is_upgraded_at_start_and_keeps_its_tasks(broker_url):
    real = "double precision" if broker_url.startswith("postgres") else "real"
    runner = TaskRunner(broker_url, migrate=False)
    with runner.storage.db(commit=True) as curs:
        curs.execute(_V1_STATE.format(real=real))
        curs.execute("insert into botlite_state (queue, task_id, name, lane, status, "
                     "updated_at) values ('botlite', 'old-task', 'add', 'default', "
                     "'SUCCESS', 1)")
    assert runner.storage.schema_version() == 0
    runner.close()

    upgraded = TaskRunner(broker_url)
    try:
        assert upgraded.storage.schema_version() == SCHEMA_VERSION
        state = upgraded.state("old-task")
        assert state["status"] == "SUCCESS" and state["reruns"] == 0
        upgraded.register(rt.add)
        task_id = upgraded.enqueue("add", [2, 2])
        assert upgraded.state(task_id)["reruns"] == 0
        assert upgraded.storage.migrate() is False  # current: nothing to do
    finally:
        upgraded.huey.flush()
        upgraded.close()
    if broker_url.startswith("sqlite"):
        with sqlite3.connect(broker_url[len("sqlite:///"):]) as conn:
            assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
