"""Huey storages extended with what botlite's runner needs, on SQLite, PostgreSQL
and Redis alike:

- claims: ``claim()`` marks a queued task as taken by a worker process instead of
  deleting it; ``ack()`` deletes it when the attempt is over. A worker that dies
  leaves its claims behind, and ``release_claims()`` puts them back in the queue.
- lanes: every queued task belongs to a named queue (``documents``, ``websites``…);
  workers may claim from some lanes only, and each lane has a priority.
- task states: one row (or hash) per task id with status, timestamps, attempts,
  error, traceback, result and progress, kept beside the queue so the claim and
  the final state change are written together.
- locks with a TTL that expire by themselves (``put_if_empty(key, value, ttl)``).
- worker heartbeats.

The Huey API (enqueue/dequeue, schedule, key-value data, counters) keeps working,
so Huey's own scheduler, revocation, locks and pipelines run unchanged on top.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from typing import Callable, Iterable

from huey.constants import EmptyData
from huey.storage import PostgresStorage, PriorityRedisExpireStorage, SqliteStorage

FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
SCHEMA_LOCK_KEY = 0x626f746c697465  # "botlite"
# The queue schema's version, kept in botlite_schema; `migrate()` brings an older
# queue up to it at start. Version 2 added botlite_state.reruns.
SCHEMA_VERSION = 2
AUTOCHECKPOINT_PAGES = 20000  # ~80 MB of WAL


# Keys stored with a TTL (Huey's task locks, botlite's dedup keys) contain this.
LOCK_MARK = ".lock."


def lock_name(kind: str, key: str) -> str:
    """The TTL lock of a dedup ``key``: ``dedup`` (held from enqueue while the task
    is pending, running or recently succeeded) or ``run`` (held by a running attempt)."""
    return "%s%s:%s" % (LOCK_MARK, kind, key)


STATE_COLUMNS = (
    "task_id", "name", "lane", "status", "args", "kwargs", "result", "error", "traceback",
    "retries", "attempts", "reruns", "progress", "next_attempt_at", "enqueued_at",
    "started_at", "finished_at", "updated_at", "dedup_key", "worker")
JSON_COLUMNS = ("args", "kwargs", "result", "progress")

# describe(data) -> {"task_id", "name", "lane", "args", "kwargs", "retries"}
Describe = Callable[[bytes], dict]


def _row_to_state(row: Iterable) -> dict:
    state = dict(zip(STATE_COLUMNS, row))
    for column in JSON_COLUMNS:
        if state[column] is not None:
            state[column] = json.loads(state[column])
    return state


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def encode_outcome(fields: dict) -> dict:
    """State fields as stored: JSON columns encoded, ``updated_at`` set."""
    encoded = dict(fields, updated_at=time.time())
    for column in JSON_COLUMNS:
        if column in encoded:
            encoded[column] = _json(encoded[column])
    return encoded


LOCK_TAKEOVER_TRIES = 5
"""Rounds of `_take_dedup_lock`'s compare-and-set before the lock counts as held."""


