"""A full or read-only disk under the data directory: the API answers 507 / 503 with
the JSON error (not 500), /healthz says so, chat turns' analytics actions wait and
are queued once there is room, the CLI says what to do, and nothing stored is lost.

The data directory is on a small tmpfs mounted by the test (root only: CI runs as
root; elsewhere the tests skip), filled with a filler file, then freed."""
import errno
import logging
import os
import signal
import sqlite3
import subprocess
import threading

import peewee
import pytest
import requests

from botlite import errors
from botlite.app import Botlite
from botlite.chat import turnlog
from botlite.cli import main
from botlite.models import Source, UserAction
from botlite.settings import load_settings
from botlite.web.app import create_app
from conftest import SERVICES_REQUIRED, WsgiClient, wait_for

DOCUMENT = b"Standard shipping takes three to five working days within the EU.\n" * 40


def _run(*command):
    return subprocess.run(command, capture_output=True, text=True)


def _mount_tmpfs(path, size):
    os.makedirs(path)
    reason = None
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root (CI runs these tests as root)"
    else:
        done = _run("mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path)
        if done.returncode:
            reason = "cannot mount a tmpfs here: %s" % done.stderr.strip()
    if reason is not None:
        if SERVICES_REQUIRED:
            pytest.fail(reason + " (BOTLITE_TEST_SERVICES=required)")
        pytest.skip(reason)


class SmallDisk:
    """A tmpfs at ``path``; `fill` writes a filler file until it is full."""

    def __init__(self, path):
        self.path = path
        self.data_dir = os.path.join(path, "data")
        self.fillers = []

    def fill(self):
        filler = os.path.join(self.path, "filler-%d" % len(self.fillers))
        self.fillers.append(filler)
        with open(filler, "wb", buffering=0) as handle:
            with pytest.raises(OSError) as full:
                while True:
                    handle.write(b"\0" * 65536)
        assert full.value.errno == errno.ENOSPC
        assert errors.disk_is_full(self.data_dir)

    def free(self):
        while self.fillers:
            os.unlink(self.fillers.pop())


@pytest.fixture
def small_disk(tmp_path):
    disk = SmallDisk(str(tmp_path / "disk"))
    _mount_tmpfs(disk.path, "16m")
    try:
        yield disk
    finally:
        if _run("umount", "-R", disk.path).returncode:
            _run("umount", "-R", "-l", disk.path)


def _open(settings):
    app = Botlite.open(load_settings(settings, environ={}))
    return app, WsgiClient(create_app(app), token=app.token)


@pytest.fixture
def full_app(small_disk):
    """An app whose data directory, app database and queue are on the small disk."""
    app, client = _open({"data_dir": small_disk.data_dir})
    yield app, client
    app.close()


@pytest.fixture
def queue_on_small_disk(small_disk, tmp_path):
    """An app whose queue (in the data directory) is on the small disk, while its app
    database is on the roomy one: chat turns are written, their actions not queued."""
    app, client = _open({"data_dir": small_disk.data_dir,
                         "database_url": "sqlite:///%s" % (tmp_path / "app.db")})
    yield app, client
    app.close()


def _truncate_wal(path):
    """Give the WAL's pages back to the disk: once it is full, every commit needs
    new ones (a WAL reused after a checkpoint could take a few writes still)."""
    with sqlite3.connect(path) as conn:
        busy, _, _ = conn.execute("pragma wal_checkpoint(TRUNCATE)").fetchone()
    conn.close()
    assert busy == 0


def _truncate_wals(app):
    for url in (app.settings.database_url, app.settings.broker_url):
        if url.startswith("sqlite:///") and os.path.exists(url[len("sqlite:///"):]):
            _truncate_wal(url[len("sqlite:///"):])


def _integrity(path):
    with sqlite3.connect(path) as conn:
        result = conn.execute("pragma integrity_check").fetchall()
    conn.close()
    return result


def _multipart(filename, content):
    boundary = "botlite-storage-test"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: text/plain\r\n\r\n") % (boundary, filename)).encode() + content + \
        ("\r\n--%s--\r\n" % boundary).encode()
    return body, {"Content-Type": "multipart/form-data; boundary=%s" % boundary}


def _upload(client, filename, content):
    body, headers = _multipart(filename, content)
    return client.request("POST", "/api/chatbots/default/sources", body=body, headers=headers)


def _error(response, status, code):
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json) == {"error"} and set(response.json["error"]) == {"code", "message"}
    assert response.json["error"]["code"] == code
    return response.json["error"]["message"]


