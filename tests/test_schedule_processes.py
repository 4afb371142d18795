"""The schedule across real processes: edits reach a running server without a
restart, and several schedulers over one database enqueue each slot once."""
import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys

import requests

from botlite.app import Botlite
from botlite.models import ScheduleJob, ScheduleRun
from botlite.settings import load_settings
from conftest import POSTGRES_URL, SERVICES_REQUIRED, _reachable, wait_for
from test_serve import ServeProcess

EVERY_MINUTE = ("health_check", "expire_results", "second_health_check")
SLOTS = 3


def _minute(when):
    return when.replace(second=0, microsecond=0)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def test_a_schedule_edit_reaches_a_running_server_without_restart(data_dir):
    server = ServeProcess("--port", "0", "--data-dir", data_dir)
    try:
        base, token = re.match(r"(http://[^/]+)/\?token=(\S+)$", server.ready_url()).groups()
        api = requests.Session()
        api.headers["Authorization"] = "Bearer " + token

        edited_at = _utcnow()
        assert api.patch(base + "/api/schedule/health_check",
                         json={"enabled": False}, timeout=5).status_code == 200
        reply = api.patch(base + "/api/schedule/expire_results",
                          json={"crontab": "* * * * *"}, timeout=5)
        assert reply.status_code == 200
        next_run = datetime.datetime.fromisoformat(reply.json()["next_run"].rstrip("Z"))
        assert _minute(edited_at) < next_run <= _minute(edited_at) + datetime.timedelta(minutes=2)

        def ran():
            job = api.get(base + "/api/schedule/expire_results", timeout=5).json()
            return job if job["last_status"] == "SUCCESS" else None

        job = wait_for(ran, timeout=90, interval=0.5,
                       message="the edited job to run in the running server")
        slot = datetime.datetime.fromisoformat(job["runs"][0]["slot"].rstrip("Z"))
        assert slot > _minute(edited_at)
        task = api.get(base + "/api/tasks/" + job["last_task_id"], timeout=5).json()
        assert (task["name"], task["status"]) == ("expire_results", "SUCCESS")
        # The disabled job ran no slot after the edit.
        runs = api.get(base + "/api/schedule/health_check", timeout=5).json()["runs"]
        assert all(datetime.datetime.fromisoformat(r["slot"].rstrip("Z")) <= _minute(edited_at)
                   for r in runs)
    finally:
        server.stop()


@contextlib.contextmanager
def _using(app):
    """This app's database for the schedule tables (two apps live in this process)."""
    with app.database.bind_ctx([ScheduleJob, ScheduleRun]), app.database.connection_context():
        yield


def _prepare(settings):
    """Three every-minute jobs, overlap allowed so that every slot must be enqueued."""
    app = Botlite.open(settings)
    with _using(app):
        now = _minute(_utcnow())
        ScheduleJob.update(enabled=False).execute()
        ScheduleJob.insert(name="second_health_check", task="health_check", crontab="* * * * *",
                           last_slot=now).execute()
        (ScheduleJob.update(enabled=True, crontab="* * * * *", no_overlap=False, last_slot=now)
         .where(ScheduleJob.name.in_(EVERY_MINUTE)).execute())
    return app


def _start(command, settings):
    """`worker`, or `serve` on a free port: either runs a scheduler."""
    extra = ["--port", "0"] if command == "serve" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "botlite", command, "--workers", "1", *extra,
         "--data-dir", settings.data_dir, "--database-url", settings.database_url,
         "--broker-url", settings.broker_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "is running" in line or "is ready" in line, proc.stderr.read()
    return proc


def _slots_done(app, last_slot):
    with _using(app):
        runs = list(ScheduleRun.select().where(ScheduleRun.slot == last_slot))
    if len(runs) < len(EVERY_MINUTE) or any(r.status != "ENQUEUED" for r in runs):
        return False
    return all(app.runner.state(r.task_id)["status"] == "SUCCESS" for r in runs)


def test_two_schedulers_per_database_enqueue_each_slot_once_for_three_minutes(
        tmp_path, request):
    """SQLite with `serve` + `worker`, PostgreSQL with two `worker`s, at the same time
    (PostgreSQL is left out, with a note, only when it is unreachable and not required)."""
    databases = [("sqlite", None, ("serve", "worker"))]
    if SERVICES_REQUIRED or _reachable(POSTGRES_URL):
        databases.append(("postgresql", request.getfixturevalue("postgres_url"),
                          ("worker", "worker")))
    else:
        print("PostgreSQL is not reachable at %s: SQLite only" % POSTGRES_URL)
    backends, commands = {}, {}
    for name, url, pair in databases:
        commands[name] = pair
        values = {"data_dir": str(tmp_path / name)}
        if url:
            values.update(database_url=url, broker_url=url)
        os.makedirs(values["data_dir"])
        settings = load_settings(values, environ={})
        backends[name] = (settings, _prepare(settings))
    processes = []
    try:
        for name, (settings, _) in backends.items():
            processes += [_start(command, settings) for command in commands[name]]
        first = _minute(_utcnow()) + datetime.timedelta(minutes=1)
        last = first + datetime.timedelta(minutes=SLOTS - 1)
        for name, (_, app) in backends.items():
            wait_for(lambda: _slots_done(app, last), timeout=(SLOTS + 1) * 60 + 30,
                     interval=1.0, message="%s: %d slots of every-minute jobs" % (name, SLOTS))
        for proc in processes:
            proc.send_signal(signal.SIGTERM)
        for proc in processes:
            assert proc.wait(30) == 0, proc.stderr.read()

        for name, (_, app) in backends.items():
            with _using(app):
                runs = list(ScheduleRun.select().order_by(ScheduleRun.slot))
            window = [r for r in runs if first <= r.slot <= last]
            for job in EVERY_MINUTE:
                slots = [r.slot for r in window if r.job == job]
                assert slots == [first + datetime.timedelta(minutes=i) for i in range(SLOTS)], (
                    name, job, slots)
            assert all(r.status == "ENQUEUED" and r.task_id for r in runs), name
            # The queue agrees: one task per claimed slot, never two.
            task_ids = {r.task_id for r in runs}
            assert len(task_ids) == len(runs)
            for task_name, jobs in (("health_check", 2), ("expire_results", 1)):
                states = app.runner.states(name=task_name, limit=1000)
                assert {s["task_id"] for s in states} <= task_ids
                assert len(states) == len([r for r in runs if r.job in (
                    ("health_check", "second_health_check") if jobs == 2
                    else ("expire_results",))]), (name, task_name)
            print("%s: slots won by %s" % (name, sorted({r.scheduler for r in runs})))
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for _, app in backends.values():
            app.close()
