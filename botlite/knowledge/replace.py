"""Replacing a source's chunks without holding the database's write lock for long.

Search shows a source's chunks whose ``generation`` equals ``source.generation``.
A run (`Replacement`):

1. claims a new generation: ``source.staging`` = the next number (one short
   transaction);
2. deletes what earlier runs that crashed or were superseded left behind;
3. writes its chunks under the new generation, in transactions of at most
   `BATCH_ROWS` rows or `BATCH_CHARS` characters, each checking that the claim
   is still its own;
4. flips ``source.generation`` to the new one, with the chunk count and the
   other fields that describe the new set (one short transaction, checking the
   claim);
5. deletes the older generations' chunks, `BATCH_ROWS` at a time.

So readers see the old set until the flip and the new set after it, never a
mix nor both; ``source.chunk_count`` changes only at the flip; a crash before
the flip leaves the old set live and the next run's step 2 removes what was
written. A newer run's claim supersedes an older one: the older run's next
transaction sees it and stops (`Superseded`), so nothing it writes afterwards
can outlive the newer run's step 2.

SQLite has one writer at a time and others wait for it (``busy_timeout``) by
polling. A writer that took the lock again right after each commit would
starve them, so between transactions this one leaves the lock free for
`YIELD_SHARE` of the time it held it (time spent preparing the next batch
counts).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable, Sequence

import peewee

from botlite.db import database, write_transaction
from botlite.knowledge import index
from botlite.models import Chunk, Source

BATCH_ROWS = 500
"""Chunks written or deleted per transaction at most."""
BATCH_CHARS = 400_000
"""Characters of chunk text written per transaction at most (indexing cost follows the text)."""
YIELD_SHARE = 0.3
"""After each transaction the lock stays free for this share of the time it was held."""


class Superseded(Exception):
    """A newer run of the same source claimed it; this run's work is dropped."""


class SourceGone(LookupError):
    """The source was deleted while its task waited or ran."""


class _Pacer:
    """Short write transactions with a pause after each, so other writers get a turn."""

    def __init__(self) -> None:
        self._released = 0.0
        self._owed = 0.0

    @contextlib.contextmanager
    def transaction(self):
        wait = self._owed - (time.monotonic() - self._released)
        if wait > 0:
            time.sleep(wait)
        with write_transaction():
            started = time.monotonic()
            yield
        self._released = time.monotonic()
        self._owed = (self._released - started) * YIELD_SHARE


def locked_source(source_id: str) -> Source:
    """The source, locked for this transaction: runs of one source take turns
    (SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs the row lock)."""
    query = Source.select().where(Source.id == source_id)
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        query = query.for_update()
    source = query.first()
    if source is None:
        raise SourceGone(source_id)
    return source


class Replacement:
    """One run's new set of chunks for a source (see the module's docstring).

    ``on_batch`` is called after each transaction (progress, stop requests);
    it may raise to abandon the run, which leaves the old set live.
    """

    def __init__(self, source_id: str, on_batch: Callable[[], None] | None = None) -> None:
        self.source_id = source_id
        self.count = 0
        self._on_batch = on_batch or (lambda: None)
        self._pacer = _Pacer()
        self._batch: list[dict] = []
        self._batch_chars = 0
        with self._pacer.transaction():
            source = locked_source(source_id)
            self.live = source.generation
            self.generation = max(source.generation, source.staging or 0) + 1
            Source.update(staging=self.generation).where(Source.id == source_id).execute()
            leftovers = (Chunk.generation != self.live) & (Chunk.generation < self.generation)
            more = self._delete_batch(leftovers)
        while more:
            with self._pacer.transaction():
                more = self._delete_batch(leftovers)

    def write(self, rows: Iterable[dict]) -> int:
        """Add chunk rows (`index.chunk_rows` with this run's ``generation``); they
        are written in batches, the last one by `flip` at the latest."""
        for row in rows:
            self._batch.append(row)
            self._batch_chars += len(row["text"])
            if len(self._batch) >= BATCH_ROWS or self._batch_chars >= BATCH_CHARS:
                self._insert()
        return self.count + len(self._batch)

    def copy(self, page_ids: Sequence[int]) -> int:
        """Carry the live chunks of these pages (unchanged since the last run) over."""
        if self._batch:
            self._insert()
        for start in range(0, len(page_ids), 50):
            with self._claimed():
                self.count += index.copy_chunks(self.source_id, page_ids[start:start + 50],
                                                self.live, self.generation)
            self._on_batch()
        return self.count

    def flip(self, before: Callable[[Source], None] | None = None,
             finished: dict | None = None, **fields) -> None:
        """Make the new set the one search shows, updating the source's ``fields``
        (``before(source)`` runs first in the same transaction); then delete the
        old set, setting the ``finished`` fields in the transaction that deletes
        its last chunks."""
        if self._batch:
            self._insert()
        old = Chunk.generation < self.generation
        with self._claimed() as source:
            if before is not None:
                before(source)
            Source.update(generation=self.generation, staging=None, chunk_count=self.count,
                          **fields).where(Source.id == self.source_id).execute()
            more = self._delete_batch(old)
            if not more and finished:
                Source.update(**finished).where(Source.id == self.source_id).execute()
        while more:
            with self._pacer.transaction():
                more = self._delete_batch(old)
                if not more and finished:
                    Source.update(**finished).where(Source.id == self.source_id).execute()

    def _insert(self) -> None:
        with self._claimed():
            self.count += index.insert_chunks(self._batch)
        self._batch, self._batch_chars = [], 0
        self._on_batch()

    @contextlib.contextmanager
    def _claimed(self):
        with self._pacer.transaction():
            source = locked_source(self.source_id)
            if source.staging != self.generation:
                raise Superseded(self.source_id)
            yield source

    def _delete_batch(self, condition) -> bool:
        """Delete up to `BATCH_ROWS` of this source's chunks matching ``condition``
        (never the live ones: every caller's condition excludes their generation);
        True when there may be more."""
        ids = (Chunk.select(Chunk.id).where((Chunk.source == self.source_id) & condition)
               .limit(BATCH_ROWS))
        return Chunk.delete().where(Chunk.id.in_(ids)).execute() >= BATCH_ROWS


def hide_and_delete(source_id: str) -> None:
    """Delete a source's chunks in batches after hiding them all at once (a new
    generation without chunks; generations only grow, so chunks a crash leaves
    behind never come back). A run still writing is superseded."""
    pacer = _Pacer()
    with pacer.transaction():
        source = locked_source(source_id)
        Source.update(generation=max(source.generation, source.staging or 0) + 1,
                      staging=None).where(Source.id == source_id).execute()
    while True:
        with pacer.transaction():
            ids = Chunk.select(Chunk.id).where(Chunk.source == source_id).limit(BATCH_ROWS)
            if Chunk.delete().where(Chunk.id.in_(ids)).execute() < BATCH_ROWS:
                return
