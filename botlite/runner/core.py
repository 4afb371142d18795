"""The task runner: a Huey instance from a URL, its registered tasks, its ledger.

It knows nothing about chat or knowledge; the app registers task functions on it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from huey.api import TaskWrapper

from botlite.runner.broker import build_huey
from botlite.runner.ledger import Ledger, ledger_for
from botlite.runner.serializer import to_json

logger = logging.getLogger(__name__)

TASK_OPTIONS = "_botlite_task_options"


def task(**options: Any) -> Callable[[Callable], Callable]:
    """Mark a plain function as a task with Huey options (retries, priority...).

    The function stays callable as is; ``TaskRunner.register`` binds it to a
    Huey instance under its own name.
    """
    def mark(fn: Callable) -> Callable:
        setattr(fn, TASK_OPTIONS, options)
        return fn
    return mark


class UnknownTask(LookupError):
    """No task of that name is registered."""


class TaskRunner:
    def __init__(self, url: str, name: str = "botlite") -> None:
        self.url = url
        self.huey = build_huey(url, name)
        self.ledger: Ledger = ledger_for(url, self.huey)
        self.tasks: dict[str, TaskWrapper] = {}

    def register(self, fn: Callable) -> TaskWrapper:
        options = getattr(fn, TASK_OPTIONS, {})
        wrapper = self.huey.task(name=fn.__name__, **options)(fn)
        self.tasks[fn.__name__] = wrapper
        return wrapper

    def enqueue(self, name: str, args: list | tuple = (), kwargs: dict | None = None,
                delay: float | None = None) -> str:
        """Put task ``name`` on the queue; return its id.

        Raises UnknownTask for a name that is not registered and TypeError
        when the arguments are not JSON.
        """
        try:
            wrapper = self.tasks[name]
        except KeyError:
            raise UnknownTask(name) from None
        args, kwargs = to_json(list(args)), to_json(kwargs or {})
        if delay:
            result = wrapper.schedule(args=args, kwargs=kwargs, delay=delay)
        else:
            result = wrapper(*args, **kwargs)
        return result.id

    def queue_depth(self) -> dict[str, int]:
        return {"pending": self.huey.pending_count(),
                "scheduled": self.huey.scheduled_count()}

    def close(self) -> None:
        self.ledger.close()
        self.huey.storage.close()
