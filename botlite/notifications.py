"""The in-app notification inbox."""
from __future__ import annotations

from botlite import validate
from botlite.errors import NotFound
from botlite.models import Notification


def list_for(user_id: str | None, limit: str | int | None) -> list[dict]:
    limit = validate.limit(limit)
    query = Notification.select().order_by(Notification.created_at.desc(), Notification.id.desc())
    if user_id:
        query = query.where(Notification.user_id == user_id)
    return [note.to_dict() for note in query.limit(limit)]


def mark_read(notification_id: str) -> dict:
    note = Notification.get_or_none(Notification.id == _id(notification_id))
    if note is None:
        raise NotFound("no notification with id %r" % notification_id)
    Notification.update(read=True).where(Notification.id == note.id).execute()
    return Notification.get_by_id(note.id).to_dict()


def _id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NotFound("no notification with id %r" % value) from None
