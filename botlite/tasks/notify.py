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


@task(queue="notifications", retries=3, retry_delay=10)
def notify_source(source_id: str, *_outcome, **_details) -> dict | None:
    """The end of an ingestion pipeline: 'Document ready' or 'Document failed'."""
    source = Source.get_or_none(Source.id == source_id)
    if source is None:
        return None
    if source.status not in ("ready", "failed"):
        # Called as the error handler after the last retry of a transient error.
        reason = str(_outcome[0]) if _outcome else "processing failed"
        sources.mark_failed(source_id, reason)
        source = Source.get_by_id(source_id)
    name = source.title or source.filename or source.url
    what = "Website" if source.kind == "website" else "Document"
    if source.status == "ready":
        title = "%s ready" % what
        message = "%s is ready: %d chunks%s." % (
            name, source.chunk_count,
            " from %d pages" % source.page_count if source.kind == "website" else "")
        kind = "source_ready"
    else:
        title = "%s failed" % what
        message = "%s could not be processed: %s" % (name, source.error or "unknown error")
        kind = "source_failed"
    return send_notification(ADMIN, title, message, kind,
                             dedup_key="source:%s:%s:%s" % (source.id, source.task_id, kind))