class SqlRunnerMixin:
    """Claims, lanes, states, TTL locks and heartbeats in SQL.

    Subclasses set ``ph`` (the driver's parameter placeholder), ``t_kv`` (Huey's
    key-value table), ``skip_locked``, ``insert_ignore`` and ``upsert_worker``.
    """
    ph = "?"
    describe: Describe
    t_queue = "botlite_queue"
    t_state = "botlite_state"
    t_lock = "botlite_lock"
    t_worker = "botlite_worker"

    def q(self, sql: str) -> str:
        """SQL written with ? placeholders, in this driver's style."""
        return sql if self.ph == "?" else sql.replace("?", self.ph)

    def _exec(self, sql: str, params=(), fetch: bool = False):
        """One statement, in autocommit mode (atomic on its own)."""
        return self.sql(self.q(sql), params, results=fetch)

    # -- the schema --------------------------------------------------------------
    #
    # Schema changes happen only in `migrate()`, which `TaskRunner` runs where a
    # process starts (never in a task's child process): a current schema costs two
    # catalog reads and no DDL, so nothing takes a table lock on the hot path.

    # Columns added since the first botlite queue: (table, column, definition).
    UPGRADES = (("botlite_queue", "available_at", "{real} not null default 0"),
                ("botlite_state", "reruns", "integer not null default 0"))
    real = "real"

    def schema_version(self) -> int:
        """The version recorded in botlite_schema (0: none yet, or no tables)."""
        if not self._table_exists("botlite_schema"):
            return 0
        rows = self._exec("select max(version) from botlite_schema", fetch=True)
        return rows[0][0] or 0

    def migrate(self) -> bool:
        """Create the queue's tables or bring them up to SCHEMA_VERSION, under a lock
        other processes wait on. Returns whether anything had to change."""
        if self.schema_version() >= SCHEMA_VERSION:
            return False
        with self._schema_transaction() as curs:
            for sql in self.ddl:
                curs.execute(sql)
            for table, column, definition in self.UPGRADES:
                if column not in self._columns(curs, table):
                    curs.execute("alter table %s add column %s %s" % (
                        table, column, definition.format(real=self.real)))
            curs.execute("delete from botlite_schema")
            curs.execute(self.q("insert into botlite_schema (version) values (?)"),
                         (SCHEMA_VERSION,))
        return True

    def initialize_schema(self):
        self.migrate()

    # -- the queue, with claims ------------------------------------------------
    #
    # A row is available from ``available_at`` (0: now): delayed tasks and
    # retries wait in the same table as everything else, so a retry is written
    # in the same transaction that ends the failed attempt, and nothing lives
    # outside the claim protocol.

    def enqueue(self, data, priority=None):
        meta = self.describe(data)
        self._enqueue(data, priority, meta, meta.get("available_at") or 0.0)

    def _enqueue(self, data, priority, meta: dict, available_at: float) -> None:
        with self.db(commit=True) as curs:
            self._insert_queued(curs, data, priority, meta, time.time(), available_at)

    def _insert_queued(self, curs, data, priority, meta: dict, now: float,
                       available_at: float) -> None:
        """The queue row and its PENDING state (statements of the caller's transaction)."""
        curs.execute(self.q(
            "insert into %s (queue, lane, priority, task_id, data, enqueued_at, "
            "available_at) values (?, ?, ?, ?, ?, ?, ?)" % self.t_queue),
            (self.name, meta["lane"], priority or 0, meta["task_id"], self._blob(data), now,
             available_at))
        curs.execute(self.q(self._upsert_enqueued_state()),
                     self._enqueued_state_params(meta, now, available_at))

    def enqueue_task(self, data, priority=None, dedup_key: str | None = None,
                     dedup_ttl: float = 0.0, state: dict | None = None) -> str | None:
        """Queue ``data`` in one transaction with what belongs to it: with
        ``dedup_key``, the dedup lock naming its task (kept ``dedup_ttl`` seconds)
        and the key in its state; ``state``, fields written on its state (a retry
        resets it to PENDING). A crash leaves all of it or none of it.

        Returns None when queued, or the id of the identical task that holds the
        dedup lock (pending, running, retrying, or succeeded within the TTL): then
        nothing is written. A lock naming a task that failed, was revoked, or has
        no state (left by a crash of an older botlite) is taken over."""
        meta = self.describe(data)
        now = time.time()
        with self.db(commit=True) as curs:
            if dedup_key is not None:
                holder = self._take_dedup_lock(curs, lock_name("dedup", dedup_key),
                                               meta["task_id"], dedup_ttl, now)
                if holder is not None:
                    return holder
            self._insert_queued(curs, data, priority, meta, now,
                                meta.get("available_at") or 0.0)
            fields = dict(state or {})
            if dedup_key is not None:
                fields["dedup_key"] = dedup_key
            if fields:
                sets, values = self._outcome_sets(fields)
                curs.execute(self.q("update %s set %s where queue = ? and task_id = ?"
                                    % (self.t_state, sets)),
                             values + (self.name, meta["task_id"]))
            self._notify_enqueued(curs)
        return None

    def _notify_enqueued(self, curs) -> None:
        """Wake blocked workers when the transaction commits (PostgreSQL)."""

    def _take_dedup_lock(self, curs, lock: str, task_id: str, ttl: float,
                         now: float) -> str | None:
        """In the caller's transaction: make ``lock`` name ``task_id``; or return
        the live task that it names. A lock naming a finished or unknown task is
        taken over with a compare-and-set on its value: of identical enqueues
        racing for it (PostgreSQL re-checks an UPDATE's WHERE after a concurrent
        commit), one wins and the others find the winner."""
        value = self._blob(task_id.encode())
        holder = None
        for _ in range(LOCK_TAKEOVER_TRIES):
            curs.execute(self.q("delete from %s where queue = ? and key = ? and "
                                "expires_at <= ?" % self.t_lock), (self.name, lock, now))
            curs.execute(self.q(self.insert_ignore % (
                self.t_lock, "queue, key, value, expires_at", "?, ?, ?, ?")),
                (self.name, lock, value, now + ttl))
            if curs.rowcount == 1:
                return None
            curs.execute(self.q("select value from %s where queue = ? and key = ?"
                                % self.t_lock), (self.name, lock))
            row = curs.fetchone()
            if row is None:  # freed since (PostgreSQL: by a commit after our insert)
                continue
            held = bytes(row[0])
            holder = held.decode()
            if holder != task_id:
                curs.execute(self.q("select status from %s where queue = ? and task_id = ?"
                                    % self.t_state), (self.name, holder))
                state = curs.fetchone()
                if state is not None and state[0] not in ("FAILURE", "REVOKED"):
                    return holder
            curs.execute(self.q("update %s set value = ?, expires_at = ? where queue = ? "
                                "and key = ? and value = ?" % self.t_lock),
                         (value, now + ttl, self.name, lock, self._blob(held)))
            if curs.rowcount == 1:
                return None
        if holder is not None and holder != task_id:
            return holder  # taken over by another enqueue in every round: it holds it
        raise RuntimeError("the dedup lock %r kept changing hands; try again" % lock)

    def _upsert_enqueued_state(self) -> str:
        # RETRY stays RETRY until the attempt starts; a finished task keeps its
        # status (a revoked one must not come back); anything else is PENDING.
        return ("insert into {s} (queue, task_id, name, lane, status, args, kwargs, retries, "
                "attempts, enqueued_at, updated_at, next_attempt_at) values "
                "(?, ?, ?, ?, 'PENDING', ?, ?, ?, 0, ?, ?, ?) "
                "on conflict (queue, task_id) do update set lane = excluded.lane, "
                "updated_at = excluded.updated_at, next_attempt_at = excluded.next_attempt_at, "
                "status = case when {s}.status in ('RETRY', 'SUCCESS', 'FAILURE', 'REVOKED') "
                "then {s}.status else 'PENDING' end").format(s=self.t_state)

    def _enqueued_state_params(self, meta: dict, now: float, available_at: float) -> tuple:
        return (self.name, meta["task_id"], meta["name"], meta["lane"], _json(meta["args"]),
                _json(meta["kwargs"]), meta["retries"], now, now,
                available_at if available_at > now else None)

    def _claim_sql(self, lanes: tuple, oldest_first: bool) -> str:
        lane_filter = (" and lane in (%s)" % ", ".join("?" * len(lanes))) if lanes else ""
        order = "id" if oldest_first else "priority desc, id"
        return ("update {t} set claimed_by = ?, claimed_at = ? where id = ("
                "select id from {t} where queue = ? and claimed_by is null and "
                "available_at <= ?{lanes} order by {order} limit 1{lock}) "
                "and claimed_by is null returning id, data, task_id").format(
                    t=self.t_queue, lanes=lane_filter, order=order, lock=self.skip_locked)

    def _started_sql(self) -> str:
        return ("update %s set status = 'STARTED', started_at = ?, updated_at = ?, "
                "attempts = attempts + 1, worker = ?, next_attempt_at = null "
                "where queue = ? and task_id = ? and status in ('PENDING', 'RETRY', 'STARTED')"
                % self.t_state)

    def claim(self, worker_id: str, lanes: Iterable[str] | None = None,
              oldest_first: bool = False, finish: tuple | None = None,
              due_by: float | None = None):
        """Take the next available task: highest priority first (or the oldest,
        when asked), and mark it STARTED (attempts + 1) in the same transaction.

        ``finish`` = (claim_id, worker_id, task_id, fields) of the previous attempt is
        written in that same transaction: one write per task in steady state.
        Delayed tasks due by ``due_by`` (default: now) are available.
        Returns (claim_id, data, reruns) or None when nothing is available;
        ``reruns``: how often the task was released for a re-run (its attempt's
        process was killed or stopped before the attempt ended).
        """
        lanes = tuple(lanes or ())
        now = time.time()
        with self.db(commit=True) as curs:
            if finish is not None:
                self._write_finish(curs, *finish)
            curs.execute(self.q(self._claim_sql(lanes, oldest_first)),
                         (worker_id, now, self.name, now if due_by is None else due_by) + lanes)
            row = curs.fetchone()
            if row is None:
                return None
            claim_id, data, task_id = row[0], bytes(row[1]), row[2]
            curs.execute(self.q(self._started_sql() + " returning reruns"),
                         (now, now, worker_id, self.name, task_id))
            started = curs.fetchone()
        return claim_id, data, (started[0] or 0) if started else 0

    def release_claims(self, worker_ids: Iterable[str]) -> int:
        """Put the tasks claimed by ``worker_ids`` back in the queue (PENDING),
        each counted as a re-run."""
        ids = tuple(worker_ids)
        if not ids:
            return 0
        owners = ", ".join("?" * len(ids))
        # The queue rows first, then the states: the order a claim locks them in
        # (the other order deadlocked with claims on PostgreSQL).
        with self.db(commit=True) as curs:
            curs.execute(self.q("update %s set claimed_by = null, claimed_at = null "
                                "where queue = ? and claimed_by in (%s) returning task_id"
                                % (self.t_queue, owners)), (self.name,) + ids)
            released = [task_id for task_id, in curs.fetchall()]
            if released:
                curs.execute(self.q(
                    "update %s set status = 'PENDING', reruns = reruns + 1, updated_at = ? "
                    "where queue = ? and status = 'STARTED' and task_id in (%s)"
                    % (self.t_state, ", ".join("?" * len(released)))),
                    (time.time(), self.name) + tuple(released))
            return len(released)

    def claim_owners(self) -> set[str]:
        rows = self._exec("select distinct claimed_by from %s where queue = ? and "
                          "claimed_by is not null" % self.t_queue, (self.name,), fetch=True)
        return {owner for owner, in rows}

    def remove_queued(self, task_id: str) -> bool:
        """Delete a task that no worker has claimed (waiting or delayed)."""
        rows = self._exec("delete from %s where queue = ? and task_id = ? and claimed_by "
                          "is null returning id" % self.t_queue, (self.name, task_id),
                          fetch=True)
        return bool(rows)

    def purge_lane(self, lane: str) -> list[str]:
        """Delete the unclaimed tasks of one lane (delayed ones too); return their ids."""
        rows = self._exec("delete from %s where queue = ? and lane = ? and claimed_by is null "
                          "returning task_id" % self.t_queue, (self.name, lane), fetch=True)
        return [task_id for task_id, in rows]

    def lane_counts(self) -> dict[str, dict[str, int]]:
        rows = self._exec(
            "select lane, "
            "sum(case when claimed_by is null and available_at <= ? then 1 else 0 end), "
            "sum(case when claimed_by is null and available_at > ? then 1 else 0 end), "
            "sum(case when claimed_by is null then 0 else 1 end) from %s "
            "where queue = ? group by lane" % self.t_queue,
            (time.time(), time.time(), self.name), fetch=True)
        return {lane: {"pending": int(p or 0), "scheduled": int(d or 0), "running": int(r or 0)}
                for lane, p, d, r in rows}

    def queue_size(self):
        return self._exec("select count(*) from %s where queue = ? and claimed_by is null "
                          "and available_at <= ?" % self.t_queue, (self.name, time.time()),
                          fetch=True)[0][0]

    def schedule_size(self):
        delayed = self._exec("select count(*) from %s where queue = ? and claimed_by is null "
                             "and available_at > ?" % self.t_queue, (self.name, time.time()),
                             fetch=True)[0][0]
        return delayed + super().schedule_size()  # + Huey's own (periodic) schedule

    def enqueued_items(self, limit=None):
        sql = ("select data from %s where queue = ? and claimed_by is null "
               "order by available_at, priority desc, id" % self.t_queue)
        params = (self.name,)
        if limit is not None:
            sql += " limit ?"
            params += (limit,)
        return [bytes(data) for data, in self._exec(sql, params, fetch=True)]

    def flush_queue(self):
        self._exec("delete from %s where queue = ?" % self.t_queue, (self.name,))

    # -- task states ---------------------------------------------------------------

    def save_state(self, task_id: str, **fields) -> None:
        """Update a task's state row (created when missing)."""
        fields = encode_outcome(fields)
        names = sorted(fields)
        sets = ", ".join("%s = ?" % n for n in names)
        with self.db(commit=True) as curs:
            curs.execute(self.q("update %s set %s where queue = ? and task_id = ?"
                                % (self.t_state, sets)),
                         tuple(fields[n] for n in names) + (self.name, task_id))
            if curs.rowcount == 0:
                fields.setdefault("status", "PENDING")
                fields.setdefault("name", "")
                fields.setdefault("lane", "default")
                names = sorted(fields)
                curs.execute(self.q(self.insert_ignore % (
                    self.t_state, ", ".join(["queue", "task_id"] + names),
                    ", ".join("?" * (len(names) + 2)))),
                    (self.name, task_id) + tuple(fields[n] for n in names))

    def finish(self, claim_id, worker_id: str | None, task_id: str | None,
               fields: dict) -> None:
        """Ack a claim (or requeue it, for a retry) and record the attempt's
        outcome, in one transaction. Only while ``worker_id`` still holds the
        claim: if it was released meanwhile, another attempt owns the task."""
        with self.db(commit=True) as curs:
            self._write_finish(curs, claim_id, worker_id, task_id, fields)

    @staticmethod
    def _outcome_sets(fields: dict) -> tuple[str, tuple]:
        """The SET clause (with ? placeholders) and values for an outcome."""
        fields = encode_outcome(fields)
        names = sorted(fields)
        return ", ".join("%s = ?" % n for n in names), tuple(fields[n] for n in names)

    def _write_finish(self, curs, claim_id, worker_id, task_id, fields: dict) -> None:
        fields = dict(fields)
        requeue = fields.pop("requeue", None)
        if claim_id is not None:
            if requeue is not None:
                data, available_at, priority = requeue
                curs.execute(self.q("update %s set data = ?, available_at = ?, priority = ?, "
                                    "claimed_by = null, claimed_at = null where id = ? and "
                                    "claimed_by = ?" % self.t_queue),
                             (self._blob(data), available_at, priority or 0, claim_id,
                              worker_id))
            else:
                curs.execute(self.q("delete from %s where id = ? and claimed_by = ?"
                                    % self.t_queue), (claim_id, worker_id))
            if curs.rowcount == 0:
                return  # released meanwhile: the next attempt records the outcome
        if task_id is not None and fields:
            sets, values = self._outcome_sets(fields)
            curs.execute(self.q("update %s set %s where queue = ? and task_id = ?" % (
                self.t_state, sets)), values + (self.name, task_id))

    def get_state(self, task_id: str) -> dict | None:
        rows = self._exec("select %s from %s where queue = ? and task_id = ?" % (
            ", ".join(STATE_COLUMNS), self.t_state), (self.name, task_id), fetch=True)
        return _row_to_state(rows[0]) if rows else None

    def list_states(self, status: str | None = None, name: str | None = None,
                    limit: int = 50) -> list[dict]:
        where, params = ["queue = ?"], [self.name]
        if status:
            where.append("status = ?")
            params.append(status)
        if name:
            where.append("name = ?")
            params.append(name)
        rows = self._exec("select %s from %s where %s order by enqueued_at desc, "
                          "updated_at desc limit ?" % (
                              ", ".join(STATE_COLUMNS), self.t_state, " and ".join(where)),
                          tuple(params) + (limit,), fetch=True)
        return [_row_to_state(row) for row in rows]

    def count_states(self, status: str) -> int:
        return self._exec("select count(*) from %s where queue = ? and status = ?"
                          % self.t_state, (self.name, status), fetch=True)[0][0]

    def prune_states(self, results_before: float, states_before: float) -> tuple[int, int]:
        """Drop results of tasks finished before ``results_before`` and whole
        finished states before ``states_before``. Returns (results, states)."""
        finished = "status in ('SUCCESS', 'FAILURE', 'REVOKED')"
        with self.db(commit=True) as curs:
            curs.execute(self.q("update %s set result = null where queue = ? and %s and "
                                "result is not null and finished_at < ?"
                                % (self.t_state, finished)), (self.name, results_before))
            results = curs.rowcount
            curs.execute(self.q("delete from %s where queue = ? and %s and finished_at < ?"
                                % (self.t_state, finished)), (self.name, states_before))
            return results, curs.rowcount

    # -- locks with a TTL --------------------------------------------------------

    def put_if_empty(self, key, value, ttl=None):
        if ttl is None:
            return super().put_if_empty(key, value)
        now = time.time()
        with self.db(commit=True) as curs:
            curs.execute(self.q("delete from %s where queue = ? and key = ? and expires_at <= ?"
                                % self.t_lock), (self.name, key, now))
            curs.execute(self.q(self.insert_ignore % (
                self.t_lock, "queue, key, value, expires_at", "?, ?, ?, ?")),
                (self.name, key, self._blob(value), now + ttl))
            return curs.rowcount == 1

    def _lock_value(self, key):
        rows = self._exec("select value from %s where queue = ? and key = ? and expires_at > ?"
                          % self.t_lock, (self.name, key, time.time()), fetch=True)
        return bytes(rows[0][0]) if rows else EmptyData

    def peek_data(self, key):
        value = super().peek_data(key)
        return self._lock_value(key) if value is EmptyData else value

    def has_data_for_key(self, key):
        return super().has_data_for_key(key) or self._lock_value(key) is not EmptyData

    def pop_data(self, key):
        # Huey pops every task's revoke flag after it runs; almost always there
        # is none, so read first and write only when there is something to pop.
        if not self._exec("select 1 from %s where queue = ? and key = ?" % self.t_kv,
                          (self.name, key), fetch=True):
            return EmptyData
        rows = self._exec("delete from %s where queue = ? and key = ? returning value"
                          % self.t_kv, (self.name, key), fetch=True)
        return bytes(rows[0][0]) if rows else EmptyData

    def delete_data(self, key):
        removed = False
        if LOCK_MARK in key:
            with self.db(commit=True) as curs:
                curs.execute(self.q("delete from %s where queue = ? and key = ?" % self.t_lock),
                             (self.name, key))
                removed = curs.rowcount > 0
        return self.pop_data(key) is not EmptyData or removed

    def delete_lock(self, key: str, value: bytes) -> bool:
        """Delete a TTL lock only while it still holds ``value``."""
        rows = self._exec("delete from %s where queue = ? and key = ? and value = ? "
                          "returning key" % self.t_lock, (self.name, key, self._blob(value)),
                          fetch=True)
        return bool(rows)

    def extend_lock(self, key: str, ttl: float) -> None:
        self._exec("update %s set expires_at = ? where queue = ? and key = ?" % self.t_lock,
                   (time.time() + ttl, self.name, key))

    # -- worker heartbeats -----------------------------------------------------

    def beat(self, worker_id: str, info: dict) -> None:
        self._exec(self.upsert_worker % self.t_worker,
                   (self.name, worker_id, json.dumps(info), time.time()))

    def workers(self, max_age: float) -> list[dict]:
        rows = self._exec("select id, info, beat_at from %s where queue = ? and beat_at >= ? "
                          "order by beat_at desc" % self.t_worker,
                          (self.name, time.time() - max_age), fetch=True)
        return [dict(json.loads(info), id=wid, beat_at=beat_at) for wid, info, beat_at in rows]

    def forget(self, worker_id: str) -> None:
        self._exec("delete from %s where queue = ? and id = ?" % self.t_worker,
                   (self.name, worker_id))

    def flush_all(self):
        super().flush_all()
        for table in (self.t_state, self.t_lock, self.t_worker):
            self._exec("delete from %s where queue = ?" % table, (self.name,))


