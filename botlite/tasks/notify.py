"""Notifications: the inbox row and its optional signed webhook, each once.

The three tasks retry with backoff (first retry after BOTLITE_WEBHOOK_RETRY_DELAY
seconds, applied in ``register_all``) when the webhook receiver fails.
"""
from __future__ import annotations

from botlite import notifications
from botlite.knowledge import sources
from botlite.models import Source
from botlite.knowledge import embedding
from botlite.runner import PermanentError, current_runner, current_task_id, task
from botlite.tasks.context import context
from botlite.wording import counted

ADMIN = "admin"
LIMITS = {"user_id": 100, "title": 500, "message": 10000, "notification_type": 50,
          "dedup_key": 128, "chatbot_id": 64}


def _check(**fields) -> None:
    for name, value in fields.items():
        if value is None and name in ("dedup_key", "chatbot_id"):
            continue
        if not isinstance(value, str) or not value.strip():
            raise PermanentError("%s must be a non-empty string" % name)
        if len(value) > LIMITS[name]:
            raise PermanentError("%s is longer than %d characters" % (name, LIMITS[name]))


def _send(user_id, title, message, notification_type, dedup_key=None, chatbot_id=None,
          task_id=None) -> dict:
    return notifications.send(user_id, title, message, notification_type,
                              dedup_key=dedup_key, chatbot_id=chatbot_id, task_id=task_id,
                              webhook_url=context.webhook_url,
                              webhook_secret=context.webhook_secret,
                              timeout=context.webhook_timeout,
                              allow_private=context.allow_private_urls,
                              claimant=current_task_id())


@task(queue="notifications", retries=3, retry_delay=10, dedup=True, dedup_ttl=300)
def send_notification(user_id: str, title: str, message: str,
                      notification_type: str = "info", dedup_key: str | None = None,
                      chatbot_id: str | None = None) -> dict:
    """Store a notification in the user's inbox and POST it to the webhook (the
    bot's, else BOTLITE_WEBHOOK_URL), each once however often it is retried or
    enqueued (see botlite/notifications.py)."""
    _check(user_id=user_id, title=title, message=message,
           notification_type=notification_type, dedup_key=dedup_key, chatbot_id=chatbot_id)
    return _send(user_id, title, message, notification_type, dedup_key, chatbot_id,
                 current_task_id())


def _current(source_id: str, task_id: str) -> Source | None:
    """The source, unless it is gone or a newer run (another task) owns it."""
    source = Source.get_or_none(Source.id == source_id)
    return source if source is not None and source.task_id == task_id else None


def _what(source: Source) -> tuple[str, str]:
    return ("Website" if source.kind == "website" else "Document",
            source.title or source.filename or source.url)


@task(queue="notifications", retries=3, retry_delay=10)
def notify_source_ready(source_id: str, task_id: str, **_result) -> dict | None:
    """After a successful ingestion run: 'Document ready'; and its chunks'
    vectors queued (`embed_chunks`, when semantic search is on)."""
    source = _current(source_id, task_id)
    if source is None or source.status != "ready":
        return None
    if embedding.current() is not None:
        current_runner().enqueue("embed_chunks")
    what, name = _what(source)
    pages = " from " + counted(source.page_count, "page") if source.kind == "website" else ""
    return _send(ADMIN, "%s ready" % what, "%s is ready: %s%s." % (
        name, counted(source.chunk_count, "chunk"), pages), "source_ready",
        dedup_key="source:%s:%s:ready" % (source_id, task_id), chatbot_id=source.chatbot_id)


@task(queue="notifications", retries=3, retry_delay=10)
def notify_source_failed(source_id: str, task_id: str, error=None) -> dict | None:
    """After the last attempt of an ingestion run failed: 'Document failed'."""
    source = _current(source_id, task_id)
    if source is None:
        return None
    if source.status != "failed":  # a transient error that outlived its retries
        sources.mark_failed(source_id, str(error) if error else "processing failed")
        source = Source.get_by_id(source_id)
    what, name = _what(source)
    return _send(ADMIN, "%s failed" % what, "%s could not be processed: %s" % (
        name, source.error), "source_failed",
        dedup_key="source:%s:%s:failed" % (source_id, task_id), chatbot_id=source.chatbot_id)
