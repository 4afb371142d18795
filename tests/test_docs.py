"""The docs list every setting, command, flag and endpoint the code has."""
import os
import re

import pytest

from botlite.cli import build_parser
from botlite.settings import SETTINGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_documented(setting):
    operations, readme = _read("docs", "operations.md"), _read("README.md")
    assert "`%s`" % setting.env in operations
    assert setting.env in readme
    if setting.flag:
        assert "`%s`" % setting.flag in operations


def _flags(parser):
    return [flag for action in parser._actions for flag in action.option_strings
            if flag.startswith("--") and flag != "--help"]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_and_its_flags_are_documented(command):
    operations = _read("docs", "operations.md")
    heading = "### `python -m botlite %s`" % command
    assert heading in operations
    assert "`python -m botlite %s" % command in _read("README.md")
    section = operations.split(heading)[1].split("\n### ")[0].split("\n## ")[0]
    parser = _subcommands()[command]
    for flag in _flags(parser):
        assert flag in section, "%s %s is not documented" % (command, flag)
    nested = [a for a in parser._actions if a.dest == "action"]
    for action, sub in (nested[0].choices.items() if nested else ()):
        assert "python -m botlite %s %s" % (command, action) in section
        for flag in _flags(sub):
            assert flag in section, "%s %s %s is not documented" % (command, action, flag)


def _doc_name(param):
    """How docs/api.md names a path parameter (the contract's names)."""
    return {"bot_id": "bot", "task_id": "task_id", "queue": "queue"}.get(
        param, "id" if param.endswith("_id") else param)


def test_every_route_is_documented(app):
    from botlite.web.app import create_app
    wsgi = create_app(app)
    api = _read("docs", "api.md")
    while not hasattr(wsgi, "routes"):  # under the WSGI middlewares
        wsgi = wsgi.wsgi
    for route in wsgi.routes:
        documented = re.sub(r"<(\w+)(:[^>]*)?>", lambda m: "{%s}" % _doc_name(m.group(1)),
                            route.rule)
        documented = documented.replace("{filename}", "…")
        assert "%s %s" % (route.method, documented) in api or \
            ("`%s %s" % (route.method, documented)) in api, \
            "%s %s is not in docs/api.md" % (route.method, route.rule)


def _error_codes():
    """Every (status, code) an API error can carry: each error class raised with
    its own code, or with a ``code=`` written at the raise."""
    import ast

    from botlite import errors
    classes = {name: cls for name, cls in vars(errors).items()
               if isinstance(cls, type) and issubclass(cls, errors.BotliteError)
               and cls is not errors.BotliteError}
    found = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "botlite")):
        for name in files:
            if not name.endswith(".py"):
                continue
            tree = ast.parse(_read(folder, name))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if called not in classes:
                    continue
                code = next((k.value.value for k in node.keywords if k.arg == "code"
                             and isinstance(k.value, ast.Constant)), classes[called].code)
                found.add((classes[called].status, code))
    return sorted(found)


def test_every_error_code_is_in_the_errors_table():
    from botlite.errors import STATUS_CODES
    api = _read("docs", "api.md")
    # Raised by botlite, and each status's code for errors bottle itself answers.
    codes = sorted(set(_error_codes()) | set(STATUS_CODES.items()))
    assert ("400", "invalid_field") in [(str(s), c) for s, c in codes]
    for status, code in codes:
        assert "| %d | `%s` |" % (status, code) in api, \
            "%d %s is not in the errors table of docs/api.md" % (status, code)


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join(_read("README.md").splitlines()[:25])
    assert "pip install -e . && python -m botlite serve" in first_screen
    assert 'pip install -e ".[test]" && python -m pytest' in first_screen


def test_ci_runs_the_readme_test_command():
    ci = _read(".ci", "run")
    assert "BOTLITE_TEST_SERVICES=required" in ci
    assert 'pip install --quiet -e ".[test]"' in ci
    assert ci.strip().splitlines()[-1] == "python -m pytest"
