"""Result expiry: the task queue forgets old results and finished task states."""
from __future__ import annotations

from botlite.runner import current_runner, task


@task(queue="low_priority")
def expire_results() -> dict:
    """Forget results older than the result TTL and finished states past retention."""
    return current_runner().prune()
