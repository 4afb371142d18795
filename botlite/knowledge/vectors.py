"""Chunks' sentence embeddings: building them, keeping them, searching them.

A source is searchable with BM25 as soon as it is indexed; `build` (the
low-priority task ``embed_chunks``) then embeds its live chunks `embedding.BATCH`
at a time and stores each vector beside its chunk (``chunk_vector``, float16
bytes, deleted with the chunk), in transactions of at most `WRITE_ROWS`. A
website re-crawl copies the vectors of the pages it carries over with their
chunks (`copy_vectors`, in the same transaction), so only changed pages are
embedded again.

`dense_search` ranks a bot's live chunks by cosine to the question, over one
float32 matrix per bot held in memory (`_Matrices`: numpy float16 products are
10x slower). The matrix holds only chunks of the generation each source shows,
so a re-upload never mixes old and new: it is reloaded when a source's
generation changes, and extended with the vectors written since (each write
bumps the bot's ``vector_version``) otherwise.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import peewee

from botlite.db import database, execute, write_transaction
from botlite.knowledge import embedding

logger = logging.getLogger(__name__)

READ_ROWS = 64
"""Chunks read per step of a build (embedded `embedding.BATCH` at a time)."""
WRITE_ROWS = 64
"""Vectors written per transaction."""
DENSE_CANDIDATES = 50
"""Chunks the dense side hands to the fusion."""

# Chunks of the generation their source shows.
_LIVE = "c.generation = (select generation from source s where s.id = c.source_id)"


def passage_text(title: str | None, heading: str | None, text: str) -> str:
    """What is embedded for a chunk: its section heading, then its text."""
    return "%s\n%s" % (heading, text) if heading and heading != title else text


def _pack(vector) -> bytes:
    return vector.astype("<f2").tobytes()


def _bump(bot_id: str) -> int:
    """The bot's next vector version (inside the caller's transaction)."""
    execute("insert into vector_version (chatbot_id, version) values (?, 1) "
            "on conflict (chatbot_id) do update set version = vector_version.version + 1",
            (bot_id,))
    return execute("select version from vector_version where chatbot_id = ?",
                   (bot_id,)).fetchone()[0]


_INSERT = ("insert into chunk_vector (chunk_id, chatbot_id, model, version, vector) "
           "select id, chatbot_id, ?, ?, ? from chunk where id = ? "
           "on conflict (chunk_id, model) do update set version = excluded.version, "
           "vector = excluded.vector")


def _write(model: str, rows: Sequence[tuple[int, str, bytes]]) -> int:
    """Store vectors (chunk id, bot id, bytes) of chunks that still exist. Bots'
    versions are bumped in id order (two builders never wait for each other's
    rows in opposite orders); a chunk deleted meanwhile (PostgreSQL: its delete
    not committed when the batch began) is skipped, not a failure."""
    try:
        with write_transaction():
            return _insert(model, rows)
    except peewee.IntegrityError:
        written = 0
        for row in rows:
            try:
                with write_transaction():
                    written += _insert(model, [row])
            except peewee.IntegrityError:
                logger.info("chunk %s went away before its vector was stored", row[0])
        return written


def _insert(model: str, rows: Sequence[tuple[int, str, bytes]]) -> int:
    versions = {bot_id: _bump(bot_id) for bot_id in sorted({row[1] for row in rows})}
    written = 0
    for chunk_id, bot_id, blob in rows:
        written += max(execute(_INSERT, (model, versions[bot_id], blob, chunk_id)).rowcount, 0)
    return written


def build(embedder: "embedding.Embedder", bot_id: str | None = None,
          on_batch: Callable[[int], None] | None = None) -> int:
    """Embed every live chunk (of ``bot_id``, or of all bots) that has no vector
    of ``embedder``'s model; returns how many were written. Chunks are taken in
    id order from where the last step ended, so each is read once; ``on_batch``
    (the count so far) may raise to stop."""
    last, done = 0, 0
    where = "and c.chatbot_id = ? " if bot_id else ""
    while True:
        params = (embedder.model_id, last) + ((bot_id,) if bot_id else ())
        rows = execute(
            "select c.id, c.chatbot_id, c.title, c.heading, c.text from chunk c "
            "left join chunk_vector v on v.chunk_id = c.id and v.model = ? "
            "where c.id > ? %sand v.chunk_id is null and %s order by c.id limit %d"
            % (where, _LIVE, READ_ROWS), params).fetchall()
        if not rows:
            return done
        last = rows[-1][0]
        vectors = embedder.embed([passage_text(title, heading, text)
                                  for _, _, title, heading, text in rows])
        for start in range(0, len(rows), WRITE_ROWS):
            done += _write(embedder.model_id, [
                (row[0], row[1], _pack(vector)) for row, vector in
                zip(rows[start:start + WRITE_ROWS], vectors[start:start + WRITE_ROWS])])
        if on_batch is not None:
            on_batch(done)


def copy_vectors(source_id: str, page_ids: Sequence[int], generation: int,
                 new_generation: int) -> int:
    """Give the chunks just copied to ``new_generation`` (`index.copy_chunks`,
    same transaction) the vectors of the chunks they were copied from."""
    if not page_ids:
        return 0
    marks = ", ".join("?" * len(page_ids))
    bot = execute("select chatbot_id from source where id = ?", (source_id,)).fetchone()
    if bot is None or execute("select 1 from chunk_vector where chatbot_id = ? limit 1",
                              (bot[0],)).fetchone() is None:
        return 0  # no vectors (semantic search off, or none built yet): nothing to copy
    version = _bump(bot[0])
    return max(execute(
        "insert into chunk_vector (chunk_id, chatbot_id, model, version, vector) "
        "select n.id, n.chatbot_id, v.model, ?, v.vector from chunk n "
        "join chunk o on o.source_id = n.source_id and o.page_id = n.page_id "
        "and o.position = n.position and o.generation = ? "
        "join chunk_vector v on v.chunk_id = o.id "
        "where n.source_id = ? and n.generation = ? and n.page_id in (%s) "
        "on conflict (chunk_id, model) do nothing" % marks,
        (version, generation, source_id, new_generation, *page_ids)).rowcount, 0)


def rebuild(embedder: "embedding.Embedder | None" = None, bot_id: str | None = None) -> int:
    """Forget the vectors (of ``bot_id``, or all; of every model) so the next
    `build` embeds every chunk again; returns how many were deleted. The bots'
    epoch changes, so every process reloads what it holds of them."""
    with write_transaction():
        if bot_id:
            count = execute("delete from chunk_vector where chatbot_id = ?", (bot_id,)).rowcount
            bots = [bot_id]
        else:
            count = execute("delete from chunk_vector").rowcount
            bots = [bot for (bot,) in execute("select id from chatbot order by id").fetchall()]
        for bot in bots:
            _bump(bot)
            execute("update vector_version set epoch = epoch + 1 where chatbot_id = ?", (bot,))
    _matrices.forget()
    return max(count, 0)


@dataclass
class Progress:
    chunks: int
    vectors: int

    def to_dict(self) -> dict:
        return {"chunks": self.chunks, "vectors": self.vectors,
                "done": self.vectors >= self.chunks}


def progress(model: str | None, bot_id: str | None = None) -> dict[str, Progress]:
    """Per source (of ``bot_id``, or all): its live chunks and how many have a
    vector of ``model`` (None: any model)."""
    where = "where c.chatbot_id = ? and " if bot_id else "where "
    params: tuple = ((model,) if model else ()) + ((bot_id,) if bot_id else ())
    rows = execute(
        "select c.source_id, count(*), count(v.chunk_id) from chunk c "
        "left join chunk_vector v on v.chunk_id = c.id %s %s%s group by c.source_id"
        % ("and v.model = ?" if model else "", where, _LIVE), params).fetchall()
    return {source_id: Progress(chunks, vectors) for source_id, chunks, vectors in rows}


def pending(model: str) -> int:
    """Live chunks of every bot without a vector of ``model``."""
    return execute("select count(*) from chunk c left join chunk_vector v on v.chunk_id = c.id "
                   "and v.model = ? where v.chunk_id is null and %s" % _LIVE,
                   (model,)).fetchone()[0]


# --- the in-memory matrices -----------------------------------------------------------

class _Matrix:
    """One bot's live vectors: ``ids[i]`` is the chunk of row ``i`` of ``rows``
    (float32, capacity doubled as vectors arrive; rows past ``count`` are unused)."""

    def __init__(self, np, key, version: int) -> None:
        self.np = np
        self.key = key
        self.version = version
        self.rows = np.empty((0, embedding.DIMENSIONS), dtype=np.float32)
        self.ids = np.empty(0, dtype=np.int64)
        self.count = 0
        self.position: dict[int, int] = {}

    def extend(self, ids: list[int], blobs: list[bytes]) -> None:
        np = self.np
        if not ids:
            return
        new = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(
            len(ids), embedding.DIMENSIONS).astype(np.float32)
        needed = self.count + len(ids)
        if needed > len(self.rows):
            capacity = max(needed, 2 * len(self.rows), 64)
            rows = np.empty((capacity, embedding.DIMENSIONS), dtype=np.float32)
            rows[:self.count] = self.rows[:self.count]
            chunk_ids = np.empty(capacity, dtype=np.int64)
            chunk_ids[:self.count] = self.ids[:self.count]
            self.rows, self.ids = rows, chunk_ids
        self.rows[self.count:needed] = new
        self.ids[self.count:needed] = ids
        self.position.update(zip(ids, range(self.count, needed)))
        self.count = needed


class _Matrices:
    """The matrix of each bot this process searched (see the module's docstring).

    Before each search two small reads say whether it is current: the bot's
    sources with their generations, and its vector version."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_bot: dict[tuple, _Matrix] = {}

    def forget(self) -> None:
        with self.lock:
            self.by_bot.clear()

    def get(self, np, bot_id: str, model: str) -> _Matrix:
        sources = tuple(execute("select id, generation from source where chatbot_id = ? "
                                "order by id", (bot_id,)).fetchall())
        row = execute("select version, epoch from vector_version where chatbot_id = ?",
                      (bot_id,)).fetchone()
        version, epoch = row if row else (0, 0)
        sources = (epoch, sources)
        slot = (id(database.obj), bot_id, model)
        matrix = self.by_bot.get(slot)
        if matrix is not None and matrix.key == sources and matrix.version == version:
            return matrix
        with self.lock:
            matrix = self.by_bot.get(slot)
            if matrix is None or matrix.key != sources:
                matrix, since = _Matrix(np, sources, version), None
            elif matrix.version != version:
                since = matrix.version
            else:
                return matrix
            self._load(matrix, bot_id, model, since, version)
            self.by_bot[slot] = matrix
            return matrix

    @staticmethod
    def _load(matrix: _Matrix, bot_id: str, model: str, since: int | None,
              version: int) -> None:
        newer = "and v.version > %d " % since if since is not None else ""
        cursor = execute(
            "select v.chunk_id, v.vector from chunk_vector v join chunk c on c.id = v.chunk_id "
            "where v.chatbot_id = ? and v.model = ? and v.version <= ? %sand %s"
            % (newer, _LIVE), (bot_id, model, version))
        known = matrix.position
        while True:
            rows = cursor.fetchmany(2000)
            if not rows:
                break
            fresh = [(chunk_id, bytes(blob)) for chunk_id, blob in rows if chunk_id not in known]
            matrix.extend([r[0] for r in fresh], [r[1] for r in fresh])
        matrix.version = version


_matrices = _Matrices()


def matrix(embedder: "embedding.Embedder", bot_id: str) -> _Matrix:
    """The bot's live vectors of ``embedder``'s model, brought up to date."""
    return _matrices.get(embedder._np, bot_id, embedder.model_id)


def dense_search(embedder: "embedding.Embedder", bot_id: str, query: str,
                 k: int = DENSE_CANDIDATES, query_vector=None, matrix: _Matrix | None = None):
    """The bot's ``k`` live chunks nearest ``query`` as (chunk ids, cosines),
    best first, and a function giving the cosine of any chunk id (None for a
    chunk without a vector). Empty when the bot has no vectors yet.
    ``matrix``: the bot's `matrix`, when the caller has it already."""
    np = embedder._np
    if matrix is None:
        matrix = _matrices.get(np, bot_id, embedder.model_id)
    count, rows, ids = matrix.count, matrix.rows, matrix.ids
    if not count:
        return [], [], lambda chunk_id: None
    if query_vector is None:
        query_vector = embedder.embed_query(query)
    scores = rows[:count] @ query_vector
    if count > k:
        top = np.argpartition(-scores, k)[:k]
    else:
        top = np.arange(count)
    top = top[np.argsort(-scores[top], kind="stable")]
    position = matrix.position

    def cosine(chunk_id: int):
        index = position.get(chunk_id)
        return None if index is None or index >= count else float(scores[index])

    return [int(i) for i in ids[top]], [float(s) for s in scores[top]], cosine
