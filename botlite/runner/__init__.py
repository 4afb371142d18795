"""The task runner: Huey on a SQL (or Redis) queue, usable without the rest of botlite."""
from botlite.runner.broker import LANE_PRIORITIES, RetryPolicy, build_huey
from botlite.runner.core import (InvalidTransition, PermanentError, TaskNotFound, TaskRunner,
                                 UnknownQueue, UnknownTask, current_runner, current_task_id,
                                 report_progress, retries_left, stop_requested, task)
from botlite.runner.limits import HardTimeLimitExceeded, SoftTimeLimitExceeded
from botlite.runner.runtime import HEARTBEAT_MAX_AGE, Runtime

__all__ = ["build_huey", "task", "TaskRunner", "UnknownTask", "UnknownQueue", "TaskNotFound",
           "InvalidTransition", "PermanentError", "Runtime", "RetryPolicy", "LANE_PRIORITIES",
           "HEARTBEAT_MAX_AGE", "SoftTimeLimitExceeded", "HardTimeLimitExceeded",
           "report_progress", "stop_requested", "current_runner", "current_task_id",
           "retries_left"]
