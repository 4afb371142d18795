"""Housekeeping tasks on real rows and files: retention cleanup, temp files,
backups and restore, health checks and the system report."""
import datetime
import os
import sqlite3
import time
import uuid

import pytest

from botlite import operations
from botlite.app import Botlite
from botlite.cli import main
from botlite.models import (Chatbot, Conversation, HealthSample, Message, Notification, Source,
                            UserAction)
from botlite.settings import load_settings
from botlite.timeutil import utcnow
from conftest import wait_for

DEFAULT_JOBS = [("health_check", []), ("update_analytics", []), ("cleanup_old_data", [90]),
                ("cleanup_temp_files", []), ("backup_data", []), ("generate_reports", [])]


def finished(client, task_id):
    return wait_for(lambda: (lambda t: t if t["status"] in ("SUCCESS", "FAILURE") else None)(
        client.get("/api/tasks/" + task_id).json), timeout=30, message="task %s" % task_id)


def run_task(client, name, args=()):
    task_id = client.post("/api/tasks", {"name": name, "args": list(args)}).json["task_id"]
    return finished(client, task_id)


def test_every_task_runs_with_the_default_schedule_arguments(client, app, worker):
    assert all(name in app.runner.tasks for name, _ in DEFAULT_JOBS)
    for name, args in DEFAULT_JOBS:
        done = run_task(client, name, args)
        assert done["status"] == "SUCCESS", (name, done["error"])
    queues = {name: app.runner.specs[name].queue for name in app.runner.specs}
    assert queues["process_user_action"] == "high_priority"
    assert queues["generate_reports"] == queues["backup_data"] == "low_priority"
    assert queues["send_notification"] == "notifications"
    assert all(app.runner.specs[name].periodic is None for name, _ in DEFAULT_JOBS)


@pytest.mark.parametrize("name, args, message", [
    ("cleanup_old_data", [0], "days must be between 1"),
    ("cleanup_old_data", ["90"], "days must be a whole number"),
    ("cleanup_temp_files", [-1], "max_age_hours must be between 0"),
    ("backup_data", [0], "keep must be between 1"),
    ("generate_reports", [True], "hours must be a number"),
])
def test_bad_arguments_fail_at_once(client, app, worker, name, args, message):
    submitted = client.post("/api/tasks", {"name": name, "args": args})
    if isinstance(args[0], int) and not isinstance(args[0], bool):  # of the right type
        done = finished(client, submitted.json["task_id"])
    else:  # the API refuses the wrong type; the task itself too, queued some other way
        assert submitted.status == 400 and "must be" in submitted.json["error"]["message"]
        done = finished(client, app.runner.enqueue(name, args))
    assert done["status"] == "FAILURE" and done["attempts"] == 1 and message in done["error"]


# -- cleanup_old_data -------------------------------------------------------------------------

def _conversation(session, *ages_in_days):
    now = utcnow()
    stamps = sorted(now - datetime.timedelta(days=age) for age in ages_in_days)
    conversation = Conversation.create(id=uuid.uuid4().hex, chatbot="default", session_id=session,
                                       started_at=stamps[0], last_message_at=stamps[-1],
                                       message_count=len(stamps))
    for stamp in stamps:
        Message.create(id=uuid.uuid4().hex, conversation=conversation.id, chatbot_id="default",
                       role="user", text="q", created_at=stamp)
        UserAction.create(chatbot_id="default", session_id=session, message_id=uuid.uuid4().hex,
                          action="message", created_at=stamp)
    return conversation.id


