"""The CLI in-process: main(argv) returns the exit code."""
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


def test_token_prints_the_same_token_every_time(data_dir, capsys):
    assert main(["token", "--data-dir", data_dir]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["token", "--data-dir", data_dir]) == 0
    assert capsys.readouterr().out.strip() == first and len(first) >= 32


@pytest.mark.parametrize("argv, fragment", [
    (["serve", "--port", "abc"], "--port: 'abc' is not a port number"),
    (["serve", "--workers", "many"], "--workers: 'many' is not a whole number"),
    (["serve", "--broker-url", "kafka://x"], "unknown scheme 'kafka'"),
    (["serve", "--data-dir", "/proc/self"], "data directory /proc/self is not writable"),
    (["worker", "--database-url", "mysql://x"], "unknown scheme 'mysql'"),
    (["fly"], "invalid choice: 'fly'"),
    (["serve", "--bogus"], "unrecognized arguments: --bogus"),
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


def test_bad_environment_value_is_reported(monkeypatch, capsys):
    monkeypatch.setenv("BOTLITE_PORT", "eighty")
    assert main(["serve"]) == 2
    assert "BOTLITE_PORT: 'eighty'" in capsys.readouterr().err
