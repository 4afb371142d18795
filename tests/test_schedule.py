"""The database-backed schedule: crontabs, slots, once per slot, no overlap, edits."""
import datetime
import threading

import re

import pytest
from huey import crontab as huey_crontab

from botlite import schedule
from botlite.cli import main
from botlite.models import ScheduleJob, ScheduleRun
from botlite.runner.cron import CronError, Crontab
from botlite.schedule import Scheduler

T0 = datetime.datetime(2026, 11, 22, 5, 0)


def minute(m, base=T0):
    return base + datetime.timedelta(minutes=m)


# -- crontab expressions -------------------------------------------------------------

@pytest.mark.parametrize("expression, huey_fields", [
    ("* * * * *", {}),
    ("*/5 * * * *", {"minute": "*/5"}),
    ("0 2 * * *", {"minute": "0", "hour": "2"}),
    ("15,45 9-17 * * *", {"minute": "15,45", "hour": "9-17"}),
    ("0 0 * * 1-5", {"minute": "0", "hour": "0", "day_of_week": "1-5"}),
    ("30 6 1 */2 *", {"minute": "30", "hour": "6", "day": "1", "month": "*/2"}),
])
def test_crontab_agrees_with_huey_minute_by_minute(expression, huey_fields):
    ours, theirs = Crontab.parse(expression), huey_crontab(**huey_fields)
    start = datetime.datetime(2026, 1, 1)
    for i in range(0, 60 * 24 * 70, 7):  # ten weeks, every 7th minute
        when = start + datetime.timedelta(minutes=i)
        assert ours.matches(when) == theirs(when), when


def test_next_and_latest_slot():
    cron = Crontab.parse("*/15 * * * *")
    now = datetime.datetime(2026, 11, 22, 5, 41, 30)
    assert cron.next_after(now) == datetime.datetime(2026, 11, 22, 5, 45)
    assert cron.latest_at_or_before(now) == datetime.datetime(2026, 11, 22, 5, 30)
    assert cron.latest_at_or_before(now, not_before=datetime.datetime(2026, 11, 22, 5, 30)) is None
    assert Crontab.parse("0 0 29 2 *").next_after(now) == datetime.datetime(2028, 2, 29)
    assert Crontab.parse("@daily").next_runs(now, 2) == [datetime.datetime(2026, 11, 23),
                                                         datetime.datetime(2026, 11, 24)]
    # Day of month OR day of week, as in cron: the 1st, and every Monday.
    either = Crontab.parse("0 0 1 * mon")
    assert either.next_runs(datetime.datetime(2026, 11, 22), 3) == [
        datetime.datetime(2026, 11, 23), datetime.datetime(2026, 11, 30),
        datetime.datetime(2026, 12, 1)]


@pytest.mark.parametrize("expression, field", [
    ("* * *", "crontab"), ("61 * * * *", "minute"), ("* 24 * * *", "hour"),
    ("* * 0 * *", "day of month"), ("* * * 13 *", "month"), ("* * * * 8", "day of week"),
    ("*/0 * * * *", "minute"), ("5-1 * * * *", "minute"), ("x * * * *", "minute"),
    ("1,,2 * * * *", "minute"),
])
def test_bad_crontab_names_the_field(expression, field):
    with pytest.raises(CronError) as caught:
        Crontab.parse(expression)
    assert caught.value.field == field


# -- jobs ---------------------------------------------------------------------------

def test_default_jobs_exist_on_first_start_named_after_their_task(app):
    with app.database.connection_context():
        jobs = {job["name"]: job for job in schedule.list_jobs(app.runner)}
    registered = [d for d in schedule.DEFAULT_JOBS if d.task in app.runner.tasks]
    assert {d.name for d in registered} == set(jobs)
    assert {"health_check", "resync_websites", "expire_results"} <= set(jobs)
    assert all(job["task"] == name for name, job in jobs.items())
    assert jobs["health_check"]["crontab"] == "* * * * *"
    assert jobs["health_check"]["next_run"].endswith(":00Z")


def test_defaults_do_not_overwrite_an_edit(app, settings):
    from botlite.app import Botlite
    with app.database.connection_context():
        schedule.update_job(app.runner, "health_check", {"crontab": "*/7 * * * *",
                                                         "enabled": False})
    again = Botlite.open(settings)  # a second start over the same database
    try:
        with again.database.connection_context():
            job = schedule.get_job(again.runner, "health_check")
    finally:
        again.close()
    assert (job["crontab"], job["enabled"]) == ("*/7 * * * *", False)


