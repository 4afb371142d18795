"""The task API's logic: submit, show, list, revoke, retry, purge, queue depths."""
from __future__ import annotations

import json

from botlite import validate
from botlite.errors import BadRequest, Conflict, NotFound
from botlite.runner import (InvalidTransition, TaskNotFound, TaskRunner, UnknownQueue,
                            UnknownTask)
from botlite.timeutil import isoformat

STATUSES = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
MAX_DELAY = 30 * 86400


def _iso(timestamp: float | None) -> str | None:
    import datetime
    if timestamp is None:
        return None
    return isoformat(datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc))


def task_view(state: dict) -> dict:
    """A task state as the API shows it."""
    attempts, reruns = state["attempts"] or 0, state.get("reruns") or 0
    return {
        "task_id": state["task_id"],
        "name": state["name"],
        "queue": state["lane"],
        "status": state["status"],
        "result": state["result"],
        "error": state["error"],
        "traceback": state["traceback"],
        # Attempts = the first + retries (after a failure) + re-runs (after its
        # process died or was stopped mid-attempt).
        "retries": max(attempts - 1 - reruns, 0),
        "retries_left": state["retries"],
        "attempts": attempts,
        "reruns": reruns,
        "progress": state["progress"],
        "args": state["args"],
        "kwargs": state["kwargs"],
        "worker": state["worker"],
        "next_attempt_at": _iso(state["next_attempt_at"]),
        "enqueued_at": _iso(state["enqueued_at"]),
        "started_at": _iso(state["started_at"]),
        "finished_at": _iso(state["finished_at"]),
    }


def show(runner: TaskRunner, task_id: str) -> dict:
    try:
        return task_view(runner.state(task_id))
    except TaskNotFound:
        raise NotFound("no task with id %r" % task_id) from None


def list_tasks(runner: TaskRunner, status: str | None, name: str | None,
               limit: str | int | None) -> list[dict]:
    if status:
        status = status.upper()
        if status not in STATUSES:
            raise BadRequest("status must be one of %s" % ", ".join(STATUSES),
                             code="invalid_field")
    limit = validate.limit(limit, maximum=1000)
    return [task_view(s) for s in runner.states(status=status or None, name=name or None,
                                                limit=limit)]


# What a JSON value of each annotated type may be (bool is not a number here).
_JSON_TYPES = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
               float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool),
               list: lambda v: isinstance(v, list), dict: lambda v: isinstance(v, dict),
               type(None): lambda v: v is None}
_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string",
               bool: "true or false", list: "a list", dict: "an object", type(None): "null"}


def check_call(fn, args: list, kwargs: dict) -> None:
    """Raise ValueError, saying which argument and why, unless ``fn`` accepts
    ``args`` and ``kwargs`` by count, by name and, where ``fn`` annotates them
    with JSON's types (int, float, str, bool, list, dict, None and their unions),
    by type: a task queued with arguments it cannot take would only fail later,
    as a dead letter."""
    import inspect
    import types
    import typing

    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not evaluate: counts only
        return
    for name, value in bound.arguments.items():
        hint = hints.get(name)
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
            typing.get_origin(hint) is typing.Union else (hint,)
        if not options or not all(option in _JSON_TYPES for option in options):
            continue  # not annotated, or not with JSON's types: anything goes
        if not any(_JSON_TYPES[option](value) for option in options):
            raise ValueError("argument %r must be %s, not %s" % (
                name, " or ".join(_TYPE_NAMES[option] for option in options),
                json.dumps(value)[:40]))


def submit(runner: TaskRunner, data: dict) -> dict:
    validate.reject_unknown(data, {"name", "args", "kwargs", "delay"})
    name = validate.text(data, "name", required=True, max_length=100, allow_blank=False)
    if name not in runner.tasks:
        raise BadRequest("unknown task %r (registered: %s)" % (
            name, ", ".join(sorted(runner.tasks))), code="unknown_task")
    args = data.get("args", [])
    if not isinstance(args, list):
        raise BadRequest("field 'args' must be a JSON list", code="invalid_field")
    kwargs = data.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise BadRequest("field 'kwargs' must be a JSON object", code="invalid_field")
    spec = runner.specs.get(name)
    try:
        if spec is not None:
            check_call(spec.fn, args, kwargs)
    except ValueError as exc:
        raise BadRequest("the arguments do not fit task %s: %s" % (name, exc),
                         code="invalid_field") from None
    delay = data.get("delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float))
                              or not 0 <= delay <= MAX_DELAY):
        raise BadRequest("field 'delay' must be a number of seconds from 0 to %d" % MAX_DELAY,
                         code="invalid_field")
    try:
        task_id = runner.enqueue(name, args, kwargs, delay=delay)
    except UnknownTask:
        raise BadRequest("unknown task %r" % name, code="unknown_task") from None
    return {"task_id": task_id, "status": runner.state(task_id)["status"]}


def revoke(runner: TaskRunner, task_id: str) -> dict:
    try:
        return task_view(runner.revoke(task_id))
    except TaskNotFound:
        raise NotFound("no task with id %r" % task_id) from None
    except InvalidTransition as exc:
        raise Conflict(str(exc)) from None


def retry(runner: TaskRunner, task_id: str) -> dict:
    try:
        return task_view(runner.retry(task_id))
    except TaskNotFound:
        raise NotFound("no task with id %r" % task_id) from None
    except InvalidTransition as exc:
        raise Conflict(str(exc)) from None
    except UnknownTask as exc:
        raise Conflict("task %s is no longer registered" % exc) from None


def purge(runner: TaskRunner, queue: str) -> dict:
    try:
        return {"queue": queue, "purged": runner.purge(queue)}
    except UnknownQueue:
        raise NotFound("no queue named %r (queues: %s)"
                       % (queue, ", ".join(runner.lane_names()))) from None
