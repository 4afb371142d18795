"""The task API's logic: submit, show, list, revoke, retry, purge, queue depths."""
from __future__ import annotations

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
    attempts = state["attempts"] or 0
    return {
        "task_id": state["task_id"],
        "name": state["name"],
        "queue": state["lane"],
        "status": state["status"],
        "result": state["result"],
        "error": state["error"],
        "traceback": state["traceback"],
        "retries": max(attempts - 1, 0),
        "retries_left": state["retries"],
        "attempts": attempts,
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
