"""The searchable index of chunks: SQLite FTS5 with BM25 (PostgreSQL: its own
full-text search), and the one-transaction replacement of a source's chunks.

``search(bot_id, query, k)`` is what chat uses. User text never reaches FTS5
syntax: it is cut into words and each word is quoted, so quotes, AND/OR/NEAR,
``*``, ``:`` and unbalanced parentheses are just words. Words joined by - . / + :
("apt-get", "sources.list") are also searched as a phrase. The same word is
written in several ways, so words joined by hyphens are also searched run
together ("non-interactive", "noninteractive"), and a word of `SPLIT_FROM`
to `SPLIT_UPTO` letters that fewer than `SPLIT_RARE` chunks hold also as the
two words it can be cut into, of `SPLIT_PART` letters or more each, that the
index holds as a phrase ("metapackage" finds "meta-packages", "timezone" "time
zone"; the cuts, at most `MAX_SPLITS`, are counted in the statement that
counts the terms, only for such words).

A search has two steps. BM25 (title, heading and text weighted 3:2:1) picks the
`CANDIDATES` best chunks holding any of the query's terms; they are then
re-ranked by what BM25 over one chunk does not see. Documentation answers a
question on one page, spread over several chunks, so a chunk gains from its
page's next best chunks, and from a title or heading that names the query's
terms; no page fills the results while other pages match (`PER_PAGE`). Each
hit's ``score`` (0..1) says how much of the query the chunk covers, rare terms
counting more, so a question about something the bot has never seen scores low.

SQLite's BM25 reads the whole list of chunks holding each term it ranks (for
the term's document frequency) and scores every chunk that matches, so a term
in most chunks of a large index costs milliseconds. Terms are therefore
counted first, up to `COMMON` each, and only the rarest go to BM25 while their
chunks stay within `MATCH_BUDGET`; the others count in the re-ranking.

Every statement is scoped to the bot inside the MATCH expression (its token is
in every one of its chunks), so another bot's index, however large, costs its
searches nothing; a question is cut to a bounded number of bounded terms
(`query_terms`), and a search past `SEARCH_BUDGET_S` is interrupted.
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import hashlib
import logging
import math
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import peewee

from botlite.db import database
from botlite.knowledge import embedding, vectors
from botlite.knowledge.chunk import Chunk as TextChunk
from botlite.models import Page, Source

logger = logging.getLogger(__name__)

# A word, or words joined without spaces by - . / + : ("apt-get", "sources.list",
# "/etc/shadow"), kept together as one term (an FTS5 phrase) besides its words;
# the tail of a contraction ("don't", "let's") is cut off.
_WORD = re.compile(r"\w+(?:[-./+:]\w+)*(?:['\u2019]\w+)?")
_WORD_AT = re.compile(r"\w+")
_HYPHENATED = re.compile(r"\w+(?:-\w+)+")
_APOSTROPHE = re.compile(r"['\u2019]\w+$")
# Words that say nothing about a topic: function words, the pieces of
# contractions ("don't" is "don" "t") and the verbs and adverbs questions are
# phrased with. They are dropped from queries that have other words.
STOPWORDS = frozenset("""
a about above after again against all also always am an and any anything are as at
be because been before being below best better between both but by can cannot could
d did didn do does doesn doing don down during each either else even ever every
everything few for from further get gets getting give given gives go goes going got
had hadn has hasn have haven having he her here hers him his how i if in instead into
is isn it its itself just know like ll m make makes making many may me might more
most much must my myself need needs never no nor not of off on once only or other
our ours out over own please possible put re really s same shall she should shouldn
so some something still such t than thank thanks that the their theirs them then
there these they thing things this those through to too under until up us use used
uses using ve very want wants was wasn way ways we were weren what when where which
while who whom why will with won would wouldn yet you your yours
""".split())
MAX_QUERY_TERMS = 32
MAX_TERM_CHARS = 64
"""Longer "words" (a hash, a base64 blob, letters held down) are not searched."""
MAX_JOINED_PARTS = 4
"""Words joined by - . / + : of more parts are searched as their words only."""
MAX_PHRASES = 3
"""Joined words searched as phrases per query, at most (the first ones)."""
SPLIT_FROM = 8
"""A query word of this many letters or more may be written as two words
("metapackage" as "meta-package", "timezone" as "time zone")..."""
SPLIT_PART = 4
"""...each of at least this many letters (shorter ends are mostly suffixes)."""
SPLIT_UPTO = 24
"""Longer words are not cut (no real compound is this long; each cut is a count)."""
SPLIT_RARE = 20
"""...and only a word fewer chunks than this hold: a word many chunks hold is
written that way in this index, and its cuts cost a search more than they find."""
ALL_OF = 6
"""When every term is common, candidates are the newest chunks holding all of
the first this many (then any of them)."""
MAX_SPLITS = 64
"""Cuts counted per query at most, so a long message costs a bounded statement
(SQLite allows 2,000 columns in a result)."""
# BM25 column weights: bot token (not searched), title, heading, text.
WEIGHTS = (0.0, 3.0, 2.0, 1.0)
CANDIDATES = 50
"""Chunks BM25 hands to the re-ranking."""
COMMON = 2000
"""Chunks counted per query term; a term in more is common and not ranked by BM25."""
MATCH_BUDGET = 3000
"""BM25 ranks the rarest terms while their chunk counts add up to at most this."""
QUORUM_FROM = 600
"""When the query's terms are held by more chunks than this (counted term by
term, `COMMON` at most each), BM25 first ranks only the chunks holding its rarest
term or two of its `QUORUM_TERMS` rarest (scoring every chunk that shares one
common word with the question is most of a search's time, and such chunks rarely
make the top `CANDIDATES`); all of them when that leaves fewer than `CANDIDATES`."""
QUORUM_TERMS = 6
PER_PAGE = 3
"""Chunks of one page ranked before chunks of other pages get their turn."""
PAGE_WEIGHT = 0.5
"""Times the mean relative BM25 of its page's next three best chunks, added to a
chunk's rank (its own relative BM25, at most 1)."""
LABEL_WEIGHT = 0.3
"""Times the share of the query its title and heading name, added to a chunk's rank."""
SEARCH_BUDGET_S = 0.5
"""A search's statements are interrupted past this (a runaway is a bug or an attack;
ordinary searches take milliseconds)."""
BUDGET_EVERY = 1000
"""SQLite VM steps between checks of the budget."""


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
    score: float
    """0..1: how much of the query the chunk covers (rare terms count more),
    nudged by its BM25 relative to the best candidate."""
    similarity: float | None = None
    """Hybrid retrieval: the cosine of the chunk's embedding to the question's
    (None without vectors)."""


