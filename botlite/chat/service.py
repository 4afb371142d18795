"""The chat endpoints' logic: validate, answer, log the turn, hand off analytics."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid

from botlite import validate
from botlite.chat.engine import ChatEngine, Reply
from botlite.chat.llm import LLMClient
from botlite.chatbots import get_bot
from botlite.db import write_transaction
from botlite.errors import BadRequest, NotFound, PayloadTooLarge
from botlite.models import DEFAULT_BOT_ID, Conversation, Message
from botlite.timeutil import utcnow

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def engine_for(settings) -> ChatEngine:
    llm = None
    if settings.llm_url:
        llm = LLMClient(settings.llm_url, settings.llm_model, settings.llm_api_key,
                        timeout=(min(3.0, settings.llm_timeout), settings.llm_timeout))
    return ChatEngine(llm)


def _message(data: dict) -> str:
    if "message" not in data or data["message"] is None:
        raise BadRequest("field 'message' is required", code="invalid_field")
    if not isinstance(data["message"], str):
        raise BadRequest("field 'message' must be a string", code="invalid_field")
    if len(data["message"]) > MAX_MESSAGE_CHARS:
        raise PayloadTooLarge("field 'message' is longer than %d characters"
                              % MAX_MESSAGE_CHARS)
    text = validate.text(data, "message", required=True, max_length=MAX_MESSAGE_CHARS,
                         allow_blank=False)
    return text


def _session(data: dict) -> str:
    session = data.get("session_id")
    if session is None or session == "":
        return uuid.uuid4().hex
    if not isinstance(session, str) or not SESSION_ID.match(session):
        raise BadRequest("field 'session_id' must be 1-64 letters, digits or . _ : -",
                         code="invalid_field")
    return session


def chat(app, data: dict, bot_id: str | None = None) -> dict:
    """Answer one message; log the turn; return the contract's reply."""
    started = time.perf_counter()
    validate.reject_unknown(data, {"message", "session_id", "chatbot_id"})
    message = _message(data)
    session_id = _session(data)
    if bot_id is None:
        bot_id = data.get("chatbot_id", DEFAULT_BOT_ID)
        if not isinstance(bot_id, str) or not bot_id:
            raise BadRequest("field 'chatbot_id' must be a bot id", code="invalid_field")
    elif data.get("chatbot_id") not in (None, bot_id):
        raise BadRequest("field 'chatbot_id' names another bot than the URL",
                         code="invalid_field")
    bot = get_bot(bot_id)
    reply = app.chat_engine.reply(bot, message, seed=session_id)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    message_id = record_turn(bot.id, session_id, message, reply, latency_ms)
    try:
        app.runner.enqueue("process_user_action", [bot.id, session_id, message_id, "message"])
    except Exception:
        logger.exception("could not queue the analytics of message %s", message_id)
    return {"reply": reply.reply, "intent": reply.intent, "answer_source": reply.answer_source,
            "confidence": reply.confidence, "sources": reply.sources,
            "session_id": session_id, "message_id": message_id}


def record_turn(bot_id: str, session_id: str, text: str, reply: Reply,
                latency_ms: float) -> str:
    """Store the user's message and the reply; return the reply's message id."""
    now = utcnow()
    reply_id = uuid.uuid4().hex
    with write_transaction():
        conversation = Conversation.get_or_none((Conversation.chatbot == bot_id) &
                                                (Conversation.session_id == session_id))
        if conversation is None:
            new_id = uuid.uuid4().hex
            created = list(Conversation.insert(
                id=new_id, chatbot=bot_id, session_id=session_id, started_at=now,
                last_message_at=now).on_conflict_ignore().returning(Conversation.id).execute())
            conversation = Conversation(id=new_id) if created else Conversation.get(
                (Conversation.chatbot == bot_id) & (Conversation.session_id == session_id))
        # Both rows with the same keys: insert_many takes its columns from the first.
        common = {"conversation": conversation.id, "chatbot_id": bot_id, "created_at": now}
        Message.insert_many([
            dict(common, id=uuid.uuid4().hex, role="user", text=text, intent=None,
                 answer_source=None, confidence=None, sources=None, latency_ms=None),
            dict(common, id=reply_id, role="bot", text=reply.reply, intent=reply.intent,
                 answer_source=reply.answer_source, confidence=reply.confidence,
                 sources=json.dumps(reply.sources), latency_ms=latency_ms),
        ]).execute()
        Conversation.update(message_count=Conversation.message_count + 2,
                            last_message_at=now).where(
            Conversation.id == conversation.id).execute()
    return reply_id


def conversations(bot_id: str, limit: str | int | None) -> list[dict]:
    get_bot(bot_id)
    limit = validate.limit(limit)
    query = (Conversation.select().where(Conversation.chatbot == bot_id)
             .order_by(Conversation.last_message_at.desc()).limit(limit))
    return [c.to_dict() for c in query]


def conversation(conversation_id: str) -> dict:
    found = Conversation.get_or_none(Conversation.id == conversation_id)
    if found is None:
        raise NotFound("no conversation with id %r" % conversation_id)
    messages = (Message.select().where(Message.conversation == found.id)
                .order_by(Message.created_at, Message.role.desc()))
    return dict(found.to_dict(), messages=[m.to_dict() for m in messages])
