"""Notifications: the in-app inbox, and their optional signed webhook delivery.

One logical notification is one row, delivered at most once by a successful
POST, however often its task is retried or enqueued:

- the row is found again by its ``dedup_key`` when the caller gives one, else
  by the task that stored it (a retry), else by the same content (user, title,
  message, type, bot), still unread, stored within ``SAME_CONTENT_WINDOW`` (the
  same call enqueued twice; a real repeat a while later is a new notification);
- delivery takes a short claim on the row, and the row records ``delivered_at``:
  a retry after a delivered webhook finds it delivered and sends nothing. The
  POST itself is at-least-once: a receiver that acts but answers late (after the
  timeout) or with a 5xx gets it again, with the same ``X-Botlite-Delivery`` id.
"""
from __future__ import annotations

import datetime
import hashlib
import json

import peewee

from botlite import validate
from botlite.errors import NotFound
from botlite.models import Chatbot, Notification
from botlite.timeutil import isoformat, utcnow
from botlite.webhooks import DeliveryFailed, deliver

SAME_CONTENT_WINDOW = datetime.timedelta(minutes=5)
CLAIM_MARGIN = datetime.timedelta(seconds=30)


# -- the inbox -----------------------------------------------------------------------

def list_for(user_id: str | None, limit: str | int | None, unread: str | None = None) -> list[dict]:
    limit = validate.limit(limit)
    query = Notification.select().order_by(Notification.created_at.desc(), Notification.id.desc())
    if user_id:
        query = query.where(Notification.user_id == user_id)
    if validate.flag(unread, "unread"):
        query = query.where(Notification.read == False)  # noqa: E712 (SQL, not Python)
    return [note.to_dict() for note in query.limit(limit)]


def mark_read(notification_id: str) -> dict:
    note = Notification.get_or_none(Notification.id == validate.row_id(notification_id, "notification"))
    if note is None:
        raise NotFound("no notification with id %r" % notification_id)
    Notification.update(read=True, read_at=utcnow()).where(
        (Notification.id == note.id) & (Notification.read == False)).execute()  # noqa: E712
    return Notification.get_by_id(note.id).to_dict()


def mark_all_read(data: dict) -> dict:
    validate.reject_unknown(data, {"user_id"})
    user_id = validate.text(data, "user_id", required=True, max_length=100, allow_blank=False)
    marked = Notification.update(read=True, read_at=utcnow()).where(
        (Notification.user_id == user_id) & (Notification.read == False)).execute()  # noqa: E712
    return {"user_id": user_id, "marked": marked}



# -- storing one logical notification ---------------------------------------------------

