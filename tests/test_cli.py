"""The CLI in-process: main(argv) returns the exit code."""
import os

import pytest

from botlite.cli import build_parser, main

COMMANDS = ("serve", "worker", "token")


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in _commands():
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: python -m botlite %s" % command in capsys.readouterr().out


def test_token_prints_the_token_botlite_made_every_time(data_dir, capsys):
    from botlite.app import Botlite
    from botlite.settings import load_settings
    Botlite.open(load_settings({"data_dir": data_dir}, environ={})).close()  # as serve does
    made = open(os.path.join(data_dir, "admin_token")).read().strip()
    for _ in range(2):
        assert main(["token", "--data-dir", data_dir]) == 0
        assert capsys.readouterr().out.strip() == made and len(made) >= 32


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_token_of_a_data_dir_botlite_never_ran_in_is_an_error(where, tmp_path, monkeypatch,
                                                               capsys):
    data_dir = tmp_path / "data"
    if where == "empty":
        data_dir.mkdir()
    assert main(["token", "--data-dir", str(data_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("botlite: error: no admin token in %s" % data_dir)
    assert sorted(os.listdir(tmp_path)) == (["data"] if where == "empty" else [])
    assert not (data_dir / "admin_token").exists()  # nothing made up
    monkeypatch.setenv("BOTLITE_ADMIN_TOKEN", "a-token-set-by-the-admin")  # the server's own
    assert main(["token", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip() == "a-token-set-by-the-admin"


@pytest.mark.parametrize("argv, fragment", [
    (["serve", "--port", "abc"], "--port: 'abc' is not a port number"),
    (["serve", "--workers", "many"], "--workers: 'many' is not a whole number"),
    (["serve", "--broker-url", "kafka://x"], "unknown scheme 'kafka'"),
    (["serve", "--data-dir", "/proc/self"], "data directory /proc/self is not writable"),
    (["worker", "--database-url", "mysql://x"], "unknown scheme 'mysql'"),
    (["fly"], "invalid choice: 'fly'"),
    (["serve", "--bogus"], "python -m botlite serve: unrecognized arguments: --bogus"),
    (["queues", "--json"], "python -m botlite queues: unrecognized arguments: --json (see "
                           "python -m botlite queues --help)"),
    (["tasks", "list", "--bogus"], "python -m botlite tasks list: unrecognized arguments"),
    (["tasks", "--json", "list"], "python -m botlite tasks list: --json goes after 'list': "
                                  "python -m botlite tasks list --json"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("botlite: error: ") and fragment in lines[0]
    assert captured.out == ""


def test_unreachable_database_is_one_line(data_dir, capsys):
    url = "postgresql://nobody@127.0.0.1:1/none"
    assert main(["worker", "--data-dir", data_dir, "--database-url", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("botlite: error: cannot open the database")


@pytest.mark.parametrize("command", ["token", "serve", "tasks list", "backup"])
def test_a_short_admin_token_stops_every_command(command, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("BOTLITE_ADMIN_TOKEN", "x" * 15)
    assert main(command.split() + ["--data-dir", data_dir]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith(
        "botlite: error: BOTLITE_ADMIN_TOKEN: the admin token must be at least 16")
    monkeypatch.setenv("BOTLITE_ADMIN_TOKEN", "x" * 16)  # exactly 16 is enough
    assert main(["token", "--data-dir", data_dir]) == 0
    assert capsys.readouterr().out.strip() == "x" * 16


def test_a_short_token_written_into_the_file_is_refused(data_dir, capsys):
    import os
    with open(os.path.join(data_dir, "admin_token"), "w") as handle:
        handle.write("guessable\n")
    os.chmod(os.path.join(data_dir, "admin_token"), 0o600)
    assert main(["token", "--data-dir", data_dir]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "admin_token: the admin token must be at least 16" in err


def test_bad_environment_value_is_reported(monkeypatch, capsys):
    monkeypatch.setenv("BOTLITE_PORT", "eighty")
    assert main(["serve"]) == 2
    assert "BOTLITE_PORT: 'eighty'" in capsys.readouterr().err


def _enqueue(data_dir, name, **kw):
    from botlite.app import Botlite
    from botlite.settings import load_settings
    app = Botlite.open(load_settings({"data_dir": data_dir}, environ={}))
    try:
        return app.runner.enqueue(name, **kw)
    finally:
        app.close()


def test_tasks_list_show_revoke_retry_purge_and_queues(data_dir, capsys):
    import json
    delayed = _enqueue(data_dir, "health_check", delay=3600)
    waiting = _enqueue(data_dir, "health_check")
    assert main(["tasks", "list", "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    assert delayed in out and waiting in out and "PENDING" in out

    assert main(["tasks", "show", waiting, "--data-dir", data_dir]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["task_id"] == waiting and shown["name"] == "health_check"

    assert main(["queues", "--data-dir", data_dir]) == 0
    queues = json.loads(capsys.readouterr().out)
    assert queues["queues"]["default"]["pending"] == 1
    assert queues["queues"]["default"]["scheduled"] == 1

    assert main(["tasks", "revoke", delayed, "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "REVOKED"
    assert main(["tasks", "retry", delayed, "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "PENDING"

    assert main(["tasks", "purge", "default", "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out)["purged"] == 2
    assert main(["tasks", "list", "--status", "revoked", "--json", "--data-dir", data_dir]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


@pytest.mark.parametrize("command", ["tasks", "schedule"])
def test_storage_flags_before_the_action_count_too(command, data_dir, tmp_path, capsys):
    import json
    other = str(tmp_path / "other")
    if command == "tasks":
        task = _enqueue(data_dir, "health_check")
        check = lambda out: [t["task_id"] for t in json.loads(out)] == [task]  # noqa: E731
    else:
        assert main(["schedule", "disable", "health_check", "--data-dir", data_dir]) == 0
        capsys.readouterr()
        check = lambda out: {j["name"]: j["enabled"] for j in  # noqa: E731
                             json.loads(out)}["health_check"] is False
    assert main([command, "--data-dir", data_dir, "list", "--json"]) == 0
    assert check(capsys.readouterr().out)
    # Given before and after the action, the one after counts (the other dir stays unmade).
    assert main([command, "--data-dir", other, "list", "--json", "--data-dir", data_dir]) == 0
    assert check(capsys.readouterr().out)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["tasks", "show", "nope"], "no task with id 'nope'"),
    (["tasks", "list", "--status", "LOST"], "status must be one of"),
    (["worker", "--workers", "0"], "at least 1 worker thread"),
    (["worker", "--queues", ","], "--queues needs queue names"),
    (["worker", "--queues", "documents,bogus"], "--queues: no queue named 'bogus' (queues: "),
    (["tasks", "purge", "nosuchqueue"], "no queue named 'nosuchqueue' (queues: "),
    (["serve", "--host", "256.1.1.1"], "cannot listen on 256.1.1.1"),
])
def test_task_commands_report_bad_input_in_one_line(argv, fragment, data_dir, capsys):
    assert main(argv + ["--data-dir", data_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_tasks_needs_an_action(capsys):
    assert main(["tasks"]) == 2
    assert "the following arguments are required: ACTION" in capsys.readouterr().err


@pytest.mark.parametrize("second, after", [
    ("SIGTERM", 1.5), ("SIGINT", 0.01), ("SIGINT", 5.0)])
def test_a_second_stop_signal_forces_the_stop(monkeypatch, second, after):
    import signal
    from botlite.cli import _StopSignals
    first, now = [], [100.0]
    signals = _StopSignals(lambda: first.append(True), clock=lambda: now[0])

    class SlowRuntime:
        abandoned = False

        def stop(self):
            now[0] += after
            signals._handle(getattr(signal, second), None)  # a second signal while waiting

        def abandon(self):
            self.abandoned = True

    signals._handle(signal.SIGTERM, None)
    assert first == [True] and not signals.forced
    runtime = SlowRuntime()
    assert signals.stop_runtime(runtime) == 1
    assert signals.forced and runtime.abandoned


def test_a_sigterm_delivered_twice_at_once_is_one_stop():
    import signal
    from botlite.cli import _StopSignals
    first, now = [], [100.0]
    signals = _StopSignals(lambda: first.append(True), clock=lambda: now[0])
    signals._handle(signal.SIGTERM, None)  # `timeout`: to the process...
    now[0] += 0.001
    signals._handle(signal.SIGTERM, None)  # ...and to its process group
    assert first == [True] and not signals.forced


def test_one_stop_signal_exits_0():
    from botlite.cli import _StopSignals
    signals = _StopSignals(lambda: None)

    class Runtime:
        def stop(self):
            return True

    assert signals.stop_runtime(Runtime()) == 0


def test_ingest_processes_a_file_itself_and_reports_ready(data_dir, tmp_path, capsys):
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\nThe heron bridge opens at six in the morning.\n")
    assert main(["ingest", str(doc), "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    assert "queued as task" in out and "ready: Guide: 1 chunk\n" in out
    assert main(["ingest", str(doc), "--data-dir", data_dir]) == 0
    assert "already known (duplicate)" in capsys.readouterr().out
    assert main(["chat", "when does the heron bridge open?", "--data-dir", data_dir]) == 0
    answer = capsys.readouterr().out
    assert "six in the morning" in answer and "[knowledge" in answer and "[1] Guide" in answer


def test_ingest_of_an_unreadable_file_exits_1_with_the_reason(data_dir, capsys):
    import os
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "knowledge", "encrypted.pdf")
    assert main(["ingest", fixture, "--data-dir", data_dir]) == 1
    assert "password" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("argv, fragment", [
    (["ingest", "/no/such/file.pdf"], "no such file: /no/such/file.pdf"),
    (["ingest", "/"], "/ is a directory: ingest takes one file (or URL) at a time"),
    (["ingest", "ftp://example.com/"], "ftp://example.com/: only http:// and https:// URLs"),
    (["ingest", "http://127.0.0.1:9/"], "private or reserved address"),
    (["ingest", "HTTP://127.0.0.1:9/"], "private or reserved address"),  # any case
    (["ingest", "README.md", "--bot", "ghost"], "no chatbot with id 'ghost'"),
    (["chat", "hi", "--bot", "ghost"], "no chatbot with id 'ghost'"),
])
def test_ingest_and_chat_bad_input_is_one_line(argv, fragment, data_dir, capsys):
    assert main(argv + ["--data-dir", data_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_ingest_no_wait_only_queues(data_dir, tmp_path, capsys):
    doc = tmp_path / "later.txt"
    doc.write_text("queued for later")
    assert main(["ingest", str(doc), "--no-wait", "--data-dir", data_dir]) == 0
    assert main(["queues", "--data-dir", data_dir]) == 0
    assert '"pending": 1' in capsys.readouterr().out


def test_the_progress_line_says_why_a_run_waits_to_be_tried_again():
    from botlite.cli import _progress_bar
    from botlite.models import Source
    waiting = Source(status="processing", progress_done=0, progress_total=None,
                     error="can't crawl http://docs.example/: timed out (will try again)")
    assert _progress_bar(waiting).endswith(
        "0 processing: can't crawl http://docs.example/: timed out (will try again)")
    failed = Source(status="failed", progress_done=2, progress_total=4, error="corrupt")
    assert _progress_bar(failed) == "[%s%s] 2/4 failed" % ("#" * 15, "." * 15)


@pytest.mark.parametrize("ending", ["/quit\n", ""])  # /quit, or the end of the input
def test_the_repl_on_a_pipe_answers_each_line_and_ends_its_output_with_a_newline(
        data_dir, ending):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "botlite", "chat", "--data-dir", data_dir],
                          input="hello\n\n" + ending, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("you> ") == 3 and "[intent, greeting" in done.stdout
    assert done.stdout.endswith("you> \n")


@pytest.mark.parametrize("command", ["schedule list", "--help"])
def test_output_into_a_pipe_closed_early_is_no_traceback(data_dir, command):
    import subprocess
    import sys
    assert main(["schedule", "list", "--data-dir", data_dir]) == 0  # the databases exist
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a shell has
    where = ["--data-dir", data_dir] if command != "--help" else []
    proc = subprocess.Popen([sys.executable, "-m", "botlite", *command.split(), *where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = proc.stderr.read()
    assert proc.wait(60) == 0 and err == "", err