def test_cleanup_old_data_deletes_old_rows_in_batches_and_keeps_younger(client, app, worker,
                                                                        monkeypatch):
    monkeypatch.setattr(operations, "BATCH", 3)
    old = datetime.timedelta(days=100)
    with app.database.connection_context():
        gone = _conversation("old", 120, 110, 100, 95, 93, 91, 91)  # 7 messages, all old
        mixed = _conversation("mixed", 100, 2)                       # one old, one young
        young = _conversation("young", 10, 1)
        for read, age in ((True, old), (False, old), (True, datetime.timedelta(days=5))):
            Notification.create(user_id="u", title="t", message="m", read=read,
                                created_at=utcnow() - age)
    aged = run_task(client, "health_check")["task_id"]
    fresh = run_task(client, "health_check")["task_id"]
    with app.database.connection_context():  # (health_check itself keeps 7 days)
        HealthSample.create(checked_at=utcnow() - old, status="ok", result="{}")
    queue = sqlite3.connect(app.settings.broker_url[len("sqlite:///"):])
    with queue:
        queue.execute("update botlite_state set finished_at = ? where task_id = ?",
                      (time.time() - 100 * 86400, aged))
    queue.close()

    result = run_task(client, "cleanup_old_data", [90])
    assert result["status"] == "SUCCESS", result["error"]
    counts = result["result"]
    assert counts["messages"] == 8 and counts["conversations"] == 1
    assert counts["user_actions"] == 8 and counts["notifications"] == 1
    assert counts["health_samples"] == 1 and counts["task_states"] >= 1
    with app.database.connection_context():
        assert Conversation.get_or_none(Conversation.id == gone) is None
        assert Conversation.get_by_id(mixed).message_count == 1
        assert Message.select().where(Message.conversation == mixed).count() == 1
        assert Message.select().where(Message.conversation == young).count() == 2
        assert UserAction.select().count() == 3
        assert sorted((n.read, n.created_at > utcnow() - old) for n in Notification.select()) \
            == [(False, False), (True, True)]
    assert client.get("/api/tasks/" + aged).status == 404
    assert client.get("/api/tasks/" + fresh).status == 200


# -- cleanup_temp_files ---------------------------------------------------------------------

def _file(path, age_hours, content=b"x" * 10):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
    stamp = time.time() - age_hours * 3600
    os.utime(path, (stamp, stamp))
    return path


def _age_dir(path, age_hours):
    stamp = time.time() - age_hours * 3600
    os.utime(path, (stamp, stamp))


def test_cleanup_temp_files_keeps_young_and_referenced_files(client, app, worker, data_dir):
    uploads = os.path.join(data_dir, "uploads")
    with app.database.connection_context():
        Source.create(id="a" * 32, chatbot="default", kind="file",
                      stored_path="uploads/%s/manual.pdf" % ("a" * 32))
    referenced = _file(os.path.join(uploads, "a" * 32, "manual.pdf"), 48)
    stray = _file(os.path.join(uploads, "a" * 32, "old-name.pdf"), 48)
    orphan = _file(os.path.join(uploads, "b" * 32, "gone.pdf"), 48)
    young_orphan = _file(os.path.join(uploads, "c" * 32, "arriving.pdf"), 1)
    old_temp = _file(os.path.join(uploads, ".incoming-abc"), 12)
    young_temp = _file(os.path.join(uploads, ".incoming-def"), 1)
    old_partial = _file(os.path.join(data_dir, "backups", "app-x.db.partial"), 12)
    for folder, age in (("a" * 32, 48), ("b" * 32, 48), ("c" * 32, 1)):
        _age_dir(os.path.join(uploads, folder), age)

    done = run_task(client, "cleanup_temp_files", [])
    assert done["status"] == "SUCCESS", done["error"]
    result = done["result"]
    assert result["orphaned_uploads"] == 2 and result["temp_files"] == 2
    assert result["bytes"] == 40
    for path in (orphan, stray, old_temp, old_partial):
        assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(orphan))
    for path in (referenced, young_orphan, young_temp):
        assert os.path.exists(path)
    assert run_task(client, "cleanup_temp_files", [0.5])["result"]["orphaned_uploads"] == 1


# -- backups and restore ------------------------------------------------------------------

def _counts(path, skip=("botlite_backup",)):
    conn = sqlite3.connect(path)
    try:
        tables = [name for (name,) in conn.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' "
            "and name not like 'chunk_index%'") if name not in skip]
        return {table: conn.execute('select count(*) from "%s"' % table).fetchone()[0]
                for table in tables}
    finally:
        conn.close()


def _chat(client, text):
    return client.post("/chatbot/message/", {"message": text}, auth=False).json


