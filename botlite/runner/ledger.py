"""What the runner records beside the queue: which worker processes are alive.

It lives with the queue (same SQLite file, PostgreSQL database or Redis), so
web nodes and worker nodes of one deployment see the same picture.
"""
from __future__ import annotations

import json
import time
from typing import Protocol

import peewee
from playhouse.db_url import connect as connect_url

from botlite.runner.broker import SQLITE_PREFIX


class Ledger(Protocol):
    def beat(self, worker_id: str, info: dict) -> None: ...
    def workers(self, max_age: float) -> list[dict]: ...
    def forget(self, worker_id: str) -> None: ...
    def close(self) -> None: ...


class SqlLedger:
    """Heartbeats in a ``botlite_worker`` table of the broker database."""

    def __init__(self, url: str) -> None:
        if url.startswith(SQLITE_PREFIX):
            self.db = peewee.SqliteDatabase(
                url[len(SQLITE_PREFIX):],
                pragmas={"journal_mode": "wal", "busy_timeout": 10000})
        else:
            self.db = connect_url(url)

        class WorkerBeat(peewee.Model):
            id = peewee.CharField(primary_key=True, max_length=100)
            info = peewee.TextField()
            beat_at = peewee.DoubleField(index=True)

            class Meta:
                database = self.db
                table_name = "botlite_worker"

        self.WorkerBeat = WorkerBeat
        with self.db.connection_context():
            self.db.create_tables([WorkerBeat], safe=True)

    def beat(self, worker_id: str, info: dict) -> None:
        with self.db.connection_context():
            (self.WorkerBeat
             .insert(id=worker_id, info=json.dumps(info), beat_at=time.time())
             .on_conflict(conflict_target=[self.WorkerBeat.id],
                          preserve=[self.WorkerBeat.info, self.WorkerBeat.beat_at])
             .execute())

    def workers(self, max_age: float) -> list[dict]:
        cutoff = time.time() - max_age
        with self.db.connection_context():
            rows = list(self.WorkerBeat.select()
                        .where(self.WorkerBeat.beat_at >= cutoff)
                        .order_by(self.WorkerBeat.beat_at.desc()))
        return [dict(json.loads(row.info), id=row.id, beat_at=row.beat_at) for row in rows]

    def forget(self, worker_id: str) -> None:
        with self.db.connection_context():
            self.WorkerBeat.delete().where(self.WorkerBeat.id == worker_id).execute()

    def close(self) -> None:
        self.db.close()


class RedisLedger:
    """Heartbeats in one Redis hash; entries older than ``max_age`` are ignored."""

    def __init__(self, client, name: str) -> None:
        self.client = client
        self.key = "botlite.workers.%s" % name

    def beat(self, worker_id: str, info: dict) -> None:
        self.client.hset(self.key, worker_id, json.dumps(dict(info, beat_at=time.time())))

    def workers(self, max_age: float) -> list[dict]:
        cutoff = time.time() - max_age
        found, stale = [], []
        for worker_id, raw in self.client.hgetall(self.key).items():
            entry = json.loads(raw)
            if entry["beat_at"] >= cutoff:
                found.append(dict(entry, id=worker_id.decode()))
            elif entry["beat_at"] < cutoff - 3600:
                stale.append(worker_id)
        if stale:
            self.client.hdel(self.key, *stale)
        return sorted(found, key=lambda e: -e["beat_at"])

    def forget(self, worker_id: str) -> None:
        self.client.hdel(self.key, worker_id)

    def close(self) -> None:
        pass


def ledger_for(url: str, huey) -> Ledger:
    if url.startswith(("redis://", "rediss://")):
        return RedisLedger(huey.storage.conn, huey.name)
    return SqlLedger(url)