def bot_token(bot_id: str) -> str:
    """A single FTS token for a bot id (ids contain '-' and '_', which split)."""
    return "b" + hashlib.sha1(bot_id.encode("utf-8")).hexdigest()[:16]


def query_terms(query: str) -> list[str]:
    """The distinct words and joined words ("apt-get") of ``query`` worth
    searching for, in order, lower case, without stopwords unless that is all.

    The cost of a search is bounded by the question, whatever it is: at most
    `MAX_QUERY_TERMS` terms; a word over `MAX_TERM_CHARS` letters is no word
    (nothing is searched for it); words joined into one of more than
    `MAX_JOINED_PARTS` parts, or only of stopwords ("of-the-of-the-…"), and
    those after the first `MAX_PHRASES`, are searched as their words only, never
    as phrases (an FTS5 phrase reads the position lists of every word in it, in
    every chunk that holds them all)."""
    words, phrases = [], 0
    for word in _WORD.findall(query):
        word = _APOSTROPHE.sub("", word.lower())
        if _WORD_AT.fullmatch(word):
            if len(word) <= MAX_TERM_CHARS:
                words.append(word)
            continue
        parts = [part for part in _WORD_AT.findall(word) if len(part) <= MAX_TERM_CHARS]
        if len(word) <= MAX_TERM_CHARS and len(parts) <= MAX_JOINED_PARTS and \
                not all(part in STOPWORDS for part in parts) and phrases < MAX_PHRASES:
            words.append(word)
            phrases += 1
        words.extend(parts)
        if len(words) > 4 * MAX_QUERY_TERMS and len(set(words)) > MAX_QUERY_TERMS:
            break  # enough to choose from: the rest of a long message adds no term
    content = [w for w in words if w not in STOPWORDS]
    terms = content or words
    seen, unique = set(), []
    for term in terms:
        if term not in seen:
            seen.add(term)
            unique.append(term)
    return unique[:MAX_QUERY_TERMS]


def _phrase(term: str) -> str:
    return '"%s"' % term.replace('"', '""')


def spellings(term: str) -> list[str]:
    """The FTS5 phrases a term is searched as: itself, and for words joined by
    hyphens, the words run together too ("non-interactive", "noninteractive")."""
    if "-" in term and _HYPHENATED.fullmatch(term):
        return [term, term.replace("-", "")]
    return [term]


