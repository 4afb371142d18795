"""Analytics: per-turn user actions, daily rollups, period reports."""
from __future__ import annotations

import peewee

from botlite import analytics
from botlite.db import write_transaction
from botlite.models import Chatbot, UserAction, mark_dirty
from botlite.runner import PermanentError, task
from botlite.timeutil import utcnow

ACTIONS = ("message", "feedback")
FEEDBACK_VALUES = ("helpful", "not_helpful")


def _day(value):
    return value.date() if hasattr(value, "date") else analytics._as_date(value)


@task(queue="high_priority", retries=3, retry_delay=5)
def process_user_action(chatbot_id: str, session_id: str, message_id: str | None,
                        action: str = "message", value: str | None = None) -> dict:
    """Record one action (a message, a feedback) once, even when retried. A second
    feedback on the same reply replaces the first (the visitor changed their mind);
    it still counts on the day it was first given, which update_analytics rebuilds."""
    if action not in ACTIONS:
        raise PermanentError("action must be one of %s" % ", ".join(ACTIONS))
    if action == "feedback" and value not in FEEDBACK_VALUES:
        raise PermanentError("feedback must be one of %s" % ", ".join(FEEDBACK_VALUES))
    try:
        with write_transaction():
            row = UserAction.create(chatbot_id=chatbot_id, session_id=session_id,
                                    message_id=message_id, action=action, value=value)
            if action == "feedback":
                mark_dirty([(chatbot_id, row.created_at.date())])
    except peewee.IntegrityError:  # already recorded by an earlier attempt or feedback
        row = UserAction.get((UserAction.message_id == message_id) &
                             (UserAction.action == action))
        if action == "feedback" and row.value != value:
            with write_transaction():
                UserAction.update(value=value, updated_at=utcnow()).where(
                    UserAction.id == row.id).execute()
                mark_dirty([(chatbot_id, _day(row.created_at))])
    return {"action_id": row.id, "action": action, "value": value}


@task(dedup=True, dedup_ttl=60)
def update_analytics() -> dict:
    """Rebuild the daily rollups of the (bot, day) pairs touched since the last run."""
    return analytics.update_rollups()


@task(dedup=True, dedup_ttl=60)
def generate_analytics_report(chatbot_id: str, period: str = "30d") -> dict:
    """A bot's report for 7d, 30d or 90d (reused for an hour; see analytics.report)."""
    try:
        period = analytics.parse_period(period)
    except analytics.InvalidPeriod as exc:
        raise PermanentError(str(exc)) from None
    if Chatbot.get_or_none(Chatbot.id == chatbot_id) is None:
        raise PermanentError("no chatbot with id %r" % chatbot_id)
    return analytics.report(chatbot_id, period)
