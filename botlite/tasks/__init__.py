"""The registered task set. Every function in ALL becomes a task of the same name."""
from botlite.tasks.maintenance import health_check

ALL = (health_check,)


def register_all(runner) -> None:
    for fn in ALL:
        runner.register(fn)