def _chat(client, text, session="storage-test"):
    reply = client.post("/chatbot/message/", json_body={"message": text, "session_id": session},
                        auth=False)
    assert reply.status == 200, reply.body
    return reply.json["message_id"]


def _source_ready(client, source_id):
    source = client.get("/api/sources/" + source_id).json
    assert source["status"] != "failed", source
    return source if source["status"] == "ready" else None


def _incoming(data_dir):
    uploads = os.path.join(data_dir, "uploads")
    return [name for name in os.listdir(uploads) if name.startswith(".incoming-")]


def _actions_recorded(app, message_ids):
    with app.database.connection_context():
        return UserAction.select().where(UserAction.message_id.in_(message_ids) &
                                         (UserAction.action == "message")).count()


def _no_errors_logged(caplog):
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR and
           r.name.startswith("botlite")]
    assert not bad, [r.getMessage() for r in bad]


# --- what the errors are ------------------------------------------------------------

def _peewee_wrapped(message):
    try:
        try:
            raise sqlite3.OperationalError(message)
        except sqlite3.OperationalError as exc:
            raise peewee.OperationalError(*exc.args)
    except peewee.OperationalError as exc:
        return exc


@pytest.mark.parametrize("make, problem", [
    (lambda d: OSError(errno.ENOSPC, "No space left on device"), errors.FULL),
    (lambda d: OSError(errno.EDQUOT, "Disk quota exceeded"), errors.FULL),
    (lambda d: sqlite3.OperationalError("database or disk is full"), errors.FULL),
    (lambda d: _peewee_wrapped("database or disk is full"), errors.FULL),
    (lambda d: OSError(errno.EROFS, "Read-only file system"), errors.READ_ONLY),
    (lambda d: PermissionError(errno.EACCES, "Permission denied", os.path.join(d, "x")),
     errors.READ_ONLY),
    (lambda d: _peewee_wrapped("attempt to write a readonly database"), errors.READ_ONLY),
    (lambda d: _peewee_wrapped("disk I/O error"), errors.FAILING),
    (lambda d: PermissionError(errno.EACCES, "Permission denied", "/etc/shadow"), None),
    (lambda d: _peewee_wrapped("database is locked"), None),
    (lambda d: _peewee_wrapped("unable to open database file"), None),
    (lambda d: ValueError("no"), None),
], ids=["enospc", "edquot", "sqlite-full", "peewee-full", "erofs", "eacces-in-data-dir",
        "readonly-db", "io-error-with-room", "eacces-elsewhere", "locked", "cantopen-with-room",
        "a-bug"])
def test_storage_problem_tells_disk_failures_from_bugs(make, problem, tmp_path):
    assert errors.storage_problem(make(str(tmp_path)), str(tmp_path)) == problem


def test_an_io_error_on_a_full_disk_is_a_full_disk(small_disk):
    os.makedirs(small_disk.data_dir)
    small_disk.fill()
    for message in ("disk I/O error", "unable to open database file"):
        assert errors.storage_problem(_peewee_wrapped(message), small_disk.data_dir) == \
            errors.FULL


# --- the API on a full disk ---------------------------------------------------------

