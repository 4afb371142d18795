"""What task functions need from the running app (set by Botlite.open, and by
init_child in the child process of a hard-time-limited task)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskContext:
    data_dir: str = "."
    allow_private_urls: bool = False


context = TaskContext()


def configure(data_dir: str, allow_private_urls: bool) -> None:
    context.data_dir = data_dir
    context.allow_private_urls = allow_private_urls
