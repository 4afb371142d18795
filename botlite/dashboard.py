"""What the dashboard pages show, gathered in one call per page."""
from __future__ import annotations

import datetime
import os
import platform
import sqlite3
import time
from importlib import metadata

from peewee import fn

from botlite import (__version__, analytics, backup, chatbots, db, health, ingest,
                     notifications, operations, schedule, task_control, validate)
from botlite.app import redact
from botlite.chat import admin as chat_admin
from botlite.chat import service as chat_service
from botlite.errors import NotFound
from botlite.knowledge import sources
from botlite.models import (Chatbot, Chunk, Conversation, Faq, Message, Notification, Source,
                            UserAction)
from botlite.timeutil import isoformat
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
    found = list(sources.list_sources(bot.id))
    return {"bot": bot, "sources": found, "vectors": ingest.vector_progress([bot.id]),
            "active": any(s.status in ACTIVE_SOURCE for s in found)}


def source_detail(bot_id: str, source_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    source = sources.get_source(source_id)
    if source.chatbot_id != bot.id:
        raise NotFound("chatbot %r has no source %r" % (bot.id, source_id))
    chunks = list(Chunk.select().where(Chunk.source == source.id)
                  .order_by(Chunk.position).limit(100))
    progress = ingest.vector_progress([bot.id])
    return {"bot": bot, "source": source, "chunks": chunks,
            "vectors": None if progress is None else progress.get(source.id)}


def bot_knowledge_extras(bot_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    return {"bot": bot, "faqs": chat_admin.list_faqs(bot.id),
            "intents": chat_admin.list_intents(bot.id)}


def bot(bot_id: str) -> dict:
    return {"bot": chatbots.get_bot(bot_id)}


def conversations(app, bot_id: str, limit: str | None) -> dict:
    bot = chatbots.get_bot(bot_id)
    return {"bot": bot, "conversations": chat_service.conversations(app, bot.id, limit)}


def transcript(app, bot_id: str, conversation_id: str) -> dict:
    bot = chatbots.get_bot(bot_id)
    conversation = chat_service.conversation(app, conversation_id)
    if conversation["chatbot_id"] != bot.id:
        raise NotFound("chatbot %r has no conversation %r" % (bot.id, conversation_id))
    return {"bot": bot, "conversation": conversation}


def _by_count(counts: dict) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def analytics_report(app, bot_id: str, period: str | None, refresh: str | None) -> dict:
    """The bot's analytics report for the period (kept for an hour unless
    ``refresh``), with its charts."""
    bot = chatbots.get_bot(bot_id)
    app.turn_log.flush()  # the turns answered just now count too
    report = analytics.report_for_request(bot.id, {"period": period or "30d",
                                                   "refresh": refresh or ""})
    days = [(day["day"][5:], day) for day in report["daily"]]
    return {"bot": bot, "report": report, "charts": {
        "daily": charts.bar_chart("Messages per day",
                                  [(label, day["messages"]) for label, day in days]),
        "fallback": charts.line_chart(
            "Share of messages answered with the fallback, per day",
            [(label, round(day["fallback_rate"] * 100, 1) if day["messages"] else None)
             for label, day in days], unit=" %", peak=100),
        "latency": charts.line_chart("Average reply latency per day",
                                     [(label, day["avg_latency_ms"]) for label, day in days],
                                     unit=" ms"),
        "intents": charts.bar_chart("Messages per intent", _by_count(report["intents"])),
        "sources": charts.bar_chart("Answers per source", _by_count(report["answer_sources"])),
    }}


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

def notifications_inbox(unread_only: str | None, limit: str | None) -> dict:
    notes = notifications.list_for(None, limit or 100, unread_only)
    unread_users = sorted({n["user_id"] for n in notes if not n["read"]})
    return {"notifications": notes, "unread_only": bool(unread_only),
            "unread": sum(1 for n in notes if not n["read"]), "unread_users": unread_users}


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


def _backups(data_dir: str) -> list[dict]:
    folder = backup.backup_dir(data_dir)
    if not os.path.isdir(folder):
        return []
    files = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.endswith(".db") and os.path.isfile(path):
            stat = os.stat(path)
            files.append({"name": name, "bytes": stat.st_size, "modified": isoformat(
                datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc))})
    return sorted(files, key=lambda f: f["modified"], reverse=True)


def system(app) -> dict:
    healthy, report = health.check(app, detail=True)  # an admin page: the full last check
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
        "last_check": report.get("last_check"),
        "backups": _backups(app.settings.data_dir),
        "backup_folder": backup.backup_dir(app.settings.data_dir),
        "report": operations.latest_system_report(),
    }