def _splits(term: str) -> list[str]:
    """The two-word forms a long word could also be written as ("time zone")."""
    if not SPLIT_FROM <= len(term) <= SPLIT_UPTO or not term.isalpha():
        return []
    return [term[:i] + " " + term[i:] for i in range(SPLIT_PART, len(term) - SPLIT_PART + 1)]


def _expression(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return _phrase(phrases[0])
    return "(%s)" % " OR ".join(map(_phrase, phrases))


def match_expression(bot_id: str, query: str) -> str | None:
    """An FTS5 MATCH expression for ``query`` within one bot, or None (no words)."""
    terms = query_terms(query)
    if not terms:
        return None
    return 'bot : "%s" AND (%s)' % (bot_token(bot_id), _any(terms, {
        term: _expression(spellings(term)) for term in terms}))


class _Budget:
    """A SQLite progress handler that interrupts a search's statement once
    `SEARCH_BUDGET_S` has passed (checked every `BUDGET_EVERY` VM steps)."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + SEARCH_BUDGET_S
        self.checks = 0

    def __call__(self) -> int:
        self.checks += 1
        return 1 if time.monotonic() > self.deadline else 0


RRF_K = 60
"""Reciprocal-rank fusion: a chunk at rank r of a list gains 1 / (RRF_K + r)."""
FUSE_DEPTH = 50
"""Chunks of each list (BM25's, the vectors') that the fusion sees."""


def search(bot_id: str, query: str, k: int = 5) -> list[Hit]:
    """The ``k`` chunks of ``bot_id`` that best match ``query``, best first
    (see the module's docstring). With the embedding model loaded
    (`embedding.current`) and the bot's vectors built, BM25's `FUSE_DEPTH` best
    and the vectors' fuse by reciprocal rank (`RRF_K`); chunks without vectors
    yet still come through BM25. A search that runs past `SEARCH_BUDGET_S` ends
    with what it has (nothing, if the candidates were not chosen yet)."""
    embedder = embedding.current()
    if embedder is None:
        return _lexical(bot_id, query, k).hits
    return _hybrid(embedder, bot_id, query, k)


def _lexical(bot_id: str, query: str, k: int) -> "_Ranking":
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        return _search_postgres(bot_id, query, k)
    terms = query_terms(query)
    if not terms:
        return _Ranking([], None)
    connection = database.connection()
    budget = _Budget()
    only = _ONLY_BOT.set(bot_id if _alone(bot_id) else None)
    connection.set_progress_handler(budget, BUDGET_EVERY)
    try:
        return _search_sqlite(bot_id, terms, k)
    except (sqlite3.OperationalError, peewee.OperationalError) as exc:
        if "interrupted" not in str(exc):
            raise
        logger.warning("search of bot %s stopped after %.2f s (%d terms): %r", bot_id,
                       SEARCH_BUDGET_S, len(terms), " ".join(terms)[:200])
        return _Ranking([], None)
    finally:
        connection.set_progress_handler(None, 0)
        _ONLY_BOT.reset(only)


_embedding_pool = concurrent.futures.ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="botlite-embed")
"""Questions are embedded here while BM25 runs in the caller's thread: both
leave the GIL (onnxruntime and SQLite), so on two cores a hybrid search takes
about the longer of the two, not their sum."""


def _hybrid(embedder, bot_id: str, query: str, k: int) -> list[Hit]:
    matrix = vectors.matrix(embedder, bot_id)
    if not matrix.count:  # no vectors yet: BM25 alone, as without the model
        return _lexical(bot_id, query, k).hits
    question = _embedding_pool.submit(embedder.embed_query, query)
    lexical = _lexical(bot_id, query, FUSE_DEPTH)
    if lexical.scorer is None and not lexical.entries:
        question.cancel()
        return []  # no word worth searching for ("how do I do it?")
    try:
        ids, _, cosine = vectors.dense_search(embedder, bot_id, query, FUSE_DEPTH,
                                              query_vector=question.result(), matrix=matrix)
    except Exception:  # the model failing on one question costs its vectors, not the answer
        logger.exception("the question's embedding failed; answering with BM25 alone")
        return lexical.top(k)
    if not ids:
        return lexical.top(k)
    fused: dict[int, float] = {}
    for rank, entry in enumerate(lexical.entries):
        fused[entry[0][0]] = 1.0 / (RRF_K + rank + 1)
    for rank, chunk_id in enumerate(ids):
        fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    best = sorted(fused, key=lambda chunk_id: -fused[chunk_id])[:k]
    ranked = {entry[0][0]: entry for entry in lexical.entries}
    known = {chunk_id: lexical.scorer.hit(*ranked[chunk_id])
             for chunk_id in best if chunk_id in ranked}
    missing = [chunk_id for chunk_id in best if chunk_id not in known]
    if missing:
        # Only the bot's chunks of the generation their source shows: the matrix
        # may predate a flip that committed since (its old chunks are still there
        # until their batched delete).
        param = database.obj.param
        rows = database.execute_sql(
            "select %s from chunk c where c.id in (%s) and c.chatbot_id = %s and %s" % (
                _COLUMNS, ", ".join([param] * len(missing)), param,
                _LIVE.format(chunk="c")), (*missing, bot_id)).fetchall()
        for row in rows:
            known[row[0]] = lexical.score_row(row)
    hits = [known[chunk_id] for chunk_id in best if chunk_id in known]
    for hit in hits:
        hit.similarity = cosine(hit.chunk_id)
    return hits


def _search_sqlite(bot_id: str, terms: list[str], k: int) -> "_Ranking":
    counts, forms = _counts(bot_id, terms)
    held = sum(counts.values())
    if not held:
        return _Ranking([], _Scorer(terms, counts, forms))
    expressions = {term: _expression(forms[term]) for term in terms}
    # The sum bounds the chunks holding any term from above unless a count was cut at COMMON.
    bounded = held <= MATCH_BUDGET and max(counts.values()) < COMMON
    if not bounded and _matching(bot_id, _any(terms, expressions)) > MATCH_BUDGET:
        rows = _large_index_candidates(bot_id, terms, counts, expressions)
    else:
        rows = None
        quorum = _quorum(terms, counts, expressions) if held > QUORUM_FROM else None
        if quorum is not None:
            rows = _candidates(bot_id, quorum, _BY_BM25)
            if rows is not None and len(rows) < CANDIDATES:
                rows = None  # too few: every chunk holding a term competes
        if rows is None:
            rows = _candidates(bot_id, _any(terms, expressions), _BY_BM25) or []
    return _reranked(rows, terms, counts, k, forms)


def _counts(bot_id: str, terms: list[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """How many chunks of the bot hold each term, up to `COMMON`, and the
    phrases each is searched as: its `spellings`, and the two-word form of a
    long, rare word (of its `_splits`, the one in most chunks). One statement:
    a cut is counted only when its word's count, computed once, is below
    `SPLIT_RARE` (SQLite evaluates a CASE's branches lazily)."""
    forms = {term: spellings(term) for term in terms}
    params = {"t%d" % i: _scoped(bot_id, _expression(forms[term]))
              for i, term in enumerate(terms)}
    splits = [(i, term, split) for i, term in enumerate(terms)
              for split in _splits(term)][:MAX_SPLITS]
    params.update({"s%d" % j: _scoped(bot_id, _phrase(split))
                   for j, (_, _, split) in enumerate(splits)})
    inner = ", ".join("%s as c%d" % (_COUNT % (":t%d" % i, COMMON), i)
                      for i in range(len(terms)))
    columns = ["c%d" % i for i in range(len(terms))] + [
        "case when c%d < %d then %s else 0 end" % (i, SPLIT_RARE,
                                                   _COUNT % (":s%d" % j, COMMON))
        for j, (i, _, _) in enumerate(splits)]
    row = database.execute_sql("select %s from (select %s)" % (", ".join(columns), inner),
                               params).fetchone()
    counts = dict(zip(terms, row))
    best: dict[str, tuple[int, str]] = {}
    for (_, term, split), count in zip(splits, row[len(terms):]):
        if count > best.get(term, (0, ""))[0]:
            best[term] = (count, split)
    for term, (count, split) in best.items():
        forms[term] = forms[term] + [split]
        counts[term] = min(COMMON, counts[term] + count)  # at least the chunks holding either
    return counts, forms


def _matching(bot_id: str, expression: str) -> int:
    """How many chunks of the bot match ``expression``, up to `MATCH_BUDGET` + 1."""
    return database.execute_sql("select " + _COUNT % ("?", MATCH_BUDGET + 1),
                                (_scoped(bot_id, expression),)).fetchone()[0]


def _scoped(bot_id: str, expression: str) -> str:
    """``expression`` within the bot's chunks: FTS5 itself skips other bots'
    (their count or size never costs this bot's searches anything). When the
    index holds no other bot's chunks (`_alone`, the usual single-bot setup) the
    restriction would select every chunk anyway, and merging the bot token's
    list of all of them cost 2.6x (search p50 at 100,000 chunks: 7.9 ms scoped,
    3.0 ms not): the expression is left as it is."""
    if _ONLY_BOT.get() == bot_id:
        return expression
    return 'bot : "%s" AND (%s)' % (bot_token(bot_id), expression)


_ONLY_BOT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "botlite_index_only_bot", default=None)
"""The bot whose search runs in this context when no other bot has chunks."""


ALONE_CHECK_S = 5.0
"""Seconds `_alone`'s answer is reused. This process's own chunk inserts forget
it at once; another process's new bot may go unnoticed that long, and then a
search is unscoped: its results are still the bot's own (the candidates are
joined on the bot), only its term counts include the newcomer's chunks."""


class _SoleBot:
    """Which bot, if one alone, has chunks in the index: the lowest and highest
    bot id of the chunks (two index lookups), looked up at most once per
    `ALONE_CHECK_S` per database."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: tuple[float, object, str | None, str | None] = (0.0, None, None, None)

    def is_alone(self, bot_id: str) -> bool:
        at, db, low, high = self.seen
        if db is not database.obj or time.monotonic() - at > ALONE_CHECK_S:
            low, high = database.execute_sql(
                "select (select min(chatbot_id) from chunk), "
                "(select max(chatbot_id) from chunk)").fetchone()
            with self.lock:
                self.seen = (time.monotonic(), database.obj, low, high)
        return low == high == bot_id

    def forget(self) -> None:
        with self.lock:
            self.seen = (0.0, None, None, None)


_sole_bot = _SoleBot()


def _alone(bot_id: str) -> bool:
    return _sole_bot.is_alone(bot_id)



def _quorum(terms: list[str], counts: dict[str, int], expressions: dict[str, str]
            ) -> str | None:
    """An FTS5 expression for the chunks holding the rarest term, or two of the
    `QUORUM_TERMS` rarest; None for fewer than three terms found."""
    found = sorted((term for term in terms if counts[term]), key=counts.__getitem__)
    if len(found) < 3:
        return None
    rarest = found[:QUORUM_TERMS]
    pairs = ["(%s AND %s)" % (expressions[a], expressions[b])
             for i, a in enumerate(rarest) for b in rarest[i + 1:]]
    return " OR ".join([expressions[rarest[0]]] + pairs)


def _large_index_candidates(bot_id: str, terms: list[str], counts: dict[str, int],
                            expressions: dict[str, str]) -> list[tuple]:
    """Candidates when too many chunks hold the terms for BM25 over all of them:
    BM25 over the rarest while their chunks stay within `MATCH_BUDGET`; when
    every term is common, the newest chunks holding all of them (else any)."""
    found = sorted((term for term in terms if counts[term]), key=counts.__getitem__)
    rare, matches = [], 0
    for term in found:
        if counts[term] >= COMMON or (rare and matches + counts[term] > MATCH_BUDGET):
            break
        rare.append(term)
        matches += counts[term]
    if rare:
        return _candidates(bot_id, _any(rare, expressions), _BY_BM25) or []
    if not found:
        return []
    # All of a few: every further common term makes FTS5 walk one more long list.
    found = found[:ALL_OF]
    rows = _candidates(bot_id, " AND ".join(expressions[term] for term in found), _NEWEST)
    return rows if rows is not None else _candidates(
        bot_id, _any(found, expressions), _NEWEST) or []


def _any(terms: list[str], expressions: dict[str, str]) -> str:
    return " OR ".join(expressions[term] for term in terms)


_WEIGHTS = ", ".join(map(str, WEIGHTS))
# How candidates are chosen: (relevance, order). The newest, unscored, for terms
# so common that BM25 would read too much.
_BY_BM25 = ("-bm25(chunk_index, %s)" % _WEIGHTS, "bm25(chunk_index, %s)" % _WEIGHTS)
_NEWEST = ("0.0", "chunk_index.rowid desc")
_COLUMNS = "c.id, c.source_id, c.page_id, c.url, c.title, c.heading, c.locator, c.text"
# Chunks holding an FTS5 expression (a `_scoped` one: the bot's), counting up to a limit.
_COUNT = "(select count(*) from (select 1 from chunk_index where chunk_index match %s limit %s))"
# The best chunks matching the (scoped) expression: their ids and relevance, with
# the columns of those of the generation shown (NULLs for the others).
_BEST = """select best.id, {columns}, best.relevance from (
    select chunk_index.rowid as id, {relevance} as relevance
    from chunk_index {join}
    where chunk_index match :expression {where}
    order by {order} limit :candidates) best
left join chunk c on c.id = best.id and c.chatbot_id = :bot and {live}
order by best.relevance desc"""
# A chunk of the generation its source shows (a run writes the next one beside it).
_LIVE = "{chunk}.generation = (select generation from source where id = {chunk}.source_id)"


def _candidates(bot_id: str, expression: str, ranking: tuple[str, str]) -> list[tuple] | None:
    """The bot's `CANDIDATES` first chunks by ``ranking`` among those matching
    the FTS5 ``expression`` (chunk columns and relevance); None when no chunk
    of the bot matches.

    Reading a chunk row to check its generation costs more than scoring it, so
    the first chunks are taken and filtered; only when chunks of another
    generation (a run writing the next one) crowd the shown ones out is the
    query run again with the check on every match.
    """
    params = {"expression": _scoped(bot_id, expression), "bot": bot_id,
              "candidates": CANDIDATES}
    statement = functools.partial(_BEST.format, columns=_COLUMNS, relevance=ranking[0],
                                  order=ranking[1])
    rows = database.execute_sql(statement(join="", where="", live=_LIVE.format(chunk="c")),
                                params).fetchall()
    if not rows:
        return None
    mine = [row[1:10] for row in rows if row[1] is not None]
    if len(mine) < len(rows) == CANDIDATES:
        mine = [row[1:10] for row in database.execute_sql(statement(
            join="join chunk on chunk.id = chunk_index.rowid",
            where="and chunk.chatbot_id = :bot and " + _LIVE.format(chunk="chunk"),
            live=_LIVE.format(chunk="c")), params).fetchall() if row[1] is not None]
    return mine


def _counts_postgres(bot_id: str, terms: list[str]) -> dict[str, int]:
    """`_counts` on PostgreSQL: the bot's chunks holding each term in any of its
    `spellings`."""
    probe = ("(select count(*) from (select 1 from chunk where chatbot_id = %%s and tsv @@ "
             "websearch_to_tsquery('english', %%s) limit %d) found)" % COMMON)
    return dict(zip(terms, database.execute_sql(
        "select " + ", ".join([probe] * len(terms)),
        [value for term in terms for value in (bot_id, " or ".join(spellings(term)))]
    ).fetchone()))


def _search_postgres(bot_id: str, query: str, k: int) -> "_Ranking":
    """`search` on PostgreSQL: ts_rank_cd over the weighted tsvector picks the
    candidates, then the same re-ranking."""
    terms = query_terms(query)
    if not terms:
        return _Ranking([], None)
    counts = _counts_postgres(bot_id, terms)
    # websearch_to_tsquery never raises on user text; OR keeps recall like FTS5.
    cursor = database.execute_sql(
        "select id, source_id, page_id, url, title, heading, locator, text, "
        "ts_rank_cd(tsv, q, 32) * 10 as relevance "
        "from chunk, websearch_to_tsquery('english', %s) q "
        "where chatbot_id = %s and tsv @@ q and " + _LIVE.format(chunk="chunk") +
        " order by relevance desc limit %s",
        (" or ".join(form for term in terms for form in spellings(term)), bot_id, CANDIDATES))
    return _reranked([row[:8] + (float(row[8]),) for row in cursor.fetchall()], terms,
                     counts, k)


# --- re-ranking -----------------------------------------------------------------------

_SUFFIXES = (("ations", ""), ("ation", ""), ("ings", ""), ("ing", ""), ("ies", "y"),
             ("es", ""), ("ed", ""), ("ly", ""), ("s", ""), ("e", ""))


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light stem: "installed", "installing", "installation" -> "install";
    stricter than FTS5's Porter ("containers" stays apart from "contains")."""
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not (
                suffix in ("s", "es") and word.endswith("ss")):
            return word[:-len(suffix)] + replacement
    return word


class _Matcher:
    """Which query terms a text holds: words by light stem, joined words
    ("apt-get") as their words in a row, whatever stands between them (or
    nothing: "aptget"); a word also as its two-word form when it has one
    (``forms``, from `_counts`: "meta-packages" for "metapackage")."""

    def __init__(self, terms: Sequence[str], forms: dict[str, list[str]] | None = None
                 ) -> None:
        self.stems = [_stem(term) for term in terms]
        # Every word with the stem starts with this (the stem, minus a "y" from "ies").
        self.roots = [stem[:-1] if stem.endswith("y") else stem for stem in self.stems]
        self.joined = {index: re.compile(r"(?<!\w)%s(?!\w)" % r"\W*".join(
            map(re.escape, _WORD_AT.findall(term)))) for index, term in enumerate(terms)
            if not _WORD_AT.fullmatch(term)}
        # A joined word found counts its words found ("noninteractive" holds "non").
        self.parts = {index: frozenset(terms.index(word) for word in _WORD_AT.findall(
            terms[index]) if word in terms) for index in self.joined}
        # The two-word form, its second word with any ending ("meta-packages").
        self.split = {index: re.compile(r"(?<!\w)%s\W*%s" % tuple(
            map(re.escape, forms[term][-1].split()))) for index, term in enumerate(terms)
            if forms and " " in forms.get(term, [""])[-1]}
        self._labels: dict[str | None, frozenset[int]] = {}

    def found(self, text: str | None) -> frozenset[int]:
        if not text:
            return frozenset()
        lowered = text.lower()
        found = frozenset(index for index in range(len(self.stems)) if self._holds(lowered, index))
        for index in found & self.parts.keys():
            found |= self.parts[index]
        return found

    def found_in_label(self, text: str | None) -> frozenset[int]:
        """`found` for a title or heading, which many chunks share."""
        if text not in self._labels:
            self._labels[text] = self.found(text)
        return self._labels[text]

    def _holds(self, lowered: str, index: int) -> bool:
        if index in self.joined:
            return self.joined[index].search(lowered) is not None
        if index in self.split and self.split[index].search(lowered) is not None:
            return True
        root, stem = self.roots[index], self.stems[index]
        start = lowered.find(root)
        while start != -1:
            if start == 0 or not (lowered[start - 1].isalnum() or lowered[start - 1] == "_"):
                if _stem(_WORD_AT.match(lowered, start).group()) == stem:
                    return True
            start = lowered.find(root, start + 1)
        return False


def _term_weights(terms: list[str], counts: dict[str, int]) -> list[float]:
    """Rarer terms say more: an IDF from the (capped) chunk counts; a term in
    no chunk at all weighs most, so a question about something absent scores low."""
    return [math.log(1 + COMMON / (counts[term] + 0.5)) for term in terms]


class _Scorer:
    """A query's terms, their weights and matcher: scores chunk rows."""

    def __init__(self, terms: list[str], counts: dict[str, int],
                 forms: dict[str, list[str]] | None = None) -> None:
        self.matcher = _Matcher(terms, forms)
        self.weights = _term_weights(terms, counts)
        self.total = sum(self.weights)

    def label(self, row: tuple) -> frozenset[int]:
        return self.matcher.found_in_label(row[4]) | self.matcher.found_in_label(row[5])

    def coverage(self, row: tuple, label: frozenset[int]) -> float:
        return _coverage(self.matcher, row, label, self.weights, self.total)

    def hit(self, row: tuple, label: frozenset[int], relative: float) -> Hit:
        return Hit(*row[:8], score=round(0.8 * self.coverage(row, label) + 0.2 * relative, 4))


class _Ranking:
    """Re-ranked candidates (row, label, relative BM25), best first; a hit's
    score (which reads its text) is computed only for the hits asked for."""

    def __init__(self, entries: list[tuple], scorer: _Scorer | None) -> None:
        self.entries = entries
        self.scorer = scorer

    @property
    def hits(self) -> list[Hit]:
        return self.top(len(self.entries))

    def top(self, k: int) -> list[Hit]:
        return [self.scorer.hit(*entry) for entry in self.entries[:k]]

    def score_row(self, row: tuple) -> Hit:
        """A hit for a chunk BM25 did not rank (the vectors found it)."""
        if self.scorer is None:
            return Hit(*row[:8], score=0.0)
        return self.scorer.hit(row, self.scorer.label(row), 0.0)


def _reranked(rows: list[tuple], terms: list[str], counts: dict[str, int],
              k: int, forms: dict[str, list[str]] | None = None) -> _Ranking:
    """The best ``k`` of ``rows`` (chunk columns + BM25 relevance), re-ranked.

    A chunk ranks by its BM25 relative to the best candidate, plus how well its
    page's next best chunks match, plus the share of the query its title and
    heading name; at most `PER_PAGE` chunks of a page come before other pages'.
    Its score is the share of the query it covers (text, heading or title;
    shares weighted by `_term_weights`), nudged by its relative BM25.
    """
    scorer = _Scorer(terms, counts, forms)
    if not rows:
        return _Ranking([], scorer)
    best = max(row[8] for row in rows)
    scored = []
    for row in rows:
        label = scorer.label(row)
        # Without BM25 (every term common), coverage orders the candidates.
        relative = max(row[8], 0.0) / best if best > 0 else scorer.coverage(row, label)
        scored.append((row, label, sum(scorer.weights[i] for i in label) / scorer.total,
                       relative))
    pages: dict[str, list[float]] = {}
    for row, _, _, relative in scored:
        pages.setdefault(row[3] or row[1], []).append(relative)
    for relatives in pages.values():
        relatives.sort(reverse=True)
    ranked = []
    for row, label, label_share, relative in scored:
        others = list(pages[row[3] or row[1]])
        others.remove(relative)
        rank = relative + PAGE_WEIGHT * sum(others[:3]) / 3 + LABEL_WEIGHT * label_share
        ranked.append((-rank, len(ranked), row, label, relative))
    ranked.sort(key=lambda entry: entry[:2])
    first, rest, per_page = [], [], {}
    for entry in ranked:
        key = entry[2][3] or entry[2][1]
        per_page[key] = per_page.get(key, 0) + 1
        (first if per_page[key] <= PER_PAGE else rest).append(entry)
    # Only the hits returned need their text read for the score.
    return _Ranking([(row, label, relative)
                     for _, _, row, label, relative in (first + rest)[:k]], scorer)


def _coverage(matcher: _Matcher, row: tuple, label: frozenset[int], weights: list[float],
              total: float) -> float:
    """The share of the query (by term weight) a chunk's title, heading or text holds."""
    return sum(weights[i] for i in label | matcher.found(row[7])) / total


# chunk_rows' keys and the chunk table's columns, in the same order.
_ROW_KEYS = ("source", "page", "chatbot_id", "bot", "url", "title", "heading", "locator",
             "position", "text", "generation")
_CHUNK_COLUMNS = ("source_id", "page_id") + _ROW_KEYS[2:]


def chunk_rows(source: Source, chunks: Iterable[TextChunk], *, page: Page | None = None,
               url: str | None = None, title: str | None = None,
               generation: int | None = None) -> list[dict]:
    """Rows for `insert_chunks`: ``chunks`` of ``source`` under ``generation``
    (default: the one search shows now)."""
    return list(iter_chunk_rows(source, chunks, page=page, url=url, title=title,
                                generation=generation))


def iter_chunk_rows(source: Source, chunks: Iterable[TextChunk], *, page: Page | None = None,
                    url: str | None = None, title: str | None = None,
                    generation: int | None = None) -> Iterator[dict]:
    """`chunk_rows`, one at a time as ``chunks`` yields them."""
    token = bot_token(source.chatbot_id)
    page_id = page.id if page is not None else None
    if generation is None:
        generation = source.generation
    for chunk in chunks:
        yield {"source": source.id, "page": page_id, "chatbot_id": source.chatbot_id,
               "bot": token, "url": url, "title": title, "heading": chunk.heading,
               "locator": chunk.locator, "position": chunk.position, "text": chunk.text,
               "generation": generation}


_ROWS_PER_STATEMENT = 200
"""Rows per INSERT: 11 parameters each stays far below SQLite's 32766."""


def insert_chunks(rows: Iterable[dict]) -> int:
    """Insert `chunk_rows` rows (the index follows by trigger), many rows per
    statement: per-row statements (executemany) cost twice as much, and peewee's
    insert_many spends as long building the query as SQLite running it. A row
    without "generation" gets 0, the default."""
    db = database.obj
    values = [tuple(row.get(key, 0) if key == "generation" else row[key] for key in _ROW_KEYS)
              for row in rows]
    _sole_bot.forget()  # these may be another bot's first chunks
    one = "(%s)" % ", ".join([db.param] * len(_CHUNK_COLUMNS))
    head = "insert into chunk (%s) values " % ", ".join(_CHUNK_COLUMNS)
    cursor = db.cursor()
    for start in range(0, len(values), _ROWS_PER_STATEMENT):
        part = values[start:start + _ROWS_PER_STATEMENT]
        cursor.execute(head + ", ".join([one] * len(part)),
                       [value for row in part for value in row])
    return len(values)


def copy_chunks(source_id: str, page_ids: Sequence[int], generation: int,
                new_generation: int) -> int:
    """Copy the chunks of ``page_ids`` from ``generation`` to ``new_generation``."""
    columns = ", ".join(_CHUNK_COLUMNS[:-1])
    param = database.obj.param
    cursor = database.execute_sql(
        "insert into chunk (%s, generation) select %s, %s from chunk where source_id = %s "
        "and generation = %s and page_id in (%s)" % (
            columns, columns, param, param, param, ", ".join([param] * len(page_ids))),
        (new_generation, source_id, generation, *page_ids))
    vectors.copy_vectors(source_id, page_ids, generation, new_generation)
    return cursor.rowcount