def test_a_full_disk_is_507_and_nothing_stored_is_lost(full_app, small_disk, caplog):
    app, client = full_app
    data_dir = small_disk.data_dir
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        first = _upload(client, "shipping.txt", DOCUMENT)
        assert first.status == 202, first.body
        first_id = first.json["source_id"]
        before = wait_for(lambda: _source_ready(client, first_id), message="the first source")
        earlier_reply = _chat(client, "hello")
        notes = wait_for(lambda: client.get("/api/notifications").json["notifications"],
                         message="the 'Document ready' notification")
    finally:
        runtime.stop()
    assert app.turn_log.flush()
    _truncate_wals(app)
    small_disk.fill()
    caplog.set_level(logging.WARNING)

    refused = _upload(client, "returns.txt", b"Returns are free within 30 days.\n" * 4000)
    message = _error(refused, 507, "insufficient_storage")
    assert message == "the disk holding %s is full: free space on it, then retry" % data_dir
    assert _incoming(data_dir) == []
    assert [s["id"] for s in client.get("/api/chatbots/default/sources").json["sources"]] == \
        [first_id]
    _error(client.post("/api/tasks", json_body={"name": "health_check"}), 507,
           "insufficient_storage")
    # A public endpoint: the same status, a message without the path.
    feedback = client.post("/api/messages/%s/feedback" % earlier_reply, auth=False,
                           json_body={"helpful": True, "session_id": "storage-test"})
    assert data_dir not in _error(feedback, 507, "insufficient_storage")

    health = client.get("/healthz", auth=False)
    assert health.status == 503
    assert health.json["storage"] == {"status": "full", "reason": health.json["storage"]["reason"]}
    assert health.json["storage"]["reason"] in health.json["reasons"]
    assert data_dir not in health.text
    detail = client.get("/healthz").json["storage"]
    assert detail["status"] == "full" and detail["free_bytes"] < errors.FULL_BELOW_BYTES

    replies = [_chat(client, "how long does shipping take?") for _ in range(3)]
    warnings = [r for r in caplog.records if r.name == "botlite.web.app"]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 3
    assert "POST /api/tasks: the disk holding %s is full" % data_dir in warnings[1].getMessage()
    _no_errors_logged(caplog)

    small_disk.free()
    wait_for(lambda: client.get("/healthz").json["storage"]["status"] == "ok",
             message="/healthz to see the space")
    assert app.turn_log.flush(timeout=None)
    second = _upload(client, "returns.txt", b"Returns are free within 30 days.\n" * 4000)
    assert second.status == 202, second.body
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        wait_for(lambda: _source_ready(client, second.json["source_id"]),
                 message="the upload after the disk was freed")
        wait_for(lambda: _actions_recorded(app, replies) == 3,
                 message="the analytics actions of the turns chatted while the disk was full")
    finally:
        runtime.stop()

    after = client.get("/api/sources/" + first_id).json
    assert (after["status"], after["chunk_count"]) == (before["status"], before["chunk_count"])
    still = client.get("/api/notifications?limit=100").json["notifications"]
    assert {n["id"] for n in notes} <= {n["id"] for n in still}
    transcript = client.get("/api/chatbots/default/conversations").json["conversations"]
    assert transcript and transcript[0]["message_count"] == 8  # 4 turns, none lost
    with app.database.connection_context():
        assert all(os.path.exists(os.path.join(data_dir, s.stored_path))
                   for s in Source.select())
    for name in ("botlite.db", "queue.db"):
        assert _integrity(os.path.join(data_dir, name)) == [("ok",)]


def test_actions_of_turns_written_while_the_queue_is_full_are_queued_after(
        queue_on_small_disk, small_disk, caplog):
    app, client = queue_on_small_disk
    _truncate_wals(app)
    small_disk.fill()
    caplog.set_level(logging.WARNING)

    replies = []
    for _ in range(3):
        replies.append(_chat(client, "hello"))
        assert app.turn_log.flush()  # the turns are written: the app database has room
    health = client.get("/healthz").json
    assert health["turn_log"] == {"turns_waiting": 0, "actions_waiting": 3,
                                  "actions_dropped": 0}
    assert health["storage"]["status"] == "full"
    refused = [r for r in caplog.records if r.name == "botlite.chat.turnlog"]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING
    assert "could not queue the analytics actions of 1 chat turn(s)" in refused[0].getMessage()
    _no_errors_logged(caplog)

    small_disk.free()
    replies.append(_chat(client, "hello again"))  # its write offers the waiting ones again
    assert app.turn_log.flush()
    wait_for(lambda: client.get("/healthz").json["turn_log"]["actions_waiting"] == 0,
             message="the waiting actions to be queued")
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        wait_for(lambda: _actions_recorded(app, replies) == 4,
                 message="every turn's analytics action")
    finally:
        runtime.stop()
    assert client.get("/healthz").json["turn_log"]["actions_dropped"] == 0


def test_waiting_actions_are_queued_again_without_new_turns(queue_on_small_disk, small_disk,
                                                            monkeypatch):
    monkeypatch.setattr(turnlog, "MAX_QUEUE_RETRY_PAUSE", 0.05)
    app, client = queue_on_small_disk
    _truncate_wals(app)
    small_disk.fill()
    reply = _chat(client, "hello")
    assert app.turn_log.flush()
    assert app.turn_log.actions_waiting == 1
    small_disk.free()
    wait_for(lambda: app.turn_log.actions_waiting == 0, message="the periodic offer")
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        wait_for(lambda: _actions_recorded(app, [reply]) == 1, message="the action")
    finally:
        runtime.stop()


