"""The searchable index of chunks: SQLite FTS5 with BM25 (PostgreSQL: its own
full-text search), and the one-transaction replacement of a source's chunks.

``search(bot_id, query, k)`` is what chat uses. User text never reaches FTS5
syntax: it is cut into words and each word is quoted, so quotes, AND/OR/NEAR,
``*``, ``:`` and unbalanced parentheses are just words.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import peewee

from botlite.db import database
from botlite.knowledge.chunk import Chunk as TextChunk
from botlite.models import Chunk, Page, Source

_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to help ranking; dropped from queries that have other words.
STOPWORDS = frozenset("""
a about an and are as at be by can could do does did for from how i if in into is it its
me my of on or our should so than that the their them then there these they this to us
was we were what when where which who why will with would you your
""".split())
MAX_QUERY_TERMS = 32
# BM25 column weights: bot token (filter only), title, heading, text.
WEIGHTS = (0.0, 3.0, 2.0, 1.0)


@dataclass
class Hit:
    chunk_id: int
    source_id: str
    page_id: int | None
    url: str | None
    title: str | None
    heading: str | None
    locator: str | None
    text: str
    score: float  # 0..1, higher is more relevant


def bot_token(bot_id: str) -> str:
    """A single FTS token for a bot id (ids contain '-' and '_', which split)."""
    return "b" + hashlib.sha1(bot_id.encode("utf-8")).hexdigest()[:16]


def query_terms(query: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(query)]
    content = [w for w in words if w not in STOPWORDS]
    terms = content or words
    seen, unique = set(), []
    for term in terms:
        if term not in seen:
            seen.add(term)
            unique.append(term)
    return unique[:MAX_QUERY_TERMS]


def match_expression(bot_id: str, query: str) -> str | None:
    """An FTS5 MATCH expression for ``query`` within one bot, or None (no words)."""
    terms = query_terms(query)
    if not terms:
        return None
    quoted = " OR ".join('"%s"' % t.replace('"', '""') for t in terms)
    return 'bot : "%s" AND (%s)' % (bot_token(bot_id), quoted)


_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "es", "ed", "ly", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[:-len(suffix)]
    return word


def _scored(rows: list, terms: list[str]) -> list[Hit]:
    """Hits with a 0..1 score: the share of query terms the chunk contains (BM25
    alone says nothing absolute: with few chunks every IDF is near zero), nudged
    by its BM25 rank relative to the best hit."""
    if not rows:
        return []
    stems = {_stem(t) for t in terms}
    best = max(row[8] for row in rows) or 1.0
    hits = []
    for row in rows:
        words = {_stem(w.lower()) for w in _WORD.findall(" ".join(
            part for part in (row[4], row[5], row[7]) if part))}
        coverage = len(stems & words) / len(stems) if stems else 0.0
        relative = max(row[8], 0.0) / best if best > 0 else 0.0
        hits.append(Hit(*row[:8], score=round(0.8 * coverage + 0.2 * relative, 4)))
    return hits


def search(bot_id: str, query: str, k: int = 5) -> list[Hit]:
    """The ``k`` chunks of ``bot_id`` that best match ``query``, best first."""
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        return _search_postgres(bot_id, query, k)
    expression = match_expression(bot_id, query)
    if expression is None:
        return []
    cursor = database.execute_sql(
        "select c.id, c.source_id, c.page_id, c.url, c.title, c.heading, c.locator, c.text, "
        "-bm25(chunk_index, %s) as relevance from chunk_index "
        "join chunk c on c.id = chunk_index.rowid "
        "where chunk_index match ? order by bm25(chunk_index, %s) limit ?"
        % (", ".join(map(str, WEIGHTS)), ", ".join(map(str, WEIGHTS))),
        (expression, k))
    return _scored(cursor.fetchall(), query_terms(query))


def _search_postgres(bot_id: str, query: str, k: int) -> list[Hit]:
    terms = query_terms(query)
    if not terms:
        return []
    # websearch_to_tsquery never raises on user text; OR keeps recall like FTS5.
    text = " or ".join(terms)
    cursor = database.execute_sql(
        "select id, source_id, page_id, url, title, heading, locator, text, "
        "ts_rank_cd(tsv, q, 32) * 10 as relevance "
        "from chunk, websearch_to_tsquery('english', %s) q "
        "where chatbot_id = %s and tsv @@ q order by relevance desc limit %s",
        (text, bot_id, k))
    return _scored([row[:8] + (float(row[8]),) for row in cursor.fetchall()], terms)


def chunk_rows(source: Source, chunks: Sequence[TextChunk], *, page: Page | None = None,
               url: str | None = None, title: str | None = None) -> list[dict]:
    token = bot_token(source.chatbot_id)
    return [{"source": source.id, "page": page.id if page is not None else None,
             "chatbot_id": source.chatbot_id, "bot": token, "url": url,
             "title": title, "heading": chunk.heading, "locator": chunk.locator,
             "position": chunk.position, "text": chunk.text} for chunk in chunks]


def insert_chunks(rows: Iterable[dict]) -> int:
    rows = list(rows)
    for start in range(0, len(rows), 200):
        Chunk.insert_many(rows[start:start + 200]).execute()
    return len(rows)