# Few indexes on purpose: every index is written on every claim and ack. Claims
# by owner, revoke by task id and state filters by status are rare or bounded
# by a LIMIT, so they scan.
_SQLITE_DDL = [
    "create table if not exists botlite_queue (id integer primary key autoincrement, "
    "queue text not null, lane text not null, priority real not null default 0, "
    "task_id text not null, data blob not null, enqueued_at real not null, "
    "available_at real not null default 0, claimed_by text, claimed_at real)",
    "create index if not exists botlite_queue_ready on botlite_queue "
    "(queue, priority desc, id) where claimed_by is null",
    "create table if not exists botlite_state (queue text not null, task_id text not null, "
    "name text not null, lane text not null, status text not null, args text, kwargs text, "
    "result text, error text, traceback text, retries integer, "
    "attempts integer not null default 0, reruns integer not null default 0, "
    "progress text, next_attempt_at real, "
    "enqueued_at real, started_at real, finished_at real, updated_at real not null, "
    "dedup_key text, worker text, primary key (queue, task_id)) without rowid",
    "create index if not exists botlite_state_recent on botlite_state (queue, enqueued_at)",
    "create index if not exists botlite_state_dedup on botlite_state (queue, dedup_key) "
    "where dedup_key is not null",
    "create table if not exists botlite_lock (queue text not null, key text not null, "
    "value blob not null, expires_at real not null, primary key (queue, key)) without rowid",
    "create table if not exists botlite_worker (queue text not null, id text not null, "
    "info text not null, beat_at real not null, primary key (queue, id)) without rowid",
    "create table if not exists botlite_schema (version integer not null)",
]


