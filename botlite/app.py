"""One running botlite: settings, the app database, the task runner, the token.

``Botlite.open(settings)`` is what `serve`, `worker`, the CLI commands and the
tests start from.
"""
from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import peewee

from botlite import db as dbmod
from botlite.auth import admin_token
from botlite.knowledge import embedding
from botlite.models import DEFAULT_BOT_ID, Chatbot
from botlite.runner import Runtime, TaskRunner
from botlite.runner.runtime import PRUNE_INTERVAL
from botlite.schedule import Scheduler, ensure_default_jobs
from botlite.settings import Settings, ensure_data_dir
from botlite.tasks import context as task_context
from botlite.tasks import register_all

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """botlite cannot start: a database or the queue is unreachable."""


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_default_bot() -> None:
    Chatbot.get_or_create(id=DEFAULT_BOT_ID, defaults={
        "name": "Default bot",
        "description": "The bot that answers POST /chatbot/message/ when no chatbot_id is given.",
    })


def init_child(options: dict) -> None:
    """Prepare a child process that runs one hard-time-limited task."""
    dbmod.bind(dbmod.open_database(options["database_url"]))
    task_context.configure(options["data_dir"], options["allow_private_urls"])


class Botlite:
    def __init__(self, settings: Settings, database: peewee.Database,
                 runner: TaskRunner, token: str) -> None:
        from botlite.chat.service import engine_for
        from botlite.chat.followup import SessionMemory
        from botlite.chat.turnlog import TurnLog

        self.settings = settings
        self.database = database
        self.runner = runner
        self.token = token
        self.chat_engine = engine_for(settings)
        self.turn_log = TurnLog(database, on_written=self._queue_user_actions)
        self.session_memory = SessionMemory()

    def _queue_user_actions(self, turns) -> None:
        """Each logged chat turn's analytics action, as the task process_user_action.
        Those the queue refuses (a full disk) go back to the turn log, which offers
        them again (turnlog.NotQueued); a disk problem is noted for /healthz."""
        from botlite import errors, health
        from botlite.chat.turnlog import NotQueued

        for done, turn in enumerate(turns):
            try:
                self.runner.enqueue("process_user_action",
                                    [turn.bot_id, turn.session_id, turn.reply_id])
            except Exception as exc:
                problem = errors.storage_problem(exc, self.settings.data_dir)
                if problem is not None:
                    health.note_storage_failure(self.settings.data_dir, problem)
                raise NotQueued(turns[done:]) from exc

    @classmethod
    def open(cls, settings: Settings) -> "Botlite":
        ensure_data_dir(settings)
        token = admin_token(settings)
        database = dbmod.bind(dbmod.open_database(settings.database_url))
        try:
            dbmod.migrate(database)
            with database.connection_context():
                ensure_default_bot()
        except peewee.PeeweeException as exc:
            raise StartupError("cannot open the database %s: %s" % (
                redact(settings.database_url), first_line(exc))) from None
        try:
            runner = TaskRunner(settings.broker_url, child_setup=(
                "botlite.app:init_child", {"database_url": settings.database_url,
                                           "data_dir": settings.data_dir,
                                           "allow_private_urls": settings.allow_private_urls}))
            runner.queue_depth()  # Redis connects lazily: prove it answers now
        except Exception as exc:
            raise StartupError("cannot open the task queue %s: %s" % (
                redact(settings.broker_url), first_line(exc))) from None
        register_all(runner, webhook_retry_delay=settings.webhook_retry_delay)
        with database.connection_context():
            ensure_default_jobs(runner)
        task_context.configure(settings.data_dir, settings.allow_private_urls)
        task_context.configure_operations(settings)
        try:
            embedding.configure(settings.semantic, settings.embedding_model,
                                settings.embedding_sha256, settings.data_dir)
        except embedding.EmbeddingUnavailable as exc:
            raise StartupError("BOTLITE_SEMANTIC=on: %s" % exc) from None
        # Each task gets its own connection, opened and closed around it.
        runner.huey.pre_execute("open-db")(lambda task: database.connect(reuse_if_open=True))
        runner.huey.post_execute("close-db")(lambda task, value, exc: database.close())
        return cls(settings, database, runner, token)

    def runtime(self, workers: int | None = None, lanes=None, schedule: bool = True) -> Runtime:
        """Task workers and, with ``schedule``, the scheduler of the database-backed
        schedule (whose expire_results job prunes old results, so the runtime's own
        pruning is off). One-off commands run workers without a scheduler."""
        if schedule:  # what a crash kept from being queued, before the first minute
            self.runner.enqueue("recover_sources")
            if embedding.current() is not None:
                self.runner.enqueue("embed_chunks")
        return Runtime(self.runner, self.settings.workers if workers is None else workers,
                       lanes=lanes, shutdown_timeout=self.settings.shutdown_timeout,
                       prune_interval=None if schedule else PRUNE_INTERVAL,
                       services=[Scheduler(self.runner)] if schedule else [])

    def close(self) -> None:
        self.turn_log.close()
        self.runner.close()
        self.database.close()
