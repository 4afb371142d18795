"""What the dashboard pages show, gathered in one call per page."""
from __future__ import annotations

import datetime
import os
import platform
import sqlite3
import time
from importlib import metadata

from peewee import fn

from botlite import (__version__, chatbots, db, health, notifications, schedule, task_control,
                     validate)
from botlite.app import redact
from botlite.chat import admin as chat_admin
from botlite.chat import service as chat_service
from botlite.errors import NotFound
from botlite.knowledge import sources
from botlite.models import (Chatbot, Chunk, Conversation, Faq, Message, Notification, Source,
                            UserAction)
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


# -- schedule -----------------------------------------------------------------------

def schedule_jobs(runner) -> dict:
    """The jobs, each enabled one with its next runs."""
    jobs = schedule.list_jobs(runner)
    for job in jobs:
        job["next_runs"] = schedule.preview(job["crontab"])["next_runs"] if job["enabled"] else []
    return {"jobs": jobs}


# -- notifications and system ---------------------------------------------------------

def notifications_inbox(limit: str | None) -> dict:
    notes = notifications.list_for(None, limit or 100)
    return {"notifications": notes, "unread": sum(1 for n in notes if not n["read"])}


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _file_sizes(url: str) -> int | None:
    """Bytes of a SQLite database with its WAL, or None for a server database."""
    path = db.sqlite_path(url)
    if path is None:
        return None
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def system(app) -> dict:
    healthy, report = health.check(app)
    tables = {model.__name__: model.select().count() for model in
              (Chatbot, Source, Chunk, Faq, Conversation, Message, Notification, UserAction)}
    queues = app.runner.queues()
    return {
        "healthy": healthy, "health": report,
        "versions": [("botlite", __version__), ("Python", platform.python_version()),
                     ("SQLite", sqlite3.sqlite_version)] +
                    [(name, _package_version(name))
                     for name in ("huey", "peewee", "bottle", "waitress")],
        "data_dir": app.settings.data_dir,
        "database": {"url": redact(app.settings.database_url),
                     "bytes": _file_sizes(app.settings.database_url), "tables": tables},
        "broker": {"url": redact(app.settings.broker_url),
                   "bytes": _file_sizes(app.settings.broker_url)},
        "queues": queues["queues"], "dead": queues["dead"],
        "workers": report["workers"],
    }
