"""The chat endpoints' logic: validate, answer, log the turn and its analytics action."""
from __future__ import annotations

import re
import time
import uuid

from botlite import validate
from botlite.chat import followup
from botlite.chat.answer import reply_blocks
from botlite.chat.engine import ChatEngine
from botlite.chat.llm import LLMClient
from botlite.chat.turnlog import Turn
from botlite.chatbots import get_bot
from botlite.db import execute
from botlite.errors import BadRequest, NotFound, PayloadTooLarge
from botlite.models import DEFAULT_BOT_ID, Chatbot, Conversation, Message
from botlite.timeutil import utcnow

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


def chat(app, data: dict, bot_id: str | None = None, bot: Chatbot | None = None) -> dict:
    """Answer one message; log the turn (behind the reply, see turnlog); return
    the contract's reply. ``bot``: the `chat_bot` row when the caller has read it
    already (the public endpoints' origin and rate-limit check)."""
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
    if bot is None or bot.id != bot_id:
        bot = chat_bot(bot_id)
    memory = app.session_memory
    previous = memory.previous(bot.id, session_id) if followup.is_follow_up(message) else None
    reply = app.chat_engine.reply(bot, message, seed=session_id, previous=previous)
    if reply.question is not None:
        memory.remember(bot.id, session_id, reply.question, reply.sources)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    reply_id = uuid.uuid4().hex
    app.turn_log.submit(Turn(
        bot.id, session_id, uuid.uuid4().hex, reply_id, message, reply.reply, reply.intent,
        reply.answer_source, reply.confidence, reply.sources, latency_ms, utcnow()))
    return {"reply": reply.reply, "blocks": reply_blocks(reply.reply),
            "intent": reply.intent, "answer_source": reply.answer_source,
            "confidence": reply.confidence, "sources": reply.sources,
            "session_id": session_id, "message_id": reply_id}


def chat_bot(bot_id: str) -> Chatbot:
    """The bot with the fields a chat turn and its public-endpoint check need, in one
    plain query; 404 if none."""
    row = execute("select name, fallback_message, allowed_domains, rate_limit_per_minute "
                  "from chatbot where id = ?", (bot_id,)).fetchone()
    if row is None:
        raise NotFound("no chatbot with id %r" % bot_id)
    return Chatbot(id=bot_id, name=row[0], fallback_message=row[1], allowed_domains=row[2],
                   rate_limit_per_minute=row[3])


def conversations(app, bot_id: str, limit: str | int | None) -> list[dict]:
    get_bot(bot_id)
    app.turn_log.flush()
    limit = validate.limit(limit)
    query = (Conversation.select().where(Conversation.chatbot == bot_id)
             .order_by(Conversation.last_message_at.desc()).limit(limit))
    return [c.to_dict() for c in query]


def conversation(app, conversation_id: str) -> dict:
    app.turn_log.flush()
    found = Conversation.get_or_none(Conversation.id == conversation_id)
    if found is None:
        raise NotFound("no conversation with id %r" % conversation_id)
    messages = (Message.select().where(Message.conversation == found.id)
                .order_by(Message.created_at, Message.role.desc()))
    return dict(found.to_dict(), messages=[m.to_dict() for m in messages])