def _content_hash(user_id, title, message, notification_type, chatbot_id) -> str:
    canonical = json.dumps([user_id, title, message, notification_type, chatbot_id],
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _existing(dedup_key, task_id, content_hash) -> Notification | None:
    if dedup_key:
        return Notification.get_or_none(Notification.dedup_key == dedup_key)
    if task_id:
        note = Notification.get_or_none(Notification.task_id == task_id)
        if note is not None:
            return note
    return (Notification.select()
            .where((Notification.content_hash == content_hash) &
                   (Notification.created_at >= utcnow() - SAME_CONTENT_WINDOW) &
                   (Notification.read == False) &  # noqa: E712 (a read one is done with)
                   Notification.dedup_key.is_null())
            .order_by(Notification.id).first())


def store(user_id: str, title: str, message: str, notification_type: str = "info", *,
          dedup_key: str | None = None, chatbot_id: str | None = None,
          task_id: str | None = None, webhook: bool = False) -> Notification:
    """The notification's row: found again (see the module doc) or created.
    ``webhook``: a webhook is configured for it, so it starts ``pending``."""
    content_hash = _content_hash(user_id, title, message, notification_type, chatbot_id)
    note = _existing(dedup_key, task_id, content_hash)
    if note is not None:
        return note
    try:
        return Notification.create(
            user_id=user_id, title=title, message=message,
            notification_type=notification_type, dedup_key=dedup_key, chatbot_id=chatbot_id,
            task_id=task_id if not dedup_key else None, content_hash=content_hash,
            webhook_status="pending" if webhook else None)
    except peewee.IntegrityError:  # stored concurrently under the same key
        note = _existing(dedup_key, task_id, content_hash)
        if note is None:
            raise
        return note


# -- webhook delivery -------------------------------------------------------------------

def webhook_target(chatbot_id: str | None, default_url: str | None,
                   default_secret: str | None) -> tuple[str, str, bool] | None:
    """(url, secret, is the bot's own): the bot's own webhook, else the global
    one, else None."""
    if chatbot_id:
        bot = Chatbot.get_or_none(Chatbot.id == chatbot_id)
        if bot is not None and bot.webhook_url and bot.webhook_secret:
            return bot.webhook_url, bot.webhook_secret, True
    if default_url and default_secret:
        return default_url, default_secret, False
    return None


class WebhookRefused(DeliveryFailed):
    """A bot's webhook URL on a private, loopback or link-local address: never
    contacted (only the operator's BOTLITE_WEBHOOK_URL, or
    BOTLITE_ALLOW_PRIVATE_URLS=1, may point inside the network)."""
    permanent = True


def check_webhook_url(url: str, allow_private: bool) -> None:
    """Refuse a bot's webhook URL the way website sources are refused; a host
    lookup that fails for now is a failed delivery the task retries."""
    from botlite.knowledge.crawl import CrawlError, check_url
    try:
        check_url(url, allow_private)
    except CrawlError as exc:
        if not exc.permanent:
            raise DeliveryFailed("webhook host lookup failed: %s" % exc) from None
        raise WebhookRefused("webhook refused: %s" % exc) from None


def payload(note: Notification) -> dict:
    return {"event": "notification", "id": str(note.id), "user_id": note.user_id,
            "title": note.title, "message": note.message,
            "notification_type": note.notification_type, "chatbot_id": note.chatbot_id,
            "created_at": isoformat(note.created_at)}


class DeliveryBusy(DeliveryFailed):
    """Another task is delivering this notification right now."""


def deliver_once(note_id: int, target: tuple[str, str, bool] | None, timeout: float,
                 allow_private: bool = False, claimant: str | None = None) -> str:
    """Deliver the notification's webhook unless it was delivered already.

    ``claimant``: the task delivering it. Its claim keeps other tasks off while it
    lasts, but not a re-run of the same task (the attempt that took it was killed).
    Returns its webhook status ("delivered", or None-like "none" when there is
    no webhook). Raises DeliveryFailed (the task retries with backoff).
    """
    note = Notification.get_by_id(note_id)
    if note.delivered_at is not None:
        return "delivered"
    if target is None:
        if note.webhook_status is not None:
            Notification.update(webhook_status=None).where(Notification.id == note.id).execute()
        return "none"
    now = utcnow()
    claim = now + datetime.timedelta(seconds=timeout) + CLAIM_MARGIN
    free = Notification.delivery_claimed_until.is_null() | \
        (Notification.delivery_claimed_until < now)
    if claimant is not None:
        free |= Notification.delivery_claimed_by == claimant
    claimed = Notification.update(
        delivery_claimed_until=claim, delivery_claimed_by=claimant,
        delivery_attempts=Notification.delivery_attempts + 1,
        webhook_status="pending").where(
        (Notification.id == note.id) & Notification.delivered_at.is_null() & free).execute()
    if not claimed:
        if Notification.get_by_id(note.id).delivered_at is not None:
            return "delivered"
        raise DeliveryBusy("another task is delivering notification %s" % note.id)
    url, secret, own = target
    try:
        if own:
            check_webhook_url(url, allow_private)
        deliver(url, secret, payload(note), str(note.id), timeout,
                allow_private=allow_private or not own)
    except DeliveryFailed as exc:
        Notification.update(webhook_status="failed", delivery_error=str(exc),
                            delivery_claimed_until=None, delivery_claimed_by=None).where(
            Notification.id == note.id).execute()
        raise
    except BaseException:  # anything else: free the claim so the retry can deliver
        Notification.update(delivery_claimed_until=None, delivery_claimed_by=None).where(
            Notification.id == note.id).execute()
        raise
    Notification.update(webhook_status="delivered", delivered_at=utcnow(),
                        delivery_error=None, delivery_claimed_until=None,
                        delivery_claimed_by=None).where(
        Notification.id == note.id).execute()
    return "delivered"


def send(user_id: str, title: str, message: str, notification_type: str = "info", *,
         dedup_key: str | None = None, chatbot_id: str | None = None,
         task_id: str | None = None, webhook_url: str | None = None,
         webhook_secret: str | None = None, timeout: float = 10.0,
         allow_private: bool = False, claimant: str | None = None) -> dict:
    """Store the notification once and deliver its webhook once (if any);
    ``claimant``: the task doing it (see deliver_once)."""
    target = webhook_target(chatbot_id, webhook_url, webhook_secret)
    note = store(user_id, title, message, notification_type, dedup_key=dedup_key,
                 chatbot_id=chatbot_id, task_id=task_id, webhook=target is not None)
    status = deliver_once(note.id, target, timeout, allow_private, claimant)
    return {"notification_id": str(note.id), "webhook": status}
