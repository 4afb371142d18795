"""The task runner: Huey on a SQL (or Redis) queue, usable without the rest of botlite."""
from botlite.runner.broker import build_huey
from botlite.runner.core import TaskRunner, UnknownTask, task
from botlite.runner.runtime import HEARTBEAT_MAX_AGE, Runtime

__all__ = ["build_huey", "task", "TaskRunner", "UnknownTask", "Runtime", "HEARTBEAT_MAX_AGE"]