class SqliteQueueStorage(SqlRunnerMixin, SqliteStorage):
    """Huey's SqliteStorage with claims, lanes, states, TTL locks, heartbeats.

    WAL with synchronous=NORMAL: a commit survives a killed process (what crash
    recovery needs); only a power loss may lose the last transactions.
    """
    ph = "?"
    t_kv = "kv"
    skip_locked = ""
    insert_ignore = "insert or ignore into %s (%s) values (%s)"
    upsert_worker = ("insert into %s (queue, id, info, beat_at) values (?, ?, ?, ?) "
                     "on conflict (queue, id) do update set info = excluded.info, "
                     "beat_at = excluded.beat_at")
    ddl = SqliteStorage.ddl + _SQLITE_DDL

    def __init__(self, name="huey", filename="huey.db", describe: Describe | None = None,
                 **kwargs):
        self.describe = describe
        self._checkpoint_conn = None
        super().__init__(name, filename, **kwargs)

    def _table_exists(self, table: str) -> bool:
        return bool(self._exec("select 1 from sqlite_master where type = 'table' and name = ?",
                               (table,), fetch=True))

    def _schema_transaction(self):
        return self.db(commit=True)  # begin exclusive: other processes wait

    @staticmethod
    def _columns(curs, table: str) -> set[str]:
        return {row[1] for row in curs.execute("pragma table_info(%s)" % table).fetchall()}

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=normal")
        # Checkpoints fsync; a worker process runs them in the background
        # (checkpoint()), this threshold is only the safety net.
        conn.execute("pragma wal_autocheckpoint=%d" % AUTOCHECKPOINT_PAGES)
        return conn

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, on a connection of its own so
        that workers keep committing meanwhile (PASSIVE never blocks them)."""
        if self._checkpoint_conn is None:
            self._checkpoint_conn = sqlite3.connect(self.filename, timeout=self._timeout,
                                                    check_same_thread=False)
        self._checkpoint_conn.execute("pragma wal_checkpoint(passive)")

    def close(self):
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None
        return super().close()

    def _blob(self, value):
        return self.to_blob(value)


_POSTGRES_DDL = [
    "create table if not exists botlite_queue (id bigserial primary key, "
    "queue text not null, lane text not null, priority double precision not null default 0, "
    "task_id text not null, data bytea not null, enqueued_at double precision not null, "
    "available_at double precision not null default 0, claimed_by text, "
    "claimed_at double precision)",
    "create index if not exists botlite_queue_ready on botlite_queue "
    "(queue, priority desc, id) where claimed_by is null",
    "create table if not exists botlite_state (queue text not null, task_id text not null, "
    "name text not null, lane text not null, status text not null, args text, kwargs text, "
    "result text, error text, traceback text, retries integer, "
    "attempts integer not null default 0, reruns integer not null default 0, "
    "progress text, next_attempt_at double precision, enqueued_at double precision, "
    "started_at double precision, finished_at double precision, "
    "updated_at double precision not null, dedup_key text, worker text, "
    "primary key (queue, task_id))",
    "create index if not exists botlite_state_recent on botlite_state (queue, enqueued_at)",
    "create index if not exists botlite_state_dedup on botlite_state (queue, dedup_key) "
    "where dedup_key is not null",
    "create table if not exists botlite_lock (queue text not null, key text not null, "
    "value bytea not null, expires_at double precision not null, primary key (queue, key))",
    "create table if not exists botlite_worker (queue text not null, id text not null, "
    "info text not null, beat_at double precision not null, primary key (queue, id))",
    "create table if not exists botlite_schema (version integer not null)",
]


class PostgresQueueStorage(SqlRunnerMixin, PostgresStorage):
    """Huey's PostgresStorage with claims (FOR UPDATE SKIP LOCKED), lanes, states,
    TTL locks and heartbeats. Idle workers wait on LISTEN/NOTIFY."""
    ph = "%s"
    skip_locked = " for update skip locked"
    insert_ignore = "insert into %s (%s) values (%s) on conflict do nothing"
    upsert_worker = ("insert into %s (queue, id, info, beat_at) values (%%s, %%s, %%s, %%s) "
                     "on conflict (queue, id) do update set info = excluded.info, "
                     "beat_at = excluded.beat_at")

    t_kv = "huey_kv"

    def __init__(self, name="huey", describe: Describe | None = None, **kwargs):
        self.describe = describe
        # One connection per thread (Huey shares one behind a lock), so worker
        # threads commit in parallel and PostgreSQL can group their WAL flushes.
        self._thread_conns = threading.local()
        self._open_conns: list = []
        self._open_conns_lock = threading.Lock()
        kwargs.pop("create_tables", None)  # TaskRunner runs migrate() where a process starts
        super().__init__(name, create_tables=False, **kwargs)
        self.ddl = self.ddl + _POSTGRES_DDL

    def _blob(self, value):
        return bytes(value)

    @property
    def conn(self):
        conn = getattr(self._thread_conns, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._thread_conns.conn = conn
            with self._open_conns_lock:
                # Close the connections of threads that have ended (web threads come
                # and go), so they do not pile up until close().
                keep = []
                for thread, other in self._open_conns:
                    if thread.is_alive() and not other.closed:
                        keep.append((thread, other))
                    else:
                        self._close_quiet(other)
                self._open_conns = keep + [(threading.current_thread(), conn)]
        return conn

    def close(self):
        super().close()
        with self._open_conns_lock:
            conns, self._open_conns = self._open_conns, []
        for _, conn in conns:
            self._close_quiet(conn)
        self._thread_conns = threading.local()
        return True

    real = "double precision"

    def _table_exists(self, table: str) -> bool:
        return self._exec("select to_regclass(?)", (table,), fetch=True)[0][0] is not None

    @contextlib.contextmanager
    def _schema_transaction(self):
        # CREATE TABLE IF NOT EXISTS races between processes on PostgreSQL.
        with self.db(commit=True) as curs:
            curs.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            yield curs

    @staticmethod
    def _columns(curs, table: str) -> set[str]:
        curs.execute("select column_name from information_schema.columns where "
                     "table_schema = current_schema() and table_name = %s", (table,))
        return {name for name, in curs.fetchall()}

    def _notify_enqueued(self, curs) -> None:
        curs.execute("select pg_notify(%s, '')", (self.channel,))

    def sql(self, query, params=None, commit=False, results=False):
        with self.db() as curs:  # autocommit connection
            curs.execute(query, params or ())
            if results:
                return curs.fetchall()

    # One statement (one round trip) each for enqueue, claim and finish; the
    # data-modifying CTEs of one statement commit together.

    def _enqueue(self, data, priority, meta: dict, available_at: float) -> None:
        now = time.time()
        self.sql(self.q(
            "with queued as (insert into botlite_queue (queue, lane, priority, task_id, data, "
            "enqueued_at, available_at) values (?, ?, ?, ?, ?, ?, ?)), state as ("
            + self._upsert_enqueued_state() + ") select pg_notify(?, '')"),
            (self.name, meta["lane"], priority or 0, meta["task_id"], bytes(data), now,
             available_at) + self._enqueued_state_params(meta, now, available_at)
            + (self.channel,), results=True)

    def finish(self, claim_id, worker_id, task_id, fields):
        fields = dict(fields)
        requeue = fields.pop("requeue", None)
        sets, values = self._outcome_sets(fields)
        update = ("update botlite_state set %s where queue = ? and task_id = ?" % sets)
        if claim_id is None:
            self.sql(self.q(update), values + (self.name, task_id))
            return
        if requeue is not None:
            data, available_at, priority = requeue
            acked = ("update botlite_queue set data = ?, available_at = ?, priority = ?, "
                     "claimed_by = null, claimed_at = null where id = ? and claimed_by = ? "
                     "returning id")
            acked_params = (bytes(data), available_at, priority or 0, claim_id, worker_id)
        else:
            acked = "delete from botlite_queue where id = ? and claimed_by = ? returning id"
            acked_params = (claim_id, worker_id)
        if task_id is None:
            self.sql(self.q(acked), acked_params)
            return
        # The state changes only if the claim was still ours.
        self.sql(self.q("with acked as (" + acked + ") " + update +
                        " and exists (select 1 from acked)"),
                 acked_params + values + (self.name, task_id))

    def claim(self, worker_id, lanes=None, oldest_first=False, finish=None, due_by=None):
        if finish is not None:
            self.finish(*finish)
        lanes = tuple(lanes or ())
        now = time.time()
        rows = self.sql(self.q(
            "with claimed as (" + self._claim_sql(lanes, oldest_first) + "), "
            "started as (" + self._started_sql().replace(
                "where queue = ? and task_id = ?",
                "where queue = ? and task_id = (select task_id from claimed)") +
            " returning reruns) "
            "select id, data, (select reruns from started) from claimed"),
            (worker_id, now, self.name, now if due_by is None else due_by) + lanes
            + (now, now, worker_id, self.name), results=True)
        if not rows:
            return None
        return rows[0][0], bytes(rows[0][1]), rows[0][2] or 0

    def wait_for_work(self, timeout: float) -> None:
        """Block until an enqueue anywhere notifies, or ``timeout`` passes."""
        conn = self._listen_conn()
        list(conn.notifies(timeout=timeout, stop_after=1))

    def db(self, commit=False, close=False):
        return _PostgresTransaction(self, commit, close)

    def dequeue(self):
        raise NotImplementedError("use claim()")


class _PostgresTransaction:
    """The thread's own autocommit connection; statements of a commit=True block
    run in one transaction so multi-statement writes stay atomic."""

    def __init__(self, storage, commit, close):
        self.storage, self.commit, self.close = storage, commit, close

    def __enter__(self):
        self.conn = self.storage.conn
        self.tx = self.conn.transaction() if self.commit else None
        if self.tx is not None:
            self.tx.__enter__()
        self.cursor = self.conn.cursor()
        return self.cursor

    def __exit__(self, exc_type, exc, tb):
        self.cursor.close()
        if self.tx is not None:
            self.tx.__exit__(exc_type, exc, tb)
        if self.close:
            self.conn.close()
        return False


class RedisQueueStorage(PriorityRedisExpireStorage):
    """Claims, lanes, states, TTL locks and heartbeats on Redis.

    Keys (prefix ``botlite.<name>``): per task message ``msg``/``meta``/``seq``/
    ``score`` hashes by claim id, ``task`` (task id -> claim id); per lane a
    priority sorted set ``lane.<lane>`` and a FIFO sorted set ``fifo.<lane>``;
    ``delayed`` (claim id by available time); ``claims`` (claim id -> owner).
    Every change that touches several keys is one Lua script, so it is atomic.
    States are hashes (``state.<task id>``) that expire after the retention;
    ``failed`` is the set of dead letters; ``recent`` orders states by enqueue time.
    The scripts build keys from the prefix: one Redis server, not a cluster.
    """

    _LIB = """
    local function ready(p, cid)
        local lane = string.match(redis.call('hget', p .. '.meta', cid) or '|', '|(.*)$')
        redis.call('zadd', p .. '.lane.' .. lane, redis.call('hget', p .. '.score', cid), cid)
        redis.call('zadd', p .. '.fifo.' .. lane, redis.call('hget', p .. '.seq', cid), cid)
    end
    local function unready(p, cid)
        local lane = string.match(redis.call('hget', p .. '.meta', cid) or '|', '|(.*)$')
        redis.call('zrem', p .. '.lane.' .. lane, cid)
        redis.call('zrem', p .. '.fifo.' .. lane, cid)
        redis.call('zrem', p .. '.delayed', cid)
    end
    local function drop(p, cid)
        local tid = string.match(redis.call('hget', p .. '.meta', cid) or '|', '^([^|]*)')
        unready(p, cid)
        for _, h in ipairs({'.msg', '.meta', '.seq', '.score', '.claims'}) do
            redis.call('hdel', p .. h, cid)
        end
        if tid ~= '' and redis.call('hget', p .. '.task', tid) == cid then
            redis.call('hdel', p .. '.task', tid)
        end
        return tid
    end
    local function set_state(p, tid, pairs)
        local sk = p .. '.state.' .. tid
        if #pairs > 0 then redis.call('hset', sk, unpack(pairs)) end
        local status = redis.call('hget', sk, 'status')
        if status == 'FAILURE' then redis.call('sadd', p .. '.failed', tid)
        else redis.call('srem', p .. '.failed', tid) end
    end
    """

    # ARGV: prefix, data, task id, lane, priority, now, available at, name, args,
    # kwargs, retries, state TTL, then the dedup lock's key ('' = none), its TTL in
    # ms and the dedup key, then field/value pairs written on the state. Returns the
    # claim id, or '=' .. the id of the live task holding the dedup lock.
    ENQUEUE = _LIB + """
    local p, data, tid, lane = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
    local priority, now, at = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
    local lock = ARGV[13]
    if lock ~= '' then
        local holder = redis.call('get', lock)
        if holder and holder ~= tid then
            local held = redis.call('hget', p .. '.state.' .. holder, 'status')
            if held and held ~= 'FAILURE' and held ~= 'REVOKED' then return '=' .. holder end
        end
        redis.call('set', lock, tid, 'PX', ARGV[14])
    end
    local seq = redis.call('incr', p .. '.counter')
    local cid = tostring(seq)
    redis.call('hset', p .. '.msg', cid, data)
    redis.call('hset', p .. '.meta', cid, tid .. '|' .. lane)
    redis.call('hset', p .. '.seq', cid, seq)
    redis.call('hset', p .. '.score', cid, string.format('%.0f', priority * 1e12 - seq))
    redis.call('hset', p .. '.task', tid, cid)
    redis.call('sadd', p .. '.lanes', lane)
    if at > now then redis.call('zadd', p .. '.delayed', at, cid) else ready(p, cid) end
    local sk = p .. '.state.' .. tid
    redis.call('hsetnx', sk, 'task_id', tid)
    redis.call('hsetnx', sk, 'attempts', 0)
    redis.call('hsetnx', sk, 'reruns', 0)
    redis.call('hset', sk, 'name', ARGV[8], 'lane', lane, 'args', ARGV[9], 'kwargs', ARGV[10],
               'retries', ARGV[11], 'enqueued_at', ARGV[6], 'updated_at', ARGV[6],
               'next_attempt_at', at > now and ARGV[7] or '')
    local status = redis.call('hget', sk, 'status')
    if status ~= 'RETRY' and status ~= 'SUCCESS' and status ~= 'FAILURE' and status ~= 'REVOKED' then
        redis.call('hset', sk, 'status', 'PENDING')
    end
    if lock ~= '' then redis.call('hset', sk, 'dedup_key', ARGV[15]) end
    if #ARGV > 15 then set_state(p, tid, {unpack(ARGV, 16)}) end
    redis.call('expire', sk, tonumber(ARGV[12]) + math.max(0, math.ceil(at - now)))
    redis.call('zadd', p .. '.recent', 'NX', now, tid)
    redis.call('lpush', p .. '.wake', 1)
    redis.call('ltrim', p .. '.wake', 0, 63)
    return cid
    """

    # ARGV: prefix, worker, now, mode ('0' priority, '1' oldest, 'none' finish only),
    # lanes ('' = all), due_by (delayed tasks due by then are available), then the
    # finish: claim id, its worker, task id, requeue data ('' = ack), requeue time,
    # requeue score, then field/value pairs.
    FINISH_AND_CLAIM = _LIB + """
    local p, worker, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
    local fc, fworker, ftask = ARGV[7], ARGV[8], ARGV[9]
    if fc ~= '' then
        local owner = string.match(redis.call('hget', p .. '.claims', fc) or '', '^([^|]*)')
        if owner == fworker then
            if ARGV[10] ~= '' then
                redis.call('hset', p .. '.msg', fc, ARGV[10])
                redis.call('hset', p .. '.score', fc, ARGV[12])
                redis.call('hdel', p .. '.claims', fc)
                if tonumber(ARGV[11]) > now then
                    redis.call('zadd', p .. '.delayed', ARGV[11], fc)
                else
                    ready(p, fc)
                end
            else
                drop(p, fc)
            end
            if ftask ~= '' then set_state(p, ftask, {unpack(ARGV, 13)}) end
        end
    elseif ftask ~= '' then
        set_state(p, ftask, {unpack(ARGV, 13)})
    end
    if ARGV[4] == 'none' then return nil end
    local due = redis.call('zrangebyscore', p .. '.delayed', '-inf', ARGV[6], 'LIMIT', 0, 100)
    for _, cid in ipairs(due) do
        redis.call('zrem', p .. '.delayed', cid)
        ready(p, cid)
    end
    local lanes
    if ARGV[5] == '' then lanes = redis.call('smembers', p .. '.lanes')
    else lanes = {} for lane in string.gmatch(ARGV[5], '[^,]+') do table.insert(lanes, lane) end end
    local best, best_rank = nil, nil
    for _, lane in ipairs(lanes) do
        local top, rank
        if ARGV[4] == '1' then
            top = redis.call('zrange', p .. '.fifo.' .. lane, 0, 0, 'WITHSCORES')
            if top[1] then rank = -tonumber(top[2]) end
        else
            top = redis.call('zrevrange', p .. '.lane.' .. lane, 0, 0, 'WITHSCORES')
            if top[1] then rank = tonumber(top[2]) end
        end
        if rank ~= nil and (best_rank == nil or rank > best_rank) then best, best_rank = top[1], rank end
    end
    if best == nil then return nil end
    unready(p, best)
    redis.call('hset', p .. '.claims', best, worker .. '|' .. ARGV[3])
    local tid = string.match(redis.call('hget', p .. '.meta', best) or '|', '^([^|]*)')
    if tid ~= '' then
        local sk = p .. '.state.' .. tid
        local status = redis.call('hget', sk, 'status')
        if status == 'PENDING' or status == 'RETRY' or status == 'STARTED' then
            redis.call('hset', sk, 'status', 'STARTED', 'started_at', ARGV[3],
                       'updated_at', ARGV[3], 'worker', worker, 'next_attempt_at', '')
            redis.call('hincrby', sk, 'attempts', 1)
        end
    end
    local reruns = 0
    if tid ~= '' then reruns = tonumber(redis.call('hget', p .. '.state.' .. tid, 'reruns') or '0') or 0 end
    return {best, redis.call('hget', p .. '.msg', best), reruns}
    """

    RELEASE = _LIB + """
    local p, now = ARGV[1], ARGV[2]
    local owners = {}
    for i = 3, #ARGV do owners[ARGV[i]] = true end
    local released = 0
    local claims = redis.call('hgetall', p .. '.claims')
    for i = 1, #claims, 2 do
        local cid, owner = claims[i], string.match(claims[i + 1], '^([^|]*)')
        if owners[owner] then
            redis.call('hdel', p .. '.claims', cid)
            ready(p, cid)
            local tid = string.match(redis.call('hget', p .. '.meta', cid) or '|', '^([^|]*)')
            local sk = p .. '.state.' .. tid
            if tid ~= '' and redis.call('hget', sk, 'status') == 'STARTED' then
                redis.call('hset', sk, 'status', 'PENDING', 'updated_at', now)
                redis.call('hincrby', sk, 'reruns', 1)
            end
            released = released + 1
        end
    end
    return released
    """

    REMOVE = _LIB + """
    local p, tid = ARGV[1], ARGV[2]
    local cid = redis.call('hget', p .. '.task', tid)
    if not cid or redis.call('hexists', p .. '.claims', cid) == 1 then return 0 end
    drop(p, cid)
    return 1
    """

    PURGE = _LIB + """
    local p, lane = ARGV[1], ARGV[2]
    local removed = {}
    local members = redis.call('zrange', p .. '.lane.' .. lane, 0, -1)
    for _, cid in ipairs(redis.call('zrange', p .. '.delayed', 0, -1)) do
        if string.match(redis.call('hget', p .. '.meta', cid) or '|', '|(.*)$') == lane then
            table.insert(members, cid)
        end
    end
    for _, cid in ipairs(members) do table.insert(removed, drop(p, cid)) end
    return removed
    """

    DELETE_IF = """
    if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
    return 0
    """

    def __init__(self, name="huey", describe: Describe | None = None,
                 state_ttl: int = 7 * 86400, **kwargs):
        self.describe = describe
        self.state_ttl = state_ttl
        kwargs.setdefault("expire_time", 3600)
        super().__init__(name, **kwargs)
        self.prefix = prefix = "botlite.%s" % self.name
        self.k_lanes = prefix + ".lanes"
        self.k_lane = prefix + ".lane.%s"
        self.k_meta = prefix + ".meta"
        self.k_msg = prefix + ".msg"
        self.k_claims = prefix + ".claims"
        self.k_delayed = prefix + ".delayed"
        self.k_state = prefix + ".state.%s"
        self.k_recent = prefix + ".recent"
        self.k_failed = prefix + ".failed"
        self.k_wake = prefix + ".wake"
        self.k_workers = prefix + ".workers"
        script = self.conn.register_script
        self._enqueue_script = script(self.ENQUEUE)
        self._finish_and_claim = script(self.FINISH_AND_CLAIM)
        self._release = script(self.RELEASE)
        self._remove = script(self.REMOVE)
        self._purge = script(self.PURGE)
        self._delete_if = script(self.DELETE_IF)

    # -- queue ----------------------------------------------------------------

    def enqueue(self, data, priority=None):
        self.enqueue_task(data, priority)

    def enqueue_task(self, data, priority=None, dedup_key=None, dedup_ttl=0.0, state=None):
        """See SqlRunnerMixin.enqueue_task: one script, so atomic."""
        meta = self.describe(data)
        available_at = meta.get("available_at") or 0.0
        args = [self.prefix, data, meta["task_id"], meta["lane"], priority or 0,
                repr(time.time()), repr(float(available_at)), meta["name"],
                _json(meta["args"]), _json(meta["kwargs"]),
                "" if meta["retries"] is None else meta["retries"], self.state_ttl]
        if dedup_key is None:
            args += ["", "0", ""]
        else:
            args += [self.result_key(lock_name("dedup", dedup_key)),
                     max(int(dedup_ttl * 1000), 1), dedup_key]
        for key, value in self._encode_fields(encode_outcome(state or {})).items():
            args += [key, value]
        queued = self._enqueue_script(args=args)
        if isinstance(queued, bytes) and queued.startswith(b"="):
            return queued[1:].decode()
        return None

    def migrate(self) -> bool:
        """Redis keeps no schema."""
        return False

    def _finish_args(self, finish) -> list:
        if finish is None:
            return ["", "", "", "", "0", "0"]
        claim_id, worker_id, task_id, fields = finish
        fields = dict(fields)
        requeue = fields.pop("requeue", None)
        data, at, score = "", "0", "0"
        if requeue is not None:
            data, available_at, priority = requeue
            at = repr(float(available_at))
            score = "%.0f" % ((priority or 0) * 1e12 - int(claim_id))
        pairs = []
        if task_id is not None and fields:
            for key, value in self._encode_fields(encode_outcome(fields)).items():
                pairs += [key, value]
        return ["" if claim_id is None else claim_id, worker_id or "", task_id or "", data,
                at, score] + pairs

    def claim(self, worker_id, lanes=None, oldest_first=False, finish=None, due_by=None):
        now = time.time()
        result = self._finish_and_claim(args=[
            self.prefix, worker_id, repr(now), "1" if oldest_first else "0",
            ",".join(lanes or ()), repr(now if due_by is None else due_by)]
            + self._finish_args(finish))
        if result is None:
            return None
        return result[0].decode(), result[1], int(result[2])

    def finish(self, claim_id, worker_id, task_id, fields):
        now = repr(time.time())
        self._finish_and_claim(args=[self.prefix, "", now, "none", "", now] +
                               self._finish_args((claim_id, worker_id, task_id, fields)))

    def wait_for_work(self, timeout: float) -> None:
        self.conn.blpop([self.k_wake], timeout=max(timeout, 0.01))

    def release_claims(self, worker_ids):
        ids = list(worker_ids)
        if not ids:
            return 0
        return int(self._release(args=[self.prefix, repr(time.time())] + ids))

    def claim_owners(self):
        return {value.decode().split("|", 1)[0] for value in self.conn.hvals(self.k_claims)}

    def remove_queued(self, task_id):
        return bool(self._remove(args=[self.prefix, task_id]))

    def purge_lane(self, lane):
        return [tid.decode() for tid in self._purge(args=[self.prefix, lane]) if tid]

    def _lanes(self) -> list[str]:
        return sorted(lane.decode() for lane in self.conn.smembers(self.k_lanes))

    def lane_counts(self):
        counts = {lane: {"pending": self.conn.zcard(self.k_lane % lane), "scheduled": 0,
                         "running": 0} for lane in self._lanes()}
        for members, kind in ((self.conn.zrange(self.k_delayed, 0, -1), "scheduled"),
                              (self.conn.hkeys(self.k_claims), "running")):
            if members:
                for meta in self.conn.hmget(self.k_meta, members):
                    lane = (meta or b"|").decode().split("|", 1)[1]
                    counts.setdefault(lane, {"pending": 0, "scheduled": 0, "running": 0})
                    counts[lane][kind] += 1
        return {lane: c for lane, c in counts.items() if any(c.values())}

    def queue_size(self):
        return sum(self.conn.zcard(self.k_lane % lane) for lane in self._lanes())

    def schedule_size(self):
        return self.conn.zcard(self.k_delayed) + super().schedule_size()

    def enqueued_items(self, limit=None):
        members = []
        for lane in self._lanes():
            members.extend(self.conn.zrevrange(self.k_lane % lane, 0, -1, withscores=True))
        members.sort(key=lambda m: -m[1])
        members = [m for m, _ in members] + self.conn.zrange(self.k_delayed, 0, -1)
        if limit is not None:
            members = members[:limit]
        return [data for data in self.conn.hmget(self.k_msg, members)] if members else []

    def flush_queue(self):
        keys = list(self.conn.scan_iter("%s.lane.*" % self.prefix)) + \
            list(self.conn.scan_iter("%s.fifo.*" % self.prefix))
        for suffix in (".msg", ".meta", ".seq", ".score", ".task", ".claims", ".delayed",
                       ".lanes"):
            keys.append(self.prefix + suffix)
        self.conn.delete(*keys)

    # -- states ----------------------------------------------------------------

    def _state_from_hash(self, raw: dict) -> dict | None:
        if not raw or b"status" not in raw:
            return None
        state = {column: None for column in STATE_COLUMNS}
        for key, value in raw.items():
            column = key.decode()
            if column not in state:
                continue
            text = value.decode()
            if text == "":
                continue
            if column in JSON_COLUMNS:
                state[column] = json.loads(text)
            elif column in ("retries", "attempts", "reruns"):
                state[column] = int(text)
            elif column in ("next_attempt_at", "enqueued_at", "started_at", "finished_at",
                            "updated_at"):
                state[column] = float(text)
            else:
                state[column] = text
        return state

    @staticmethod
    def _encode_fields(fields: dict) -> dict:
        return {key: "" if value is None else value for key, value in fields.items()}

    def save_state(self, task_id, **fields):
        fields = self._encode_fields(encode_outcome(fields))
        key = self.k_state % task_id
        pipe = self.conn.pipeline()
        pipe.hsetnx(key, "task_id", task_id)
        pipe.hsetnx(key, "status", "PENDING")
        pipe.hsetnx(key, "name", "")
        pipe.hsetnx(key, "lane", "default")
        pipe.hsetnx(key, "attempts", 0)
        pipe.hsetnx(key, "reruns", 0)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.state_ttl, nx=True)  # never shorten a delayed task's
        pipe.expire(key, self.state_ttl, gt=True)
        pipe.zadd(self.k_recent, {task_id: fields.get("enqueued_at") or time.time()}, nx=True)
        if "status" in fields:
            if fields["status"] == "FAILURE":
                pipe.sadd(self.k_failed, task_id)
            else:
                pipe.srem(self.k_failed, task_id)
        pipe.execute()

    def get_state(self, task_id):
        return self._state_from_hash(self.conn.hgetall(self.k_state % task_id))

    def list_states(self, status=None, name=None, limit=50):
        found, start, page = [], 0, max(limit * 4, 200)
        while len(found) < limit:
            ids = self.conn.zrevrange(self.k_recent, start, start + page - 1)
            if not ids:
                break
            pipe = self.conn.pipeline()
            for task_id in ids:
                pipe.hgetall(self.k_state % task_id.decode())
            for task_id, raw in zip(ids, pipe.execute()):
                state = self._state_from_hash(raw)
                if state is None:
                    self.conn.zrem(self.k_recent, task_id)
                    continue
                if (status is None or state["status"] == status) and \
                        (name is None or state["name"] == name):
                    found.append(state)
                    if len(found) >= limit:
                        break
            start += page
        return found

    def count_states(self, status):
        if status == "FAILURE":
            return self.conn.scard(self.k_failed)
        return len(self.list_states(status=status, limit=10 ** 9))

    def prune_states(self, results_before, states_before):
        results = states = 0
        ids = self.conn.zrange(self.k_recent, 0, -1)
        for start in range(0, len(ids), 500):
            batch = ids[start:start + 500]
            pipe = self.conn.pipeline()
            for task_id in batch:
                pipe.hmget(self.k_state % task_id.decode(), "status", "finished_at", "result")
            rows = pipe.execute()
            pipe = self.conn.pipeline()
            for task_id, (status, finished_at, result) in zip(batch, rows):
                key = self.k_state % task_id.decode()
                if status is None:
                    pipe.zrem(self.k_recent, task_id)
                elif status.decode() in FINISHED and finished_at:
                    if float(finished_at) < states_before:
                        pipe.delete(key)
                        pipe.zrem(self.k_recent, task_id)
                        pipe.srem(self.k_failed, task_id)
                        states += 1
                    elif float(finished_at) < results_before and result:
                        pipe.hset(key, "result", "")
                        results += 1
            pipe.execute()
        return results, states

    # -- locks with a TTL (native), heartbeats --------------------------------------

    def put_if_empty(self, key, value, ttl=None):
        if ttl is None:
            return super().put_if_empty(key, value)
        return bool(self.conn.set(self.result_key(key), value, nx=True,
                                  px=max(int(ttl * 1000), 1)))

    def delete_lock(self, key, value):
        return bool(self._delete_if(keys=[self.result_key(key)], args=[value]))

    def extend_lock(self, key, ttl):
        self.conn.pexpire(self.result_key(key), max(int(ttl * 1000), 1))

    def beat(self, worker_id, info):
        self.conn.hset(self.k_workers, worker_id, json.dumps(dict(info, beat_at=time.time())))

    def workers(self, max_age):
        cutoff = time.time() - max_age
        found = []
        for worker_id, raw in self.conn.hgetall(self.k_workers).items():
            entry = json.loads(raw)
            if entry["beat_at"] >= cutoff:
                found.append(dict(entry, id=worker_id.decode()))
            elif entry["beat_at"] < cutoff - 3600:
                self.conn.hdel(self.k_workers, worker_id)
        return sorted(found, key=lambda e: -e["beat_at"])

    def forget(self, worker_id):
        self.conn.hdel(self.k_workers, worker_id)

    def flush_all(self):
        super().flush_all()
        keys = list(self.conn.scan_iter("%s.*" % self.prefix))
        if keys:
            self.conn.delete(*keys)
