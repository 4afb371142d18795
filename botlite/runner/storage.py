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

import json
import sqlite3
import threading
import time
from typing import Callable, Iterable

from huey.constants import EmptyData
from huey.storage import PostgresStorage, PriorityRedisExpireStorage, SqliteStorage

FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
SCHEMA_LOCK_KEY = 0x626f746c697465  # "botlite"
AUTOCHECKPOINT_PAGES = 20000  # ~80 MB of WAL


# Keys stored with a TTL (Huey's task locks, botlite's dedup keys) contain this.
LOCK_MARK = ".lock."

ACTIVE = ("PENDING", "STARTED", "RETRY")

STATE_COLUMNS = (
    "task_id", "name", "lane", "status", "args", "kwargs", "result", "error", "traceback",
    "retries", "attempts", "progress", "next_attempt_at", "enqueued_at", "started_at",
    "finished_at", "updated_at", "dedup_key", "worker")
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


class SqlRunnerMixin:
    """Claims, lanes, states, TTL locks and heartbeats in SQL.

    Subclasses set ``ph`` (the driver's parameter placeholder), the table names,
    ``insert_ignore`` and ``upsert_lock``, and provide ``_ddl_extra``.
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

    # -- the queue, with claims ------------------------------------------------

    def enqueue(self, data, priority=None):
        meta = self.describe(data)
        now = time.time()
        with self.db(commit=True) as curs:
            curs.execute(self.q(
                "insert into %s (queue, lane, priority, task_id, data, enqueued_at) "
                "values (?, ?, ?, ?, ?, ?)" % self.t_queue),
                (self.name, meta["lane"], priority or 0, meta["task_id"], self._blob(data), now))
            self._record_enqueued(curs, meta, now)

    def _record_enqueued(self, curs, meta: dict, now: float) -> None:
        # A retry's re-enqueue keeps RETRY until it starts; anything else is PENDING.
        curs.execute(self.q(
            "insert into %s (queue, task_id, name, lane, status, args, kwargs, retries, "
            "attempts, enqueued_at, updated_at) values (?, ?, ?, ?, 'PENDING', ?, ?, ?, 0, ?, ?) "
            "on conflict (queue, task_id) do update set lane = excluded.lane, "
            "updated_at = excluded.updated_at, status = case when %s.status = 'RETRY' "
            "then 'RETRY' else 'PENDING' end" % (self.t_state, self.t_state)),
            (self.name, meta["task_id"], meta["name"], meta["lane"], _json(meta["args"]),
             _json(meta["kwargs"]), meta["retries"], now, now))

    def claim(self, worker_id: str, lanes: Iterable[str] | None = None,
              oldest_first: bool = False, finish: tuple | None = None):
        """Take the next task: highest priority first (or the oldest, when asked),
        and mark it STARTED (attempts + 1) in the same transaction.

        ``finish`` = (claim_id, task_id, fields) of the worker's previous attempt is
        written in that same transaction: one write per task in steady state.
        Returns (claim_id, data) or None when nothing is queued.
        """
        lanes = tuple(lanes or ())
        lane_filter = (" and lane in (%s)" % ", ".join("?" * len(lanes))) if lanes else ""
        order = "id" if oldest_first else "priority desc, id"
        sql = ("update {t} set claimed_by = ?, claimed_at = ? where id = ("
               "select id from {t} where queue = ? and claimed_by is null{lanes} "
               "order by {order} limit 1{lock}) and claimed_by is null "
               "returning id, data, task_id").format(t=self.t_queue, lanes=lane_filter,
                                                     order=order, lock=self.skip_locked)
        now = time.time()
        with self.db(commit=True) as curs:
            if finish is not None:
                self._write_finish(curs, *finish)
            curs.execute(self.q(sql), (worker_id, now, self.name) + lanes)
            row = curs.fetchone()
            if row is None:
                return None
            claim_id, data, task_id = row[0], bytes(row[1]), row[2]
            curs.execute(self.q(
                "update %s set status = 'STARTED', started_at = ?, updated_at = ?, "
                "attempts = attempts + 1, worker = ?, next_attempt_at = null "
                "where queue = ? and task_id = ?" % self.t_state),
                (now, now, worker_id, self.name, task_id))
        return claim_id, data

    def ack(self, claim_id) -> None:
        self._exec("delete from %s where id = ?" % self.t_queue, (claim_id,))

    def release_claims(self, worker_ids: Iterable[str] | None = None,
                       alive: Iterable[str] = (), older_than: float | None = None) -> int:
        """Put claimed tasks back in the queue.

        Either the claims of ``worker_ids``, or every claim older than
        ``older_than`` seconds whose worker is not in ``alive``.
        """
        if worker_ids is not None:
            ids = tuple(worker_ids)
            if not ids:
                return 0
            where = "claimed_by in (%s)" % ", ".join("?" * len(ids))
            params = ids
        else:
            alive = tuple(alive)
            where = "claimed_by is not null and claimed_at < ?"
            params = (time.time() - (older_than or 0),)
            if alive:
                where += " and claimed_by not in (%s)" % ", ".join("?" * len(alive))
                params += alive
        with self.db(commit=True) as curs:
            curs.execute(self.q(
                "update %s set status = 'PENDING', updated_at = ? where queue = ? and "
                "status = 'STARTED' and task_id in (select task_id from %s where queue = ? "
                "and %s)" % (self.t_state, self.t_queue, where)),
                (time.time(), self.name, self.name) + params)
            curs.execute(self.q("update %s set claimed_by = null, claimed_at = null "
                                "where queue = ? and %s" % (self.t_queue, where)),
                         (self.name,) + params)
            return curs.rowcount

    def claim_owners(self) -> set[str]:
        rows = self._exec("select distinct claimed_by from %s where queue = ? and "
                          "claimed_by is not null" % self.t_queue, (self.name,), fetch=True)
        return {owner for owner, in rows}

    def remove_queued(self, task_id: str) -> bool:
        """Delete a task that no worker has claimed yet."""
        with self.db(commit=True) as curs:
            curs.execute(self.q("delete from %s where queue = ? and task_id = ? and "
                                "claimed_by is null" % self.t_queue), (self.name, task_id))
            return curs.rowcount > 0

    def purge_lane(self, lane: str) -> list[str]:
        """Delete the unclaimed tasks of one lane; return their ids."""
        with self.db(commit=True) as curs:
            curs.execute(self.q("delete from %s where queue = ? and lane = ? and "
                                "claimed_by is null returning task_id" % self.t_queue),
                         (self.name, lane))
            return [row[0] for row in curs.fetchall()]

    def lane_counts(self) -> dict[str, dict[str, int]]:
        rows = self._exec(
            "select lane, sum(case when claimed_by is null then 1 else 0 end), "
            "sum(case when claimed_by is null then 0 else 1 end) from %s "
            "where queue = ? group by lane" % self.t_queue, (self.name,), fetch=True)
        return {lane: {"pending": int(p or 0), "running": int(r or 0)} for lane, p, r in rows}

    def queue_size(self):
        return self._exec("select count(*) from %s where queue = ? and claimed_by is null"
                          % self.t_queue, (self.name,), fetch=True)[0][0]

    def enqueued_items(self, limit=None):
        sql = ("select data from %s where queue = ? and claimed_by is null "
               "order by priority desc, id" % self.t_queue)
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
        fields["updated_at"] = time.time()
        for column in JSON_COLUMNS:
            if column in fields:
                fields[column] = _json(fields[column])
        increment = fields.pop("attempts_increment", 0)
        names = sorted(fields)
        sets = ", ".join("%s = ?" % n for n in names)
        if increment:
            sets += ", attempts = attempts + %d" % int(increment)
        with self.db(commit=True) as curs:
            curs.execute(self.q("update %s set %s where queue = ? and task_id = ?"
                                % (self.t_state, sets)),
                         tuple(fields[n] for n in names) + (self.name, task_id))
            if curs.rowcount == 0:
                fields.setdefault("status", "PENDING")
                fields.setdefault("name", "")
                fields.setdefault("lane", "default")
                fields["attempts"] = increment
                names = sorted(fields)
                curs.execute(self.q(self.insert_ignore % (
                    self.t_state, ", ".join(["queue", "task_id"] + names),
                    ", ".join("?" * (len(names) + 2)))),
                    (self.name, task_id) + tuple(fields[n] for n in names))

    def finish(self, claim_id, task_id: str | None, **fields) -> None:
        """Ack a claim and record the attempt's outcome in one transaction."""
        with self.db(commit=True) as curs:
            self._write_finish(curs, claim_id, task_id, fields)

    @staticmethod
    def _outcome_sets(fields: dict) -> tuple[str, tuple]:
        """The SET clause (with ? placeholders) and values for an outcome."""
        fields = dict(fields)
        increment = int(fields.pop("attempts_increment", 0))
        fields["updated_at"] = time.time()
        for column in JSON_COLUMNS:
            if column in fields:
                fields[column] = _json(fields[column])
        names = sorted(fields)
        sets = ", ".join("%s = ?" % n for n in names)
        if increment:
            sets += ", attempts = attempts + %d" % increment
        return sets, tuple(fields[n] for n in names)

    def _write_finish(self, curs, claim_id, task_id, fields: dict) -> None:
        if claim_id is not None:
            curs.execute(self.q("delete from %s where id = ?" % self.t_queue), (claim_id,))
        if task_id is not None:
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

    def find_state_by_dedup(self, key: str) -> dict | None:
        rows = self._exec("select %s from %s where queue = ? and dedup_key = ? "
                          "order by enqueued_at desc limit 1" % (
                              ", ".join(STATE_COLUMNS), self.t_state),
                          (self.name, key), fetch=True)
        return _row_to_state(rows[0]) if rows else None

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
    "claimed_by text, claimed_at real)",
    "create index if not exists botlite_queue_ready on botlite_queue "
    "(queue, priority desc, id) where claimed_by is null",
    "create table if not exists botlite_state (queue text not null, task_id text not null, "
    "name text not null, lane text not null, status text not null, args text, kwargs text, "
    "result text, error text, traceback text, retries integer, "
    "attempts integer not null default 0, progress text, next_attempt_at real, "
    "enqueued_at real, started_at real, finished_at real, updated_at real not null, "
    "dedup_key text, worker text, primary key (queue, task_id)) without rowid",
    "create index if not exists botlite_state_recent on botlite_state (queue, enqueued_at)",
    "create index if not exists botlite_state_dedup on botlite_state (queue, dedup_key) "
    "where dedup_key is not null",
    "create table if not exists botlite_lock (queue text not null, key text not null, "
    "value blob not null, expires_at real not null, primary key (queue, key)) without rowid",
    "create table if not exists botlite_worker (queue text not null, id text not null, "
    "info text not null, beat_at real not null, primary key (queue, id)) without rowid",
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
    "claimed_by text, claimed_at double precision)",
    "create index if not exists botlite_queue_ready on botlite_queue "
    "(queue, priority desc, id) where claimed_by is null",
    "create table if not exists botlite_state (queue text not null, task_id text not null, "
    "name text not null, lane text not null, status text not null, args text, kwargs text, "
    "result text, error text, traceback text, retries integer, "
    "attempts integer not null default 0, progress text, "
    "next_attempt_at double precision, enqueued_at double precision, "
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
        create_tables = kwargs.pop("create_tables", True)
        super().__init__(name, create_tables=False, **kwargs)
        self.ddl = self.ddl + _POSTGRES_DDL
        if create_tables:
            self.initialize_schema()

    def _blob(self, value):
        return bytes(value)

    @property
    def conn(self):
        conn = getattr(self._thread_conns, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._thread_conns.conn = conn
            with self._open_conns_lock:
                self._open_conns = [c for c in self._open_conns if not c.closed] + [conn]
        return conn

    def close(self):
        super().close()
        with self._open_conns_lock:
            conns, self._open_conns = self._open_conns, []
        for conn in conns:
            self._close_quiet(conn)
        self._thread_conns = threading.local()
        return True

    def initialize_schema(self):
        # CREATE TABLE IF NOT EXISTS races between processes on PostgreSQL.
        with self.db(commit=True) as curs:
            curs.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for sql in self.ddl:
                curs.execute(sql)

    def sql(self, query, params=None, commit=False, results=False):
        with self.db() as curs:  # autocommit connection
            curs.execute(query, params or ())
            if results:
                return curs.fetchall()

    # One statement (one round trip) each for enqueue, claim and finish; the
    # data-modifying CTEs of one statement commit together.

    def enqueue(self, data, priority=None):
        meta = self.describe(data)
        now = time.time()
        self.sql(
            "with queued as (insert into botlite_queue (queue, lane, priority, task_id, data, "
            "enqueued_at) values (%s, %s, %s, %s, %s, %s)), "
            "state as (insert into botlite_state (queue, task_id, name, lane, status, args, "
            "kwargs, retries, attempts, enqueued_at, updated_at) values "
            "(%s, %s, %s, %s, 'PENDING', %s, %s, %s, 0, %s, %s) on conflict (queue, task_id) "
            "do update set lane = excluded.lane, updated_at = excluded.updated_at, "
            "status = case when botlite_state.status = 'RETRY' then 'RETRY' else 'PENDING' end) "
            "select pg_notify(%s, '')",
            (self.name, meta["lane"], priority or 0, meta["task_id"], bytes(data), now,
             self.name, meta["task_id"], meta["name"], meta["lane"], _json(meta["args"]),
             _json(meta["kwargs"]), meta["retries"], now, now, self.channel), results=True)

    def finish(self, claim_id, task_id, **fields):
        sets, values = self._outcome_sets(fields)
        update = self.q("update botlite_state set %s where queue = ? and task_id = ?" % sets)
        if claim_id is None:
            self.sql(update, values + (self.name, task_id))
        elif task_id is None:
            self.sql("delete from botlite_queue where id = %s", (claim_id,))
        else:
            self.sql("with acked as (delete from botlite_queue where id = %s) " + update,
                     (claim_id,) + values + (self.name, task_id))

    def claim(self, worker_id, lanes=None, oldest_first=False, finish=None):
        if finish is not None:
            self.finish(finish[0], finish[1], **finish[2])
        lanes = tuple(lanes or ())
        lane_filter = (" and lane in (%s)" % ", ".join(["%s"] * len(lanes))) if lanes else ""
        order = "id" if oldest_first else "priority desc, id"
        now = time.time()
        rows = self.sql(
            "with claimed as (update botlite_queue set claimed_by = %s, claimed_at = %s "
            "where id = (select id from botlite_queue where queue = %s and claimed_by is null"
            + lane_filter + " order by " + order + " limit 1 for update skip locked) "
            "returning id, data, task_id), "
            "started as (update botlite_state s set status = 'STARTED', started_at = %s, "
            "updated_at = %s, attempts = s.attempts + 1, worker = %s, next_attempt_at = null "
            "from claimed where s.queue = %s and s.task_id = claimed.task_id) "
            "select id, data from claimed",
            (worker_id, now, self.name) + lanes + (now, now, worker_id, self.name),
            results=True)
        if not rows:
            return None
        return rows[0][0], bytes(rows[0][1])

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

    Queued tasks sit in one sorted set per lane (score: priority, then FIFO);
    a claim moves a task atomically (Lua) into a claims hash, an ack deletes it.
    States are hashes that expire with the retention; results expire with
    ``expire_time`` like Huey's expiring Redis storage.
    """

    # Keys are built inside the scripts from a prefix (a single Redis server, not
    # a cluster). One script call per enqueue and per finish-and-claim.
    ENQUEUE = """
    local p, data, task_id, lane = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
    local priority, now = tonumber(ARGV[5]), ARGV[6]
    local seq = redis.call('incr', p .. '.counter')
    local cid = tostring(seq)
    local score = string.format('%.0f', priority * 1e12 - seq)
    redis.call('hset', p .. '.msg', cid, data)
    redis.call('hset', p .. '.meta', cid, task_id .. '|' .. lane)
    redis.call('hset', p .. '.seq', cid, seq)
    redis.call('sadd', p .. '.lanes', lane)
    redis.call('zadd', p .. '.lane.' .. lane, score, cid)
    local sk = p .. '.state.' .. task_id
    redis.call('hsetnx', sk, 'task_id', task_id)
    redis.call('hsetnx', sk, 'attempts', 0)
    redis.call('hset', sk, 'name', ARGV[7], 'lane', lane, 'args', ARGV[8], 'kwargs', ARGV[9],
               'retries', ARGV[10], 'enqueued_at', now, 'updated_at', now)
    if redis.call('hget', sk, 'status') ~= 'RETRY' then
        redis.call('hset', sk, 'status', 'PENDING')
    end
    redis.call('expire', sk, ARGV[11])
    redis.call('zadd', p .. '.recent', 'NX', now, task_id)
    redis.call('lpush', p .. '.wake', 1)
    redis.call('ltrim', p .. '.wake', 0, 63)
    return cid
    """

    # ARGV: prefix, worker, now, oldest_first, lanes ('' = all), finished claim id,
    # finished task id, attempts increment, then field/value pairs of the outcome.
    FINISH_AND_CLAIM = """
    local p, worker, now = ARGV[1], ARGV[2], ARGV[3]
    local fc, ftask, inc = ARGV[6], ARGV[7], tonumber(ARGV[8])
    if fc ~= '' then
        for _, h in ipairs({'.msg', '.meta', '.seq', '.claims'}) do redis.call('hdel', p .. h, fc) end
    end
    if ftask ~= '' then
        local sk = p .. '.state.' .. ftask
        if #ARGV > 8 then redis.call('hset', sk, unpack(ARGV, 9)) end
        if inc ~= 0 then redis.call('hincrby', sk, 'attempts', inc) end
    end
    if ARGV[4] == 'none' then return nil end
    local lanes
    if ARGV[5] == '' then lanes = redis.call('smembers', p .. '.lanes')
    else lanes = {} for lane in string.gmatch(ARGV[5], '[^,]+') do table.insert(lanes, lane) end end
    local best_key, best_member, best = nil, nil, nil
    for _, lane in ipairs(lanes) do
        local key = p .. '.lane.' .. lane
        local top
        if ARGV[4] == '1' then
            top = redis.call('zrange', key, 0, 0, 'WITHSCORES')
        else
            top = redis.call('zrevrange', key, 0, 0, 'WITHSCORES')
        end
        if top[1] then
            local rank
            if ARGV[4] == '1' then rank = -tonumber(redis.call('hget', p .. '.seq', top[1]) or '0')
            else rank = tonumber(top[2]) end
            if best == nil or rank > best then best_key, best_member, best = key, top[1], rank end
        end
    end
    if best_key == nil then return nil end
    local original = redis.call('zscore', best_key, best_member)
    redis.call('zrem', best_key, best_member)
    redis.call('hset', p .. '.claims', best_member,
               worker .. '|' .. now .. '|' .. original .. '|' .. best_key)
    local data = redis.call('hget', p .. '.msg', best_member)
    local meta = redis.call('hget', p .. '.meta', best_member) or '|'
    local tid = string.match(meta, '^([^|]*)')
    if tid ~= '' then
        local sk = p .. '.state.' .. tid
        redis.call('hset', sk, 'status', 'STARTED', 'started_at', now, 'updated_at', now,
                   'worker', worker, 'next_attempt_at', '')
        redis.call('hincrby', sk, 'attempts', 1)
    end
    return {best_member, data}
    """

    def __init__(self, name="huey", describe: Describe | None = None,
                 state_ttl: int = 7 * 86400, **kwargs):
        self.describe = describe
        self.state_ttl = state_ttl
        kwargs.setdefault("expire_time", 3600)
        super().__init__(name, **kwargs)
        self.prefix = prefix = "botlite.%s" % self.name
        self.k_lanes = prefix + ".lanes"           # set of lane names
        self.k_lane = prefix + ".lane.%s"          # zset: claim_id -> score
        self.k_msg = prefix + ".msg"               # hash: claim_id -> data
        self.k_meta = prefix + ".meta"             # hash: claim_id -> "task_id|lane"
        self.k_seq = prefix + ".seq"               # hash: claim_id -> sequence (FIFO)
        self.k_claims = prefix + ".claims"         # hash: claim_id -> "worker|time|score|lane key"
        self.k_state = prefix + ".state.%s"        # hash per task
        self.k_recent = prefix + ".recent"         # zset: task_id -> enqueued_at
        self.k_wake = prefix + ".wake"             # list: wake-up tokens
        self.k_workers = prefix + ".workers"
        self.k_dedup = prefix + ".dedup.%s"
        self._enqueue_script = self.conn.register_script(self.ENQUEUE)
        self._claim_script = self.conn.register_script(self.FINISH_AND_CLAIM)

    # -- queue ----------------------------------------------------------------

    def enqueue(self, data, priority=None):
        meta = self.describe(data)
        self._enqueue_script(args=[
            self.prefix, data, meta["task_id"], meta["lane"], priority or 0, time.time(),
            meta["name"], _json(meta["args"]), _json(meta["kwargs"]),
            "" if meta["retries"] is None else meta["retries"], self.state_ttl])

    def _finish_args(self, finish) -> list:
        if finish is None:
            return ["", "", 0]
        claim_id, task_id, fields = finish
        fields = dict(fields)
        increment = int(fields.pop("attempts_increment", 0))
        pairs = []
        if task_id is not None:
            fields["updated_at"] = time.time()
            for key, value in self._encode_fields(fields).items():
                pairs += [key, value]
        return ["" if claim_id is None else claim_id, task_id or "", increment] + pairs

    def claim(self, worker_id, lanes=None, oldest_first=False, finish=None):
        result = self._claim_script(args=[
            self.prefix, worker_id, time.time(), "1" if oldest_first else "0",
            ",".join(lanes or ())] + self._finish_args(finish))
        if result is None:
            return None
        return result[0].decode(), result[1]

    def finish(self, claim_id, task_id, **fields):
        self._claim_script(args=[self.prefix, "", time.time(), "none", ""] +
                           self._finish_args((claim_id, task_id, fields)))

    def wait_for_work(self, timeout: float) -> None:
        self.conn.blpop([self.k_wake], timeout=max(timeout, 0.01))

    def _lane_keys(self):
        return [self.k_lane % lane.decode() for lane in sorted(self.conn.smembers(self.k_lanes))]

    def _drop_message(self, pipe, claim_id):
        pipe.hdel(self.k_msg, claim_id)
        pipe.hdel(self.k_meta, claim_id)
        pipe.hdel(self.k_seq, claim_id)
        pipe.hdel(self.k_claims, claim_id)

    def ack(self, claim_id):
        pipe = self.conn.pipeline()
        self._drop_message(pipe, claim_id)
        pipe.execute()

    def release_claims(self, worker_ids=None, alive=(), older_than=None):
        released = 0
        now = time.time()
        alive = set(alive)
        wanted = set(worker_ids) if worker_ids is not None else None
        for claim_id, value in self.conn.hgetall(self.k_claims).items():
            worker, claimed_at, score, lane_key = value.decode().split("|", 3)
            if wanted is not None:
                if worker not in wanted:
                    continue
            elif worker in alive or now - float(claimed_at) < (older_than or 0):
                continue
            meta = (self.conn.hget(self.k_meta, claim_id) or b"|").decode()
            task_id = meta.split("|", 1)[0]
            if not self.conn.hdel(self.k_claims, claim_id):
                continue  # acked or released meanwhile
            self.conn.zadd(lane_key, {claim_id: float(score)})
            if task_id and self.conn.hget(self.k_state % task_id, "status") == b"STARTED":
                self.conn.hset(self.k_state % task_id, mapping={
                    "status": "PENDING", "updated_at": now})
            released += 1
        return released

    def claim_owners(self):
        return {value.decode().split("|", 1)[0] for value in self.conn.hvals(self.k_claims)}

    def remove_queued(self, task_id):
        for claim_id, meta in self.conn.hgetall(self.k_meta).items():
            tid, lane = meta.decode().split("|", 1)
            if tid == task_id and self.conn.zrem(self.k_lane % lane, claim_id):
                self.ack(claim_id)
                return True
        return False

    def purge_lane(self, lane):
        key = self.k_lane % lane
        removed = []
        for claim_id in self.conn.zrange(key, 0, -1):
            if self.conn.zrem(key, claim_id):
                meta = (self.conn.hget(self.k_meta, claim_id) or b"|").decode()
                removed.append(meta.split("|", 1)[0])
                self.ack(claim_id)
        return removed

    def lane_counts(self):
        counts = {}
        for lane in sorted(n.decode() for n in self.conn.smembers(self.k_lanes)):
            counts[lane] = {"pending": self.conn.zcard(self.k_lane % lane), "running": 0}
        for value in self.conn.hvals(self.k_claims):
            lane_key = value.decode().split("|", 3)[3]
            lane = lane_key[len(self.k_lane % ""):]
            counts.setdefault(lane, {"pending": 0, "running": 0})["running"] += 1
        return {lane: c for lane, c in counts.items() if c["pending"] or c["running"]}

    def queue_size(self):
        return sum(self.conn.zcard(key) for key in self._lane_keys())

    def enqueued_items(self, limit=None):
        members = []
        for key in self._lane_keys():
            members.extend(self.conn.zrevrange(key, 0, -1, withscores=True))
        members.sort(key=lambda m: -m[1])
        if limit is not None:
            members = members[:limit]
        return [self.conn.hget(self.k_msg, m) for m, _ in members]

    def flush_queue(self):
        keys = self._lane_keys()
        pipe = self.conn.pipeline()
        for key in keys + [self.k_msg, self.k_meta, self.k_seq, self.k_claims, self.k_lanes]:
            pipe.delete(key)
        pipe.execute()

    # -- states ----------------------------------------------------------------

    def _state_from_hash(self, raw: dict) -> dict | None:
        if not raw or b"status" not in raw:
            return None
        state = {column: None for column in STATE_COLUMNS}
        for key, value in raw.items():
            column = key.decode()
            text = value.decode()
            if column in JSON_COLUMNS:
                state[column] = json.loads(text) if text != "" else None
            elif column in ("retries", "attempts"):
                state[column] = int(text) if text != "" else None
            elif column in ("next_attempt_at", "enqueued_at", "started_at", "finished_at",
                            "updated_at"):
                state[column] = float(text) if text != "" else None
            else:
                state[column] = text if text != "" else None
        return state

    @staticmethod
    def _encode_fields(fields: dict) -> dict:
        encoded = {}
        for key, value in fields.items():
            if key in JSON_COLUMNS:
                value = _json(value)
            encoded[key] = "" if value is None else value
        return encoded

    def save_state(self, task_id, **fields):
        increment = fields.pop("attempts_increment", 0)
        fields["updated_at"] = time.time()
        key = self.k_state % task_id
        pipe = self.conn.pipeline()
        pipe.hsetnx(key, "task_id", task_id)
        pipe.hsetnx(key, "status", "PENDING")
        pipe.hsetnx(key, "name", "")
        pipe.hsetnx(key, "lane", "default")
        pipe.hset(key, mapping=self._encode_fields(fields))
        if increment:
            pipe.hincrby(key, "attempts", increment)
        pipe.expire(key, self.state_ttl)
        pipe.zadd(self.k_recent, {task_id: fields.get("enqueued_at") or time.time()}, nx=True)
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
        return sum(1 for _ in self.list_states(status=status, limit=10 ** 9))

    def find_state_by_dedup(self, key):
        task_id = self.conn.get(self.k_dedup % key)
        return self.get_state(task_id.decode()) if task_id else None

    def remember_dedup(self, key: str, task_id: str, ttl: float) -> None:
        self.conn.set(self.k_dedup % key, task_id, ex=max(int(ttl), 1))

    def prune_states(self, results_before, states_before):
        results = states = 0
        for task_id in self.conn.zrangebyscore(self.k_recent, "-inf", "+inf"):
            key = self.k_state % task_id.decode()
            raw = self.conn.hmget(key, "status", "finished_at", "result")
            status, finished_at, result = raw
            if status is None:
                self.conn.zrem(self.k_recent, task_id)
                continue
            if status.decode() not in FINISHED or not finished_at:
                continue
            finished_at = float(finished_at)
            if finished_at < states_before:
                self.conn.delete(key)
                self.conn.zrem(self.k_recent, task_id)
                states += 1
            elif finished_at < results_before and result:
                self.conn.hset(key, "result", "")
                results += 1
        return results, states

    # -- locks with a TTL (native), heartbeats --------------------------------------

    def put_if_empty(self, key, value, ttl=None):
        if ttl is None:
            return super().put_if_empty(key, value)
        return bool(self.conn.set(self.result_key(key), value, nx=True,
                                  px=max(int(ttl * 1000), 1)))

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
        for key in self.conn.scan_iter("botlite.%s.*" % self.name):
            self.conn.delete(key)
