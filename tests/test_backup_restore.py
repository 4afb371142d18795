"""Restore on real files: damaged databases, file identity, copies kept aside,
newer schemas, and refusing while a botlite process runs."""
import contextlib
import json
import os
import queue
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest

from botlite.app import Botlite
from botlite.cli import main
from botlite.models import Chatbot
from test_serve import ServeProcess


@pytest.fixture
def made(settings, capsys):
    """A stopped data dir with a bot 'keeper' and an app backup of it."""
    app = Botlite.open(settings)
    with app.database.connection_context():
        Chatbot.create(id="keeper", name="Keeper")
    app.close()
    assert main(["backup", "--data-dir", settings.data_dir]) == 0
    return json.loads(capsys.readouterr().out)


def _bots(settings):
    app = Botlite.open(settings)
    try:
        with app.database.connection_context():
            return sorted(b.id for b in Chatbot.select())
    finally:
        app.close()


def _restore(settings, file, *extra):
    return main(["restore", file, "--data-dir", settings.data_dir, *extra])


def test_restore_replaces_a_corrupt_database(settings, made, capsys):
    live = os.path.join(settings.data_dir, "botlite.db")
    garbage = b"this is not a database" * 500
    for suffix in ("-wal", "-shm"):  # a closed database's WAL could still hold page 1
        if os.path.exists(live + suffix):
            os.unlink(live + suffix)
    with open(live, "wb") as handle:
        handle.write(garbage)
    # A process of its own, as in real use (this one still knows the old file).
    done = subprocess.run([sys.executable, "-m", "botlite", "restore", made["app"]["file"],
                           "--data-dir", settings.data_dir], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "restored the app database" in done.stdout
    kept = [n for n in os.listdir(settings.data_dir) if ".before-restore-" in n]
    assert len(kept) == 1
    assert open(os.path.join(settings.data_dir, kept[0]), "rb").read() == garbage
    assert not [n for n in os.listdir(settings.data_dir) if n.endswith(".partial")
                or ".restoring" in n]
    conn = sqlite3.connect(live)
    assert [r[0] for r in conn.execute("select id from chatbot order by id")] == [
        "default", "keeper"]
    conn.close()


def test_restore_keeps_the_files_inode_and_mode_and_every_previous_copy(settings, made,
                                                                        capsys):
    live = os.path.join(settings.data_dir, "botlite.db")
    os.chmod(live, 0o640)
    before = os.stat(live)
    assert _restore(settings, made["app"]["file"]) == 0
    assert _restore(settings, made["app"]["file"]) == 0
    after = os.stat(live)
    assert (after.st_ino, stat.S_IMODE(after.st_mode), after.st_uid) == (
        before.st_ino, 0o640, before.st_uid)
    kept = [n for n in os.listdir(settings.data_dir) if ".before-restore-" in n]
    assert len(kept) == 2
    assert _bots(settings) == ["default", "keeper"]


def test_restore_refuses_a_backup_from_a_newer_schema(settings, made, capsys):
    conn = sqlite3.connect(made["app"]["file"])
    with conn:
        conn.execute("insert into botlite_migration (name, applied) values "
                     "('0999_from_the_future', '2030-01-01')")
    conn.close()
    assert _restore(settings, made["app"]["file"]) == 2
    err = capsys.readouterr().err
    assert "newer botlite" in err and "0999_from_the_future" in err and err.count("\n") == 1
    assert not [n for n in os.listdir(settings.data_dir) if ".before-restore" in n]


def test_restore_refuses_when_the_queue_cannot_be_checked_unless_forced(settings, made,
                                                                        capsys):
    unreachable = ["--broker-url", "redis://127.0.0.1:9/0"]
    assert _restore(settings, made["app"]["file"], *unreachable) == 2
    err = capsys.readouterr().err
    assert "--force" in err and err.count("\n") == 1
    assert _restore(settings, made["app"]["file"], *unreachable, "--force") == 0


def test_restore_refuses_while_serve_without_workers_runs(settings, made, capsys):
    server = ServeProcess("--port", "0", "--no-worker", "--data-dir", settings.data_dir)
    try:
        server.ready_url()
        assert _restore(settings, made["app"]["file"]) == 2
        err = capsys.readouterr().err
        assert "botlite is running" in err and err.count("\n") == 1
        assert not [n for n in os.listdir(settings.data_dir) if ".before-restore" in n]
    finally:
        server.stop()
    assert _restore(settings, made["app"]["file"]) == 0


def test_backups_are_readable_by_their_owner_only(settings, made):
    folder = os.path.join(settings.data_dir, "backups")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for kind in ("app", "queue"):
        assert stat.S_IMODE(os.stat(made[kind]["file"]).st_mode) == 0o600


def test_a_backup_of_a_damaged_database_fails_cleanly_and_keeps_the_old_backups(
        settings, made, capsys):
    live = os.path.join(settings.data_dir, "botlite.db")
    import sqlite3
    with sqlite3.connect(live) as connection:  # all pages in the file, none in the WAL
        connection.execute("pragma wal_checkpoint(truncate)")
    connection.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(live + suffix):
            os.unlink(live + suffix)
    with open(live, "r+b") as handle:  # page 1 intact, the rest overwritten
        handle.seek(4096)
        handle.write(b"\xde\xad" * 40000)
    before = sorted(os.listdir(os.path.join(settings.data_dir, "backups")))
    assert main(["backup", "--data-dir", settings.data_dir]) == 2
    err = capsys.readouterr().err
    assert err.startswith("botlite: error: ") and err.count("\n") == 1
    assert "botlite.db" in err
    after = sorted(os.listdir(os.path.join(settings.data_dir, "backups")))
    assert not [n for n in after if n.endswith(".partial")]
    assert set(before) <= set(after)
    # The earlier good backup still restores the bots (in a process of its own, as
    # in real use: this one still knows the damaged file).
    done = subprocess.run([sys.executable, "-m", "botlite", "restore", made["app"]["file"],
                           "--data-dir", settings.data_dir], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    bots = subprocess.run([sys.executable, "-c", "import sqlite3, sys; print(sorted(r[0] for r "
                           "in sqlite3.connect(sys.argv[1]).execute('select id from chatbot')))",
                           live], capture_output=True, text=True, timeout=60)
    assert bots.stdout.strip() == "['default', 'keeper']", bots.stderr


def test_restore_refuses_while_a_worker_runs(settings, made, capsys):
    worker = subprocess.Popen([sys.executable, "-m", "botlite", "worker", "--data-dir",
                               settings.data_dir], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(line) for line in worker.stdout],
                                     lines.put(None)), daemon=True).start()
    try:
        seen = []
        while True:  # it prints this once it holds the running lock and has started
            line = lines.get(timeout=30)
            assert line is not None, "the worker exited early: %s" % "".join(seen)
            seen.append(line)
            if "worker is running" in line:
                break
        assert _restore(settings, made["app"]["file"]) == 2
        err = capsys.readouterr().err
        assert "botlite is running" in err and err.count("\n") == 1
        assert not [n for n in os.listdir(settings.data_dir) if ".before-restore" in n]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert _restore(settings, made["app"]["file"]) == 0
    assert _bots(settings) == ["default", "keeper"]


def test_dashboard_sessions_are_not_restored(settings, capsys):
    from botlite.models import WebSession
    from botlite.web import session
    app = Botlite.open(settings)
    with app.database.connection_context():
        secret = session.create(app.token)  # logged in when the backup is made...
    app.close()
    assert main(["backup", "--data-dir", settings.data_dir]) == 0
    backup = json.loads(capsys.readouterr().out)["app"]["file"]
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("select count(*) from web_session").fetchone()[0] == 1
    assert _restore(settings, backup) == 0  # ...and logged out since, say
    app = Botlite.open(settings)
    try:
        with app.database.connection_context():
            assert WebSession.select().count() == 0
            assert session._valid(app.token, secret) is None
            assert Chatbot.get_or_none(Chatbot.id == "default") is not None
    finally:
        app.close()