def test_backup_is_sqlite_with_the_same_rows_and_keeps_the_last_n(client, app, worker, data_dir):
    for text in ("hello", "what is botlite?", "bye"):
        _chat(client, text)
    client.post("/api/chatbots", {"name": "Support"})
    assert app.turn_log.flush()  # the turns are written, their analytics tasks queued
    wait_for(lambda: client.get("/api/queues").json["queues"]["high_priority"]["pending"] == 0,
             message="analytics tasks drained")
    done = run_task(client, "backup_data", [])
    assert done["status"] == "SUCCESS", done["error"]
    result = done["result"]
    app_file, queue_file = result["app"]["file"], result["queue"]["file"]
    assert os.path.dirname(app_file) == os.path.join(data_dir, "backups")
    assert os.path.basename(app_file).startswith("app-") and app_file.endswith(".db")
    source_counts = _counts(os.path.join(data_dir, "botlite.db"))
    backup_counts = _counts(app_file)
    assert backup_counts == source_counts
    assert backup_counts["message"] == 6 and backup_counts["chatbot"] == 2
    conn = sqlite3.connect(app_file)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("select kind from botlite_backup").fetchone()[0] == "app"
    conn.close()
    assert "botlite_state" in _counts(queue_file)

    for keep in (5, 4, 2):  # 4 backups of each, then keep the newest 2
        assert run_task(client, "backup_data", [keep])["status"] == "SUCCESS"
    names = sorted(os.listdir(os.path.join(data_dir, "backups")))
    assert [n.split("-")[0] for n in names] == ["app", "app", "queue", "queue"]
    assert all(n.endswith(".db") for n in names)


def test_restore_puts_the_data_back(settings, capsys):
    app = Botlite.open(settings)
    from botlite.web.app import create_app
    from conftest import WsgiClient
    client = WsgiClient(create_app(app), token=app.token)
    client.post("/api/chatbots", {"name": "Keeper"})
    _chat(client, "hello")
    assert app.turn_log.flush()
    assert main(["backup", "--data-dir", settings.data_dir]) == 0
    made = __import__("json").loads(capsys.readouterr().out)
    client.delete("/api/chatbots/keeper")
    client.post("/api/chatbots", {"name": "Newcomer"})
    app.close()

    assert main(["restore", made["app"]["file"], "--data-dir", settings.data_dir]) == 0
    out = capsys.readouterr().out
    assert "restored the app database" in out and ".before-restore" in out
    app = Botlite.open(settings)
    try:
        with app.database.connection_context():
            assert sorted(b.id for b in Chatbot.select()) == ["default", "keeper"]
            assert Message.select().count() == 2
            tables = [r[0] for r in app.database.execute_sql(
                "select name from sqlite_master where name = 'botlite_backup'")]
            assert tables == []
    finally:
        app.close()
    assert main(["restore", made["queue"]["file"], "--data-dir", settings.data_dir]) == 0


@pytest.fixture
def stopped_data_dir(settings):
    Botlite.open(settings).close()
    return settings.data_dir


