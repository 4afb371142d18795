"""Per-turn user actions, recorded off the request path for analytics."""
from __future__ import annotations

import peewee

from botlite.models import UserAction
from botlite.runner import task


@task(queue="high_priority", retries=3, retry_delay=5)
def process_user_action(chatbot_id: str, session_id: str, message_id: str | None,
                        action: str = "message", value: str | None = None) -> dict:
    """Record one action (a message, a feedback) once, even when retried."""
    try:
        row = UserAction.create(chatbot_id=chatbot_id, session_id=session_id,
                                message_id=message_id, action=action, value=value)
    except peewee.IntegrityError:  # already recorded by an earlier attempt
        row = UserAction.get((UserAction.message_id == message_id) &
                             (UserAction.action == action))
    return {"action_id": row.id}