def _only(app, *names):
    """Keep just these jobs enabled, all handled up to T0."""
    ScheduleJob.update(enabled=False).execute()
    ScheduleJob.update(enabled=True, last_slot=T0).where(ScheduleJob.name.in_(names)).execute()


def _tasks(app, name):
    return app.runner.states(name=name, limit=1000)


def test_each_slot_is_enqueued_once(app):
    scheduler = Scheduler(app.runner, name="a")
    with app.database.connection_context():
        _only(app, "health_check")
    assert scheduler.tick(T0) == []  # already handled
    first = scheduler.tick(minute(1, T0) + datetime.timedelta(seconds=3))
    assert [(d["job"], d["status"]) for d in first] == [("health_check", "ENQUEUED")]
    assert scheduler.tick(minute(1, T0) + datetime.timedelta(seconds=40)) == []
    assert len(_tasks(app, "health_check")) == 1
    with app.database.connection_context():
        job = schedule.get_job(app.runner, "health_check")
        assert job["last_run"] == "2026-11-22T05:01:03Z"
        assert job["last_status"] == "PENDING"  # the task's own state, live
        assert job["last_task_id"] == first[0]["task_id"]
        assert schedule.runs("health_check")[0]["scheduler"] == "a"


def test_missed_slots_after_downtime_run_once_not_as_a_burst(app):
    scheduler = Scheduler(app.runner)
    with app.database.connection_context():
        _only(app, "expire_results")  # */10
    done = scheduler.tick(minute(187))  # three hours down
    assert [(d["job"], d["slot"]) for d in done] == [("expire_results", "2026-11-22T08:00:00Z")]
    assert scheduler.tick(minute(189)) == []
    assert len(_tasks(app, "expire_results")) == 1


def test_concurrent_schedulers_enqueue_each_slot_once(app):
    """Eight schedulers over one database race for the same sixty slots."""
    with app.database.connection_context():
        _only(app, "health_check", "expire_results")
        ScheduleJob.update(crontab="* * * * *", no_overlap=False).execute()
    schedulers = [Scheduler(app.runner, name="s%d" % i) for i in range(8)]
    outcomes, barrier = [], threading.Barrier(len(schedulers))

    def run(scheduler):
        for m in range(1, 61):
            barrier.wait()
            outcomes.extend(scheduler.tick(minute(m)))

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in ("health_check", "expire_results"):
        slots = sorted(d["slot"] for d in outcomes if d["job"] == name)
        assert len(slots) == 60 == len(set(slots)), name
        assert len(_tasks(app, name)) == 60
    assert len({d["task_id"] for d in outcomes}) == 120
    with app.database.connection_context():
        assert ScheduleRun.select().count() == 120


def test_no_overlap_skips_a_slot_while_the_previous_run_is_going(app):
    scheduler = Scheduler(app.runner)
    with app.database.connection_context():
        _only(app, "health_check")
    first = scheduler.tick(minute(1))[0]
    # No worker runs it: at the next slot it is still pending.
    second = scheduler.tick(minute(2))[0]
    assert second["status"] == "SKIPPED" and second["task_id"] is None
    with app.database.connection_context():
        job = schedule.get_job(app.runner, "health_check")
        assert job["last_status"] == "SKIPPED"
        assert job["last_task_id"] == first["task_id"]
        assert "still PENDING" in schedule.runs("health_check")[0]["detail"]
    app.runner.huey.execute(app.runner.huey.dequeue())  # the first run now happens
    assert app.runner.state(first["task_id"])["status"] == "SUCCESS"
    third = scheduler.tick(minute(3))[0]
    assert third["status"] == "ENQUEUED"
    with app.database.connection_context():
        ScheduleJob.update(no_overlap=False).execute()
    assert scheduler.tick(minute(4))[0]["status"] == "ENQUEUED"  # overlap allowed now


def test_disabled_job_waits_and_reenabling_does_not_catch_up(app, client):
    scheduler = Scheduler(app.runner)
    with app.database.connection_context():
        _only(app, "health_check")
    assert client.patch("/api/schedule/health_check", {"enabled": False}).status == 200
    assert scheduler.tick(datetime.datetime.utcnow() + datetime.timedelta(minutes=3)) == []
    job = client.patch("/api/schedule/health_check", {"enabled": True}).json
    assert job["enabled"] is True and job["next_run"]
    now = datetime.datetime.utcnow()
    assert scheduler.tick(now) == []  # nothing missed is run
    assert [d["job"] for d in scheduler.tick(now + datetime.timedelta(minutes=1))] == [
        "health_check"]


