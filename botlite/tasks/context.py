"""What task functions need from the running app (set by Botlite.open, and by
init_child in the child process of a hard-time-limited task)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskContext:
    data_dir: str = "."
    allow_private_urls: bool = False
    database_url: str | None = None
    broker_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_timeout: float = 10.0
    backup_keep: int = 7


context = TaskContext()


def configure(data_dir: str, allow_private_urls: bool) -> None:
    context.data_dir = data_dir
    context.allow_private_urls = allow_private_urls


def configure_operations(settings) -> None:
    """The settings the operations tasks (webhooks, backups) read."""
    context.database_url = settings.database_url
    context.broker_url = settings.broker_url
    context.webhook_url = settings.webhook_url
    context.webhook_secret = settings.webhook_secret
    context.webhook_timeout = settings.webhook_timeout
    context.backup_keep = settings.backup_keep