def test_actions_beyond_the_bound_are_counted_as_dropped(queue_on_small_disk, small_disk,
                                                         monkeypatch, caplog):
    monkeypatch.setattr(turnlog, "MAX_UNQUEUED", 2)
    app, client = queue_on_small_disk
    _truncate_wals(app)
    small_disk.fill()
    caplog.set_level(logging.WARNING)
    for _ in range(4):
        _chat(client, "hello")
        assert app.turn_log.flush()
    health = client.get("/healthz").json
    assert health["turn_log"] == {"turns_waiting": 0, "actions_waiting": 2,
                                  "actions_dropped": 2}
    dropped = [r.getMessage() for r in caplog.records if "dropped the analytics" in
               r.getMessage()]
    assert len(dropped) == 2 and all(r.startswith("dropped the analytics actions of 1 ")
                                     for r in dropped)


# --- a read-only disk ---------------------------------------------------------------

def test_a_read_only_data_dir_is_503_storage_read_only(full_app, small_disk):
    app, client = full_app
    data_dir = small_disk.data_dir
    # A read-only bind mount: the open database files keep working, new files fail.
    assert _run("mount", "--bind", data_dir, data_dir).returncode == 0
    assert _run("mount", "-o", "remount,bind,ro", data_dir).returncode == 0
    refused = _upload(client, "returns.txt", b"Returns are free within 30 days.\n")
    message = _error(refused, 503, "storage_read_only")
    assert message.startswith("botlite may not write to %s" % data_dir)
    assert client.get("/healthz").json["storage"]["status"] == "read_only"

    assert _run("umount", data_dir).returncode == 0
    wait_for(lambda: client.get("/healthz").json["storage"]["status"] == "ok",
             message="/healthz to see the disk writable")
    assert _upload(client, "returns.txt", b"Returns are free within 30 days.\n").status == 202


# --- the CLI ------------------------------------------------------------------------

def test_cli_commands_on_a_full_disk_are_one_line_and_exit_2(full_app, small_disk, tmp_path,
                                                             capsys):
    app, _ = full_app
    data_dir = small_disk.data_dir
    document = tmp_path / "shipping.txt"
    document.write_bytes(DOCUMENT)
    _truncate_wals(app)
    small_disk.fill()
    line = "botlite: error: the disk holding %s is full: free space on it, then retry (" \
        % data_dir
    for argv, detail in ((["ingest", str(document), "--no-wait"], "OSError: [Errno 28]"),
                         (["backup"], "backup failed: ")):
        capsys.readouterr()
        assert main(argv + ["--data-dir", data_dir]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(line + detail), err
    assert _incoming(data_dir) == []


def test_cli_start_on_a_full_disk_is_one_line_and_exit_2(small_disk, capsys):
    app, _ = _open({"data_dir": small_disk.data_dir})
    app.close()  # the last connection gone: a new one must create the -wal and -shm files
    small_disk.fill()
    assert main(["queues", "--data-dir", small_disk.data_dir]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("botlite: error: the disk holding %s is full: free space on it, "
                          "then retry (cannot open the " % small_disk.data_dir), err


# --- a real server ------------------------------------------------------------------

def test_serve_on_a_full_disk_answers_507_and_recovers(small_disk):
    from test_serve import ServeProcess

    data_dir = small_disk.data_dir
    server = ServeProcess("--port", "0", "--data-dir", data_dir)
    log = []
    # Drained as it comes: a worker failing on the full disk logs a lot.
    reader = threading.Thread(target=lambda: log.extend(server.proc.stderr), daemon=True)
    reader.start()
    try:
        base, token = server.ready_url().split("/?token=")
        auth = {"Authorization": "Bearer " + token}
        wait_for(lambda: requests.get(base + "/healthz", timeout=5).status_code == 200,
                 message="/healthz 200")
        small_disk.fill()

        def upload():
            return requests.post(base + "/api/chatbots/default/sources", headers=auth,
                                 files={"file": ("a.txt", DOCUMENT)}, timeout=10)
        refused = upload()
        assert refused.status_code == 507
        assert refused.json() == {"error": {"code": "insufficient_storage", "message":
                                            "the disk holding %s is full: free space on it, "
                                            "then retry" % data_dir}}
        health = requests.get(base + "/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["storage"]["status"] == "full"

        small_disk.free()
        wait_for(lambda: requests.get(base + "/healthz", timeout=5).status_code == 200,
                 timeout=30, message="/healthz 200 once the disk has room")
        assert upload().status_code == 202
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
    finally:
        server.stop()
    reader.join(5)
    web = [line for line in log if "botlite.web.app" in line]
    assert len(web) == 1 and " WARNING botlite.web.app: POST /api/chatbots/default/sources: " \
        "the disk holding %s is full" % data_dir in web[0], web