def test_crontab_edit_changes_the_next_slot(app, client):
    scheduler = Scheduler(app.runner)
    with app.database.connection_context():
        _only(app, "expire_results")
    job = client.patch("/api/schedule/expire_results", {"crontab": "*/2  *  *  *  *"}).json
    assert job["crontab"] == "*/2 * * * *"
    nxt = datetime.datetime.fromisoformat(job["next_run"].rstrip("Z"))
    assert nxt.minute % 2 == 0
    assert [d["slot"] for d in scheduler.tick(nxt + datetime.timedelta(seconds=1))] == [
        job["next_run"]]


# -- the API ----------------------------------------------------------------------------

def test_schedule_api_lists_the_contract_fields(client):
    jobs = client.get("/api/schedule").json["jobs"]
    assert jobs and set(jobs[0]) >= {"name", "task", "crontab", "args", "enabled", "next_run",
                                     "last_run", "last_status"}
    assert client.get("/api/schedule", auth=False).status == 401
    assert client.patch("/api/schedule/health_check", {"enabled": False}, auth=False).status == 401


@pytest.mark.parametrize("body, needle", [
    ({"crontab": "*/5 * * *"}, "crontab"),
    ({"crontab": "0 25 * * *"}, "hour: 25 is out of range 0-23"),
    ({"crontab": "0 0 31 2 *"}, "never matches"),
    ({"crontab": 5}, "crontab"),
    ({"args": [1, 2, 3]}, "args"),
    ({"args": {"days": 3}}, "args"),
    ({"enabled": "yes"}, "enabled"),
    ({"when": "now"}, "unknown field"),
])
def test_bad_edits_are_400_naming_the_field_and_change_nothing(client, body, needle):
    before = client.get("/api/schedule/health_check").json
    reply = client.patch("/api/schedule/health_check", body)
    assert reply.status == 400, reply.json
    assert reply.json["error"]["code"] == "invalid_field"
    assert needle in reply.json["error"]["message"]
    after = client.get("/api/schedule/health_check").json
    assert {k: after[k] for k in ("crontab", "args", "enabled")} == {
        k: before[k] for k in ("crontab", "args", "enabled")}


def test_unknown_job_is_404(client):
    assert client.patch("/api/schedule/nope", {"enabled": False}).status == 404
    assert client.get("/api/schedule/nope").json["error"]["code"] == "not_found"


def test_args_are_checked_against_the_task_and_passed_to_it(app, client):
    client.post("/api/schedule", {"name": "notify-ops", "task": "send_notification",
                                  "crontab": "0 9 * * mon-fri",
                                  "args": ["ops", "Morning", "Queues are fine"]})
    assert client.patch("/api/schedule/notify-ops", {"args": ["ops"]}).status == 400
    wrong_type = client.patch("/api/schedule/notify-ops", {"args": ["ops", "Morning", 7]})
    assert wrong_type.status == 400 and "argument 'message' must be a string, not 7" in \
        wrong_type.json["error"]["message"]
    job = client.get("/api/schedule/notify-ops").json
    assert job["args"] == ["ops", "Morning", "Queues are fine"] and job["runs"] == []
    ran = client.post("/api/schedule/notify-ops/run").json
    state = app.runner.state(ran["task_id"])
    assert (state["name"], state["args"]) == ("send_notification", ["ops", "Morning",
                                                                    "Queues are fine"])


def test_create_and_delete_jobs(client):
    body = {"name": "hourly-health", "task": "health_check", "crontab": "@hourly"}
    created = client.post("/api/schedule", body)
    assert created.status == 201 and created.json["crontab"] == "@hourly"
    assert client.post("/api/schedule", body).status == 409
    assert client.post("/api/schedule", dict(body, name="x y")).status == 400
    assert client.post("/api/schedule", dict(body, name="z", task="nope")).json["error"][
        "code"] == "unknown_task"
    assert client.delete("/api/schedule/hourly-health").status == 200
    assert client.get("/api/schedule/hourly-health").status == 404


def test_crontab_preview(client):
    reply = client.get("/api/schedule/preview?crontab=0+2+*+*+*&count=3").json
    assert len(reply["next_runs"]) == 3
    assert all(t.endswith("T02:00:00Z") for t in reply["next_runs"])
    assert client.get("/api/schedule/preview?crontab=0+2+*").status == 400