def test_restore_refuses_files_that_are_not_botlite_backups(stopped_data_dir, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    plain = tmp_path / "plain.db"
    sqlite3.connect(str(plain)).execute("create table t (x)").connection.close()
    for path, message in ((str(tmp_path / "missing.db"), "no such file"),
                          (str(text), "is not a SQLite database"),
                          (str(plain), "is not a botlite backup")):
        assert main(["restore", path, "--data-dir", stopped_data_dir]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_restore_refuses_while_a_worker_runs(app, worker, client, capsys):
    assert main(["backup", "--data-dir", app.settings.data_dir]) == 0
    made = __import__("json").loads(capsys.readouterr().out)
    assert main(["restore", made["app"]["file"], "--data-dir", app.settings.data_dir]) == 2
    err = capsys.readouterr().err
    assert "botlite is running" in err and err.count("\n") == 1


def test_backup_skips_postgresql_with_a_reason(tmp_path, postgres_url, redis_url):
    settings = load_settings({"data_dir": str(tmp_path), "database_url": postgres_url,
                              "broker_url": redis_url}, environ={})
    from botlite import backup
    result = backup.backup_all(settings.data_dir, settings.database_url, settings.broker_url, 3)
    assert "pg_dump" in result["app"]["skipped"] and "Redis" in result["queue"]["skipped"]


# -- health_check and the system report -----------------------------------------------------

def test_health_check_is_stored_and_shown_by_healthz(client, app, worker):
    before = client.get("/healthz").json
    assert before["last_check"] is None and before["status"] == "ok"
    done = run_task(client, "health_check")
    result = done["result"]
    assert result["status"] == "ok" and result["database"]["status"] == "ok"
    assert result["queue"]["workers"] == 1 and result["disk"]["free_mb"] > 0
    health = client.get("/healthz").json
    assert {"status", "database", "queue", "workers"} <= set(health)
    assert health["last_check"]["checked_at"] == result["checked_at"]
    assert health["last_check"]["age_s"] >= 0
    assert health["last_check"]["ran_by"] and health["last_check"]["disk"]["free_mb"] > 0
    public = client.get("/healthz", auth=False).json["last_check"]  # anyone: outcome only
    assert public == {"status": "ok", "checked_at": result["checked_at"],
                      "age_s": public["age_s"], "disk": {"status": "ok"}}
    with app.database.connection_context():
        sample = HealthSample.select().first()
        assert sample.pending is not None and sample.status == "ok"


def test_generate_reports_makes_a_stored_system_report(client, app, worker):
    for _ in range(3):
        run_task(client, "health_check")
    failed = run_task(client, "cleanup_old_data", [0])
    assert failed["status"] == "FAILURE"
    done = run_task(client, "generate_reports", [])
    assert done["status"] == "SUCCESS", done["error"]
    report = done["result"]
    tasks = report["tasks"]
    assert tasks["health_check"]["succeeded"] == 3 and tasks["health_check"]["failure_rate"] == 0
    assert tasks["cleanup_old_data"]["failed"] == 1
    assert tasks["cleanup_old_data"]["failure_rate"] == 1
    assert tasks["health_check"]["throughput_per_hour"] == round(3 / 24, 3)
    assert tasks["health_check"]["p95_seconds"] is not None
    assert sum(bucket["samples"] for bucket in report["queue_depth"]) == 3
    assert report["slowest"] and report["slowest"][0]["seconds"] >= report["slowest"][-1]["seconds"]
    stored = client.get("/api/reports/system").json
    assert stored["report_id"] == report["report_id"] and stored["tasks"] == tasks
    fresh = client.get("/api/reports/system?refresh=1").json
    assert fresh["report_id"] != report["report_id"]
    assert fresh["tasks"]["generate_reports"]["succeeded"] == 1


def test_system_report_errors_and_auth(client):
    assert client.get("/api/reports/system", auth=False).status == 401
    bad = client.get("/api/reports/system?refresh=maybe")
    assert bad.status == 400 and bad.json["error"]["code"] == "invalid_field"
    first = client.get("/api/reports/system")  # none yet: made on the request
    assert first.status == 200 and first.json["tasks_seen"] == 0


def test_health_reports_and_cleanup_on_every_queue_storage(app, broker_url):
    """The tasks that read the queue (depth, task states) on SQLite, Redis, PostgreSQL."""
    from botlite.runner import TaskRunner
    from botlite.tasks import register_all
    runner = TaskRunner(broker_url, name="test-%s" % uuid.uuid4().hex[:8])
    register_all(runner)

    def run(name, args=()):
        task_id = runner.enqueue(name, list(args))
        task = runner.huey.dequeue("local")
        assert task is not None and task.id == task_id
        with app.database.connection_context():
            runner.huey.execute(task)
        return runner.state(task_id)

    try:
        runner.enqueue("update_analytics", delay=3600)  # something waiting in the queue
        health = run("health_check")
        assert health["status"] == "SUCCESS", health["error"]
        assert health["result"]["queue"]["status"] == "ok"
        assert health["result"]["queue"]["scheduled"] + health["result"]["queue"]["pending"] >= 1
        report = run("generate_reports", [1])
        assert report["status"] == "SUCCESS", report["error"]
        assert report["result"]["tasks"]["health_check"]["succeeded"] == 1
        assert report["result"]["queue_depth"][0]["samples"] == 1
        cleanup = run("cleanup_old_data", [90])
        assert cleanup["status"] == "SUCCESS", cleanup["error"]
        assert cleanup["result"]["task_states"] == 0
    finally:
        runner.huey.flush()
        runner.close()


def test_backup_command_bad_keep_is_exit_2_and_creates_nothing(tmp_path, capsys):
    target = tmp_path / "never"
    assert main(["backup", "--keep", "0", "--data-dir", str(target)]) == 2
    assert capsys.readouterr().err == "botlite: error: --keep must be at least 1\n"
    assert not target.exists()
