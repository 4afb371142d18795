"""The log of chat turns, written behind the reply.

A chat turn is answered first and logged right after by one writer thread:
the user's message and the reply (``Message`` rows), the session's
``Conversation`` (created or counted up) go to the database in one transaction
per batch of turns; then each written turn's ``process_user_action`` task is
queued (``on_written``), still off the request path. The
request threads never wait for the database's write lock, and a burst of turns
costs one commit instead of one each.

The guarantees:

- the ``message_id`` a reply carries is chosen before the reply is sent and is
  the id of the bot's ``Message`` row once the turn is written;
- a turn is written as soon as the writer is free, normally within
  milliseconds (`flush` waits for it; the conversation endpoints flush before
  they read, so what a client just said is always in the transcript);
- a write that fails (a locked or unreachable database) is retried with a
  growing pause (up to `MAX_RETRY_PAUSE`); the turns stay queued meanwhile, and
  when `MAX_PENDING` turns wait, new turns wait for room instead of being lost;
- ``close()`` (a graceful stop of ``serve``, ``Botlite.close()``) writes every
  queued turn before it returns; only when the database refuses them for
  `CLOSE_ATTEMPTS` tries in a row are they given up, each logged in full at
  ERROR level;
- a turn that can never be written (its bot was deleted meanwhile) is dropped
  with a WARNING, without holding up the turns around it;
- a written turn whose ``on_written`` the queue refuses (a full disk, the queue
  down) waits in memory (up to `MAX_UNQUEUED` turns; beyond, its action is
  dropped and counted in `actions_dropped`) and is offered again with the next
  written batch or after a pause (up to `MAX_QUEUE_RETRY_PAUSE`); ``close()``
  offers it once more, then logs what is still refused at ERROR level;
- a write refused for lack of disk space (or a read-only disk) is one WARNING
  line when it starts and one INFO line when it ends, not a traceback a try.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import peewee

from botlite.db import write_transaction
from botlite.errors import describe, storage_failure

logger = logging.getLogger(__name__)

MAX_BATCH = 256
"""Turns written in one transaction at most."""
MAX_PENDING = 10000
"""Turns queued at most; more wait for room."""
MAX_RETRY_PAUSE = 2.0
"""Seconds between attempts to write a batch, at most."""
CLOSE_ATTEMPTS = 5
"""Attempts to write what is queued when closing, before giving it up (logged)."""
MAX_UNQUEUED = 10000
"""Written turns whose ``on_written`` waits for the queue, at most."""
MAX_QUEUE_RETRY_PAUSE = 10.0
"""Seconds between offers of the waiting turns to ``on_written``, at most."""


@dataclass
class Turn:
    """One exchange: the user's message and the bot's reply."""
    bot_id: str
    session_id: str
    user_message_id: str
    reply_id: str
    text: str
    reply: str
    intent: str
    answer_source: str
    confidence: float
    sources: list
    latency_ms: float
    at: object  # a naive UTC datetime


class NotQueued(Exception):
    """Raised by ``on_written`` (from the queue's error): the follow-ups of these
    turns, the tail of those it was given, could not be queued yet."""

    def __init__(self, turns: list[Turn]) -> None:
        super().__init__("%d turn(s) not queued" % len(turns))
        self.turns = turns


class TurnLog:
    """Queue turns with `submit`; one thread writes them (see the module's docstring)."""

    def __init__(self, database: peewee.Database,
                 on_written: Callable[[list[Turn]], None] | None = None) -> None:
        self.database = database
        # Called with the turns of each committed write; raises NotQueued (or any
        # error, then all of them are offered again) for those it could not queue.
        self.on_written = on_written
        self._pending: collections.deque[Turn] = collections.deque()
        self._unqueued: collections.deque[Turn] = collections.deque()
        self._dropped = 0     # turns whose on_written was given up
        self._queue_retry_at = 0.0
        self._queue_pause = 0.0
        self._changed = threading.Condition()
        self._submitted = 0   # turns ever queued
        self._done = 0        # of those, written or given up, in order
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- the request side --------------------------------------------------------------

    def submit(self, turn: Turn) -> None:
        """Queue ``turn`` for writing; wait only when `MAX_PENDING` turns are queued.
        After `close`, the turn is written here and now (in the caller's connection)."""
        with self._changed:
            while len(self._pending) >= MAX_PENDING and not self._closing:
                self._changed.wait()
            if not self._closing:
                self._pending.append(turn)
                self._submitted += 1
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="botlite-turn-log",
                                                     daemon=True)
                    self._thread.start()
                self._changed.notify_all()
                return
        self._announce(self._write_each([turn]))
        self._give_up_unqueued()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every turn queued before this call is written (or given
        up); False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            target = self._submitted
            while self._done < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        with self._changed:
            return self._submitted - self._done

    @property
    def actions_waiting(self) -> int:
        """Written turns whose ``on_written`` waits for the queue."""
        with self._changed:
            return len(self._unqueued)

    @property
    def actions_dropped(self) -> int:
        """Written turns whose ``on_written`` was given up (over `MAX_UNQUEUED`, or
        still refused at `close`), since this log was made."""
        with self._changed:
            return self._dropped

    def close(self) -> None:
        """Write every queued turn, then stop the writer. Idempotent."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    # -- the writer thread --------------------------------------------------------------

    def _queue_retry_due(self) -> bool:
        return bool(self._unqueued) and time.monotonic() >= self._queue_retry_at

    def _until_queue_retry(self) -> float | None:
        return max(0.0, self._queue_retry_at - time.monotonic()) if self._unqueued else None

    def _run(self) -> None:
        pause, failures = 0.0, 0
        while True:
            with self._changed:
                while not self._pending and not self._closing and not self._queue_retry_due():
                    self._changed.wait(self._until_queue_retry())
                if not self._pending:
                    closing = self._closing
                    batch = None
                else:
                    if pause:
                        # A failed write: wait before the next attempt (closing cuts it short).
                        self._changed.wait_for(lambda: self._closing, pause)
                    batch = [self._pending[i]
                             for i in range(min(MAX_BATCH, len(self._pending)))]
            if batch is None:  # nothing to write: offer the waiting turns again
                self._announce([])
                if closing:
                    self._give_up_unqueued()
                    return
                continue
            try:
                with self.database.connection_context():
                    written = self._write_batch(batch)
            except Exception as exc:
                failures += 1
                if self._closing and failures >= CLOSE_ATTEMPTS:
                    self._give_up()
                    return
                self._log_write_failure(exc, len(batch), failures)
                pause = min(MAX_RETRY_PAUSE, max(0.05, pause * 2))
                continue
            if failures:
                logger.info("chat turns are logged again (after %d failed attempt(s))",
                            failures)
            pause, failures = 0.0, 0
            self._announce(written)
            with self._changed:
                for _ in batch:
                    self._pending.popleft()
                self._done += len(batch)
                self._changed.notify_all()

    @staticmethod
    def _log_write_failure(exc: Exception, count: int, failures: int) -> None:
        failure = storage_failure(exc)
        if failure is None:
            logger.exception("could not log %d chat turn(s); retrying (attempt %d)",
                             count, failures)
        elif failures == 1:
            logger.warning("could not log %d chat turn(s), the disk refuses writes (%s); "
                           "they wait and are retried until it takes them", count,
                           describe(failure[1]))
        else:
            logger.debug("could not log %d chat turn(s) (attempt %d): %s", count,
                         failures, describe(failure[1]))

    def _give_up(self) -> None:
        with self._changed:
            lost = list(self._pending)
            self._pending.clear()
            self._done += len(lost)
            self._changed.notify_all()
        for turn in lost:
            logger.error("chat turn not logged (database unavailable at shutdown): %s",
                         json.dumps(_as_json(turn)))
        self._give_up_unqueued()

    def _give_up_unqueued(self) -> None:
        """At shutdown: the turns whose ``on_written`` is still refused are logged."""
        with self._changed:
            lost = list(self._unqueued)
            self._unqueued.clear()
            self._dropped += len(lost)
        if lost:
            logger.error("the analytics actions of %d logged chat turn(s) were not queued "
                         "(the queue refused them until shutdown); their reply ids: %s",
                         len(lost), " ".join(turn.reply_id for turn in lost))

    def _write_batch(self, batch: list[Turn]) -> list[Turn]:
        try:
            with write_transaction():
                write_turns(self.database, batch)
            return batch
        except peewee.IntegrityError:
            # Some turn cannot be written (its bot is gone): write the others alone.
            return self._write_each(batch)

    def _write_each(self, turns: list[Turn]) -> list[Turn]:
        written = []
        for turn in turns:
            try:
                with write_transaction():
                    write_turns(self.database, [turn])
                written.append(turn)
            except peewee.IntegrityError as exc:
                logger.warning("chat turn of bot %r, session %r not logged: %s",
                               turn.bot_id, turn.session_id, exc)
        return written

    def _announce(self, turns: list[Turn]) -> None:
        """``on_written`` for the turns that wait for it, then for ``turns``."""
        if self.on_written is None:
            return
        with self._changed:
            waiting = list(self._unqueued)
            self._unqueued.clear()
        offered = waiting + turns
        if not offered:
            return
        try:
            self.on_written(offered)
        except NotQueued as exc:
            self._keep_unqueued(exc.turns, exc.__cause__ or exc, again=bool(waiting))
        except Exception as exc:
            self._keep_unqueued(offered, exc, again=bool(waiting))
        else:
            self._queue_pause = 0.0
            if waiting:
                logger.info("queued the analytics actions of %d chat turn(s) that waited "
                            "for the queue", len(waiting))

    def _keep_unqueued(self, turns: list[Turn], error: BaseException, again: bool) -> None:
        """Keep the turns ``on_written`` refused, to offer them again after a pause."""
        with self._changed:
            room = max(0, MAX_UNQUEUED - len(self._unqueued))
            dropped = max(0, len(turns) - room)
            # Those that waited first (and the others in their order) stay; the newest go.
            self._unqueued.extendleft(reversed(turns[:room]))
            self._dropped += dropped
            total_dropped = self._dropped
            self._queue_pause = min(MAX_QUEUE_RETRY_PAUSE, max(1.0, self._queue_pause * 2))
            self._queue_retry_at = time.monotonic() + self._queue_pause
            self._changed.notify_all()
        if dropped:
            logger.warning("dropped the analytics actions of %d logged chat turn(s): %d "
                           "already wait for the queue (%d dropped so far)", dropped,
                           MAX_UNQUEUED, total_dropped)
        failure = storage_failure(error)
        if again:
            logger.debug("the queue still refuses the analytics actions of %d chat turn(s): "
                         "%s", len(turns), describe(error))
        elif failure is not None:
            logger.warning("could not queue the analytics actions of %d chat turn(s), the "
                           "disk refuses writes (%s); they wait and are queued when it "
                           "takes them", len(turns), describe(failure[1]))
        else:
            logger.error("could not queue the analytics actions of %d chat turn(s); they "
                         "wait and are queued again", len(turns),
                         exc_info=(type(error), error, error.__traceback__))


def _as_json(turn: Turn) -> dict:
    data = dict(turn.__dict__)
    data["at"] = str(turn.at)
    return data


# Plain SQL: this runs for every turn, and peewee's query building would cost
# more than the statements themselves.
_UPSERT_CONVERSATION = (
    "insert into conversation (id, chatbot_id, session_id, message_count, started_at, "
    "last_message_at) values (?, ?, ?, 2, ?, ?) "
    "on conflict (chatbot_id, session_id) do update set "
    "message_count = conversation.message_count + 2, "
    "last_message_at = excluded.last_message_at returning id")
_INSERT_MESSAGE = (
    "insert into message (id, conversation_id, chatbot_id, role, text, intent, "
    "answer_source, confidence, sources, latency_ms, created_at) "
    "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def write_turns(database: peewee.Database, turns: list[Turn]) -> None:
    """Write ``turns`` (in the caller's transaction)."""
    from botlite.models import Message

    def sql(statement: str) -> str:
        return statement if database.param == "?" else statement.replace("?", database.param)

    messages = []
    for turn in turns:
        at = Message.created_at.db_value(turn.at)
        conversation_id = database.execute_sql(sql(_UPSERT_CONVERSATION), (
            uuid.uuid4().hex, turn.bot_id, turn.session_id, at, at)).fetchone()[0]
        messages.append((turn.user_message_id, conversation_id, turn.bot_id, "user",
                         turn.text, None, None, None, None, None, at))
        messages.append((turn.reply_id, conversation_id, turn.bot_id, "bot", turn.reply,
                         turn.intent, turn.answer_source, turn.confidence,
                         json.dumps(turn.sources), turn.latency_ms, at))
    cursor = database.cursor()
    cursor.executemany(sql(_INSERT_MESSAGE), messages)
    from botlite.models import mark_dirty
    mark_dirty((turn.bot_id, turn.at.date()) for turn in turns)