# -- the CLI ----------------------------------------------------------------------------

def test_schedule_cli(settings, capsys):
    flags = ["--data-dir", settings.data_dir]
    assert main(["schedule", "list"] + flags) == 0
    assert "health_check" in capsys.readouterr().out
    assert main(["schedule", "disable", "health_check"] + flags) == 0
    assert main(["schedule", "set", "expire_results", "--crontab", "@hourly"] + flags) == 0
    capsys.readouterr()
    assert main(["schedule", "list", "--json"] + flags) == 0
    import json
    jobs = {j["name"]: j for j in json.loads(capsys.readouterr().out)}
    assert jobs["health_check"]["enabled"] is False
    assert jobs["expire_results"]["crontab"] == "@hourly"
    assert main(["schedule", "enable", "health_check"] + flags) == 0
    assert main(["schedule", "run", "health_check"] + flags) == 0
    capsys.readouterr()
    for argv, needle in ((["schedule", "set", "health_check", "--crontab", "99 * * * *"],
                          "minute: 99"),
                         (["schedule", "set", "health_check", "--args", "nope"], "--args"),
                         (["schedule", "set", "health_check"], "--crontab"),
                         (["schedule", "disable", "nope"], "no schedule job")):
        assert main(argv + flags) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1


def test_history_is_unique_per_job_and_slot(app):
    with app.database.connection_context():
        ScheduleRun.create(job="x", slot=T0, status="ENQUEUED")
        import peewee
        with pytest.raises(peewee.IntegrityError):
            ScheduleRun.create(job="x", slot=T0, status="ENQUEUED")



# -- review findings ---------------------------------------------------------------------

def test_a_stale_or_slow_scheduler_never_claims_an_older_slot(app):
    """A has run 06:00; B, whose clock is a little behind, must not run 05:50 after it."""
    with app.database.connection_context():
        _only(app, "expire_results")  # */10, last handled at 05:00 (downtime since)
    fast, slow = Scheduler(app.runner, name="fast"), Scheduler(app.runner, name="slow")
    assert [d["slot"] for d in fast.tick(minute(60))] == ["2026-11-22T06:00:00Z"]
    assert slow.tick(minute(60) - datetime.timedelta(seconds=1)) == []
    assert len(_tasks(app, "expire_results")) == 1


def test_an_edit_after_the_ticks_read_is_respected(app):
    """A PATCH that lands between a tick's read of the jobs and its claim wins."""
    with app.database.connection_context():
        _only(app, "health_check")
        ScheduleJob.update(enabled=False).execute()  # after the tick read it as enabled
        assert Scheduler(app.runner)._handle("health_check", minute(1)) is None
    assert _tasks(app, "health_check") == []


