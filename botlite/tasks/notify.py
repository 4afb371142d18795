"""Notifications (the in-app inbox; webhooks come with the operations work)."""
from __future__ import annotations

import peewee

from botlite.knowledge import sources
from botlite.models import Notification, Source
from botlite.runner import task

ADMIN = "admin"


@task(queue="notifications", retries=3, retry_delay=10)
def send_notification(user_id: str, title: str, message: str,
                      notification_type: str = "info", dedup_key: str | None = None) -> dict:
    """Store a notification once: the same dedup_key is never stored twice."""
    try:
        note = Notification.create(user_id=user_id, title=title, message=message,
                                   notification_type=notification_type, dedup_key=dedup_key)
    except peewee.IntegrityError:
        note = Notification.get(Notification.dedup_key == dedup_key)
    return {"notification_id": str(note.id)}


def _current(source_id: str, task_id: str) -> Source | None:
    """The source, unless it is gone or a newer run (another task) owns it."""
    source = Source.get_or_none(Source.id == source_id)
    return source if source is not None and source.task_id == task_id else None


def _what(source: Source) -> tuple[str, str]:
    return ("Website" if source.kind == "website" else "Document",
            source.title or source.filename or source.url)


@task(queue="notifications", retries=3, retry_delay=10)
def notify_source_ready(source_id: str, task_id: str, **_result) -> dict | None:
    """After a successful ingestion run: 'Document ready'."""
    source = _current(source_id, task_id)
    if source is None or source.status != "ready":
        return None
    what, name = _what(source)
    pages = " from %d pages" % source.page_count if source.kind == "website" else ""
    return send_notification(ADMIN, "%s ready" % what, "%s is ready: %d chunks%s." % (
        name, source.chunk_count, pages), "source_ready",
        dedup_key="source:%s:%s:ready" % (source_id, task_id))


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
    return send_notification(ADMIN, "%s failed" % what, "%s could not be processed: %s" % (
        name, source.error), "source_failed",
        dedup_key="source:%s:%s:failed" % (source_id, task_id))
