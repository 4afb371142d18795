"""What the dashboard pages show, gathered in one call per page."""
from __future__ import annotations

import datetime
import time

from peewee import fn

from botlite import chatbots, task_control, validate
from botlite.chat import admin as chat_admin
from botlite.chat import service as chat_service
from botlite.errors import NotFound
from botlite.knowledge import sources
from botlite.models import Chunk, Conversation, Faq, Message, Source
from botlite.web import charts

ACTIVE_SOURCE = ("pending", "processing")
THROUGHPUT_MINUTES = 30
THROUGHPUT_SAMPLE = 1000


def _counts(model, column) -> dict:
    return dict(model.select(column, fn.COUNT(model.id)).group_by(column).tuples())


def home() -> dict:
    bots = chatbots.list_bots()
    source_counts = _counts(Source, Source.chatbot)
    conversation_counts = _counts(Conversation, Conversation.chatbot)
    faq_counts = _counts(Faq, Faq.chatbot)
    return {"bots": [{"bot": bot, "sources": source_counts.get(bot.id, 0),
                      "faqs": faq_counts.get(bot.id, 0),
                      "conversations": conversation_counts.get(bot.id, 0)} for bot in bots]}


def bot_sources(bot_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    found = sources.list_sources(bot.id)
    return {"bot": bot, "sources": found,
            "active": any(s.status in ACTIVE_SOURCE for s in found)}


def source_detail(bot_id: str, source_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    source = sources.get_source(source_id)
    if source.chatbot_id != bot.id:
        raise NotFound("chatbot %r has no source %r" % (bot.id, source_id))
    chunks = list(Chunk.select().where(Chunk.source == source.id)
                  .order_by(Chunk.position).limit(100))
    return {"bot": bot, "source": source, "chunks": chunks}


def bot_knowledge_extras(bot_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    return {"bot": bot, "faqs": chat_admin.list_faqs(bot.id),
            "intents": chat_admin.list_intents(bot.id)}


def bot(bot_id: str) -> dict:
    return {"bot": chatbots.get_bot(bot_id)}


def conversations(bot_id: str, limit: str | None) -> dict:
    bot = chatbots.get_bot(bot_id)
    return {"bot": bot, "conversations": chat_service.conversations(bot.id, limit)}


def transcript(bot_id: str, conversation_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    conversation = chat_service.conversation(conversation_id)
    if conversation["chatbot_id"] != bot.id:
        raise NotFound("chatbot %r has no conversation %r" % (bot.id, conversation_id))
    return {"bot": bot, "conversation": conversation}


def message_count(bot_id: str) -> int:
    return Message.select().where(Message.chatbot_id == bot_id).count()


# -- tasks ---------------------------------------------------------------------------

def _minute(iso: str | None) -> datetime.datetime | None:
    if not iso:
        return None
    stamp = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return stamp.replace(second=0, microsecond=0)


def throughput_chart(recent: list[dict], now: float | None = None) -> str:
    """Tasks finished per minute over the last THROUGHPUT_MINUTES, by outcome."""
    now_dt = datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc)
    end = now_dt.replace(second=0, microsecond=0)
    minutes = [end - datetime.timedelta(minutes=n) for n in range(THROUGHPUT_MINUTES - 1, -1, -1)]
    index = {minute: i for i, minute in enumerate(minutes)}
    succeeded, failed = [0] * len(minutes), [0] * len(minutes)
    for task in recent:
        i = index.get(_minute(task["finished_at"]))
        if i is None:
            continue
        if task["status"] == "SUCCESS":
            succeeded[i] += 1
        elif task["status"] in ("FAILURE", "REVOKED"):
            failed[i] += 1
    labels = [minute.strftime("%H:%M") for minute in minutes]
    return charts.bar_chart("Tasks finished per minute, last %d minutes (UTC)"
                            % THROUGHPUT_MINUTES, [(label, 0) for label in labels],
                            series=[("succeeded", succeeded), ("failed or revoked", failed)])


def tasks_live(runner) -> dict:
    """The parts of the monitor that refresh themselves: queues and running tasks."""
    queues = runner.queues()
    running = task_control.list_tasks(runner, "STARTED", None, 100)
    return {"queues": queues["queues"], "dead": queues["dead"], "running": running}


def tasks(runner, status: str | None, name: str | None, limit: str | None) -> dict:
    status = (status or "").upper() or None
    name = name or None
    recent = task_control.list_tasks(runner, status, name, validate.limit(limit, default=50))
    sample = task_control.list_tasks(runner, None, None, THROUGHPUT_SAMPLE)
    failed = task_control.list_tasks(runner, "FAILURE", None, 20)
    return dict(tasks_live(runner), recent=recent, failed=failed, status=status or "",
                name=name or "", statuses=task_control.STATUSES,
                task_names=sorted(runner.tasks), throughput=throughput_chart(sample))


def task(runner, task_id: str) -> dict:
    return {"task": task_control.show(runner, task_id)}