def test_a_failed_enqueue_is_enqueued_again_by_a_later_tick(app, monkeypatch):
    with app.database.connection_context():
        _only(app, "health_check")
    real, calls = app.runner.enqueue, []

    def down_once(*args, **kwargs):
        calls.append(kwargs.get("task_id"))
        if len(calls) == 1:
            raise ConnectionError("queue unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(app.runner, "enqueue", down_once)
    a, b = Scheduler(app.runner, name="a"), Scheduler(app.runner, name="b")
    assert [d["status"] for d in a.tick(minute(1))] == ["ERROR"]
    assert b.tick(minute(1) + datetime.timedelta(seconds=30)) == []  # too early to re-drive
    again = b.tick(minute(2) + datetime.timedelta(seconds=5))
    statuses = {(d["slot"], d["status"]) for d in again}
    assert ("2026-11-22T05:01:00Z", "ENQUEUED") not in statuses  # not the newest slot any more
    assert ("2026-11-22T05:02:00Z", "ENQUEUED") in statuses
    assert len(_tasks(app, "health_check")) == 1


def test_a_scheduler_that_dies_after_its_claim_loses_no_slot(app, monkeypatch):
    with app.database.connection_context():
        _only(app, "expire_results")
        ScheduleJob.update(crontab="0 * * * *").execute()  # hourly: no newer slot soon
    dying = Scheduler(app.runner, name="dying")
    monkeypatch.setattr(dying, "_enqueue", lambda job, slot, task_id: None)  # killed here
    dying.tick(minute(60))
    with app.database.connection_context():
        assert schedule.runs("expire_results")[0]["status"] == "CLAIMED"
    assert _tasks(app, "expire_results") == []
    survivor = Scheduler(app.runner, name="survivor")
    assert survivor.tick(minute(60) + datetime.timedelta(seconds=30)) == []
    redone = survivor.tick(minute(61) + datetime.timedelta(seconds=5))
    assert [(d["slot"], d["status"]) for d in redone] == [("2026-11-22T06:00:00Z", "ENQUEUED")]
    assert redone[0]["task_id"] == schedule.slot_task_id("expire_results", minute(60))
    assert survivor.tick(minute(63)) == [] and len(_tasks(app, "expire_results")) == 1


def test_a_job_whose_task_this_process_lacks_is_left_to_one_that_has_it(app):
    with app.database.connection_context():
        _only(app)
        ScheduleJob.insert(name="newer", task="a_task_from_newer_code", crontab="* * * * *",
                           last_slot=T0).execute()
        assert Scheduler(app.runner).tick(minute(5)) == []
        job = ScheduleJob.get_by_id("newer")
        assert job.last_slot == T0 and ScheduleRun.select().count() == 0


def test_a_deduplicated_task_is_recorded_as_skipped_not_as_a_run(app):
    with app.database.connection_context():
        _only(app, "resync_websites")  # a dedup task
        ScheduleJob.update(crontab="* * * * *", no_overlap=False).execute()
    scheduler = Scheduler(app.runner)
    first = scheduler.tick(minute(1))[0]
    second = scheduler.tick(minute(2))[0]  # the first is still queued
    assert first["status"] == "ENQUEUED"
    assert (second["status"], second["task_id"]) == ("SKIPPED", first["task_id"])
    with app.database.connection_context():
        assert "deduplicated" in schedule.runs("resync_websites")[0]["detail"]


def test_final_status_is_kept_on_the_job(app):
    scheduler = Scheduler(app.runner)
    with app.database.connection_context():
        _only(app, "health_check")
    scheduler.tick(minute(1))
    app.runner.huey.execute(app.runner.huey.dequeue())
    scheduler.tick(minute(1) + datetime.timedelta(seconds=30))
    with app.database.connection_context():
        assert ScheduleJob.get_by_id("health_check").last_status == "SUCCESS"


def test_default_jobs_cannot_be_deleted_only_disabled(client):
    reply = client.delete("/api/schedule/backup_data")
    assert reply.status == 409 and "disable it instead" in reply.json["error"]["message"]
    assert client.get("/api/schedule/backup_data").status == 200


@pytest.mark.parametrize("body, needle", [
    ({"crontab": "\u00b2 * * * *"}, "minute"),
    ({"crontab": "* * * * 7/2"}, "matches no value"),
])
def test_odd_crontabs_are_400(client, body, needle):
    reply = client.patch("/api/schedule/health_check", body)
    assert reply.status == 400 and needle in reply.json["error"]["message"]


def test_args_must_be_strict_json_and_small(client):
    body = b'{"args": [NaN]}'
    reply = client.request("PATCH", "/api/schedule/cleanup_old_data", body=body,
                           headers={"Content-Type": "application/json"})
    assert reply.status == 400
    big = client.patch("/api/schedule/cleanup_old_data", {"args": ["x" * 20000]})
    assert big.status == 400 and "bytes" in big.json["error"]["message"]


def test_crontab_calendar_details():
    sunday_leap_day = Crontab.parse("0 0 29 2 */7")  # Feb 29 AND a Sunday: 2032
    assert sunday_leap_day.next_after(datetime.datetime(2026, 11, 22)) == datetime.datetime(
        2032, 2, 29)
    assert Crontab.parse("0 9 * * 7").weekdays == Crontab.parse("0 9 * * sun").weekdays == {0}
    assert Crontab.parse("0 9 * jan-mar mon-fri").next_after(
        datetime.datetime(2026, 11, 22)) == datetime.datetime(2027, 1, 1, 9)


@pytest.mark.parametrize("expression, message", [
    ("*/" + "9" * 5000 + " * * * *", "minute: step 999999999999… is larger than the field's"),
    ("9" * 5000 + " * * * *", "minute: 999999999999… is out of range 0-59"),
    ("0 1-" + "9" * 5000 + " * * *", "hour: 999999999999… is out of range 0-23"),
])
def test_a_number_of_thousands_of_digits_is_a_crontab_error(expression, message):
    """int() refuses over 4,300 digits with a ValueError: it was a 500."""
    with pytest.raises(CronError, match="^" + re.escape(message)):
        Crontab.parse(expression)
