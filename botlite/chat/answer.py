"""A readable extractive answer from the passages the search layer retrieved.

The passages are cut into sentences; each sentence is scored by the query terms
it shares (rarer terms weigh more, a term in the heading above counts half),
plus how much of the query its passage covers and a little of the passage's
search score. The best few are shown in the order they were written, so the
reply reads like the source rather than like a ranking.

A sentence that introduces something (it ends in ":") brings it along: the code
block after it (a fenced block in the chunk text, see knowledge/extract.py),
or the list items after it. The command is what people ask for; "run the venv
module as a script with the directory path:" alone answers nothing. Code stays
a fenced block in the reply, so the widget and the pages show it as code.

A description under a term of its own (a reference manual's "--cached" above
"Use this option to unstage and remove paths only from the index.") is shown
with it: "--cached: Use this option...". A question that asks for a command,
option or function prefers sentences that bring code or such a term.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Sequence

from botlite.chat.intents import normalise

__all__ = ["Answer", "Passage", "compose_answer", "reply_blocks"]


@dataclass
class Passage:
    source_id: str
    title: str | None
    url: str | None
    text: str
    score: float  # higher is more relevant, already 0..1
    heading: str | None = None
    context: str | None = None  # words that count like its title (a follow-up's topic)
    similarity: float | None = None  # hybrid retrieval: its embedding's cosine to the question


@dataclass
class Answer:
    text: str
    sources: list[dict]  # {"source_id", "title", "url", "snippet", "score"}, best first
    confidence: float


SNIPPET_CHARS = 200
PASSAGE_BONUS = 0.2      # how much a passage's search score adds to its sentences
PASSAGE_WEIGHT = 0.3     # how much the share of the query a passage covers adds
HEADING_WEIGHT = 0.5     # a query term in the section heading counts half
KEEP_RELATIVE = 0.5      # sentences (and passages) covering under half the best are left out
FRAGMENT_PENALTY = 0.5   # a chunk that starts mid-sentence starts with a fragment
RANK_WEIGHT = 0.3        # hybrid retrieval: a sentence of the n-th page found gains this / n
SIMILARITY_WEIGHT = 0.3  # hybrid retrieval: the share of confidence the best cosine gives...
SIMILARITY_RANGE = (0.35, 0.75)  # ...from nothing at the first cosine to all of it at the second
MEANING_ONLY = 0.5       # hybrid retrieval: the cosine a passage sharing no word with the
#                          question needs to answer it at all
CODE_WEIGHT = 0.15       # a question asking for a command: a sentence bringing code gains this
CODE_ALLOWANCE = 900     # characters a reply may run past max_chars for the code it carries
LABEL_ALLOWANCE = 160    # ...and for the terms its sentences describe
MAX_CARRIED_ITEMS = 8    # list items an introducing sentence brings at most
FENCE = "```"

_STOPWORDS = frozenset("""
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during
    each either else ever every few for from further get gets got had has have having he
    her here hers herself him himself his how i if in into is it its itself just let me
    might more most much must my myself no nor not now of off on once only or other our
    ours ourselves out over own please same shall she should so some such than that
    the their theirs them themselves then there these they this those through to too
    under until up upon us very via was we were what whats when where which while who
    whom whose why will with within without would yes yet you your yours yourself
    yourselves im ive id dont doesnt isnt cant wont whats hows theres thats
    something anything everything nothing someone anyone somebody anybody thing things
    want wants need needs know tell like way hi hello hey thanks thank ok okay
""".split())

# A dot after one of these does not end a sentence ("e.g. Windows", "Dr. Lee").
_ABBREVIATIONS = frozenset("""
    e.g i.e eg ie mr mrs ms dr prof sr jr st vs approx apt dept est inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri sat
    sun a.m p.m u.s u.k ph.d cf al
""".split())
# These often end a sentence too: "...until 2 p.m. We are closed..." splits,
# "9 a.m. Monday" does not (the next word must be one that starts sentences).
_MAY_END_SENTENCE = frozenset("a.m p.m inc ltd co corp".split())
# ...and after these only when a number follows ("No. 5", "p. 12").
_NUMBER_ABBREVIATIONS = frozenset("no nos p pp vol fig figs art sec ch".split())

_BULLET = re.compile(r"([-*•‣◦▪–—]|\d{1,3}[.)]|[a-z]\))\s+")
_MARKDOWN_HEADING = re.compile(r"#{1,6}\s+")
# Every run of end punctuation, with its closing quotes and the whitespace after
# it if any; `_split_sentences` keeps those with whitespace. Requiring the
# whitespace in the pattern made it rescan a run at each of its positions
# ("." * 8000: 0.9 s); this way each run is matched once.
_SENTENCE_END = re.compile(r"""[.!?…]+(?:["'”’)\]]*\s+)?""")
_TERMINAL = re.compile(r"""[.!?…:;]["'”’)\]]*$""")
_ALNUM = re.compile(r"[^\W_]")  # what str.isalnum() is true for


@dataclass(eq=False)
class _Sentence:
    passage: int       # index into the passages
    position: int      # order within the passage
    text: str
    marker: str        # "-", "1." ... for a list item, "" for prose
    terms: frozenset   # the query's stemmed terms it holds
    context: frozenset  # ...that the title and the heading above it hold
    heading: frozenset  # ...that the heading alone holds
    lead: bool         # in the first paragraph or list under its heading
    fragment: bool     # the rest of a sentence cut by the chunker
    score: float = 0.0
    code: str = ""     # the code block this sentence introduces (it ends in ":")
    items: list = dataclasses.field(default_factory=list)  # ...or the list items
    carried: bool = False  # an item some sentence before it brings along
    label: str = ""    # the term it describes ("-D directory, --pgdata=directory")

    @property
    def shown(self) -> str:
        """The sentence as a reply shows it: with the term it describes, if any."""
        return "%s: %s" % (self.label, self.text) if self.label else self.text

    @functools.cached_property
    def words(self) -> frozenset:
        """Every normalised word, for spotting duplicates (only chosen ones need it)."""
        return frozenset(normalise(self.text).split())


# --- splitting -------------------------------------------------------------

def _blocks(text: str) -> list[tuple[str, str, str]]:
    """(kind, list marker, text) for each paragraph, list item or heading, in order.

    A line break inside a sentence (hard-wrapped text) is joined back; a line
    without final punctuation followed by a capitalised line stands alone.
    """
    blocks: list[tuple[str, str, str]] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            blocks.append(("prose", "", "\n".join(lines)))
            lines.clear()

    code: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if code is not None:  # inside a fenced block: lines as they are
            if line.startswith(FENCE):
                blocks.append(("code", "", "\n".join(code).strip("\n")))
                code = None
            else:
                code.append(raw.rstrip())
            continue
        if line.startswith(FENCE):
            flush()
            code = []
            continue
        if not line:
            flush()
            continue
        heading = _MARKDOWN_HEADING.match(line)
        bullet = _BULLET.match(line)
        if heading:
            flush()
            blocks.append(("heading", "", line[heading.end():].strip()))
        elif bullet:
            flush()
            marker = bullet.group(1) if bullet.group(1)[0].isalnum() else "-"
            blocks.append(("bullet", marker, line[bullet.end():].strip()))
        elif lines and not _continues(lines[-1], line):
            flush()
            lines.append(line)
        else:
            lines.append(line)
    flush()
    if code:  # the chunk ended inside the block: what it holds is still code
        blocks.append(("code", "", "\n".join(code).strip("\n")))
    return [_as_heading(blocks, index) for index in range(len(blocks))]


def _continues(previous: str, line: str) -> bool:
    if _TERMINAL.search(previous) or line[0].islower():
        return True  # the sentence splitter handles the rest
    return previous.split()[-1].lower() in _STOPWORDS  # "install it with\nPython 3"


def _as_heading(blocks: list[tuple[str, str, str]], index: int) -> tuple[str, str, str]:
    """A short line heading punctuated prose or a list ("Opening hours", "Steps:")."""
    kind, marker, text = blocks[index]
    if kind != "prose" or index + 1 == len(blocks) or len(text.split()) > 6:
        return blocks[index]
    next_kind, _, next_text = blocks[index + 1]
    if text.endswith(":") and next_kind == "bullet":
        return "heading", marker, text[:-1]
    if _TERMINAL.search(text) or not text[0].isupper():
        return blocks[index]
    if next_kind == "bullet" or (next_kind == "prose" and _TERMINAL.search(next_text)):
        return "heading", marker, text
    return blocks[index]


def _labelled(blocks: list[tuple[str, str, str]]) -> list[tuple[str, str, str, str]]:
    """``blocks`` with a label for each paragraph that describes the `_term`
    lines right above it (or a heading's term, for the paragraph under it).
    A run of more terms than `MAX_LABELS` is a table or a list, not the names of
    one thing, and a line completing a sentence that ends in ":" is what that
    sentence introduces: both stay text."""
    out: list[tuple[str, str, str, str]] = []
    pending: list[tuple[str, tuple | None]] = []  # (term, its block if it is to be shown)
    table = False  # in a run of term-like lines too long to name one thing

    def release() -> None:
        out.extend((*block, "") for _, block in pending if block is not None)
        pending.clear()

    for number, block in enumerate(blocks):
        kind, marker, text = block
        following = blocks[number + 1][0] if number + 1 < len(blocks) else None
        introduced = bool(out) and out[-1][0] == "prose" and out[-1][2].rstrip().endswith(":") \
            and not pending
        term = _term(text, kind == "heading") \
            if kind in ("prose", "heading") and following == "prose" and not introduced else None
        if term is None or kind != "prose":
            table = False
        elif len(pending) == MAX_LABELS:
            table = True
        if kind == "heading":
            release()
            out.append((*block, ""))
            if term:
                pending.append((term, None))
        elif kind == "prose" and term is not None and not table:
            pending.append((term, block))
        elif kind == "prose" and term is None and pending:
            names = [name for name, _ in pending]
            names = [name for index, name in enumerate(names)  # "f", then "int f(...)"
                     if not any(name in other for other in names[index + 1:])]
            pending.clear()
            out.append((*block, ", ".join(names)))
        else:
            release()
            out.append((*block, ""))
    release()
    return out


def _is_boundary(text: str, end: re.Match) -> bool:
    rest = text[end.end():]
    if not rest or not (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘(["):
        return False
    if not end.group().startswith(".") or "\n" in end.group():
        return True  # "?", "!" or a full stop ending its line
    before = text[max(0, end.start() - 24):end.start()].split()
    word = before[-1].lstrip("([\"'“‘").lower() if before else ""
    if word in _ABBREVIATIONS:
        return word in _MAY_END_SENTENCE and rest.split(None, 1)[0].lower() in _STOPWORDS
    if len(word) == 1 and word.isalpha() and word != "a":
        return False
    return not (word in _NUMBER_ABBREVIATIONS and rest[0].isdigit())


def _split_sentences(text: str) -> list[str]:
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if end.group()[-1].isspace() and _is_boundary(text, end):
            sentences.append(text[start:end.end()])
            start = end.end()
    sentences.append(text[start:])
    return [" ".join(sentence.split()) for sentence in sentences
            if _ALNUM.search(sentence)]


_SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)*\.?\s+")
_ONE_NAME = re.compile(r"[a-z][\w.-]*")
_SENTENCE_LIKE = re.compile(r"\w\w[.!?:;]$")
_CODE_MARKS = "_=<>[]{}|$\\"
# A table row ("Setting: work_mem; Default: 4MB", "5432 | database"), a URL: no term.
_NOT_TERM = (": ", " | ", "://", "; ")
MAX_TERM_CHARS = 100
MAX_LABELS = 3  # "-D directory", "--pgdata=directory": the terms one description has


# Manual sections, not terms, in capitals ("DESCRIPTION", "INTERACTIVE MODE").
_SECTION_WORDS = frozenset("""
    name synopsis description options option examples example notes note bugs author
    authors see also environment files exit status return value values configuration
    discussion history warning warnings caveats compatibility diagnostics security
    overview usage mode interactive output format introduction summary contents
    parameters arguments commands errors limitations reporting copyright license
""".split())


def _term(text: str, heading: bool = False) -> str | None:
    """``text`` as the term a description below it defines, or None.

    Reference manuals (man pages, option lists, API references) put the option,
    function or keyword on a line of its own and describe it in the paragraph
    after: "--cached", then "Use this option to unstage and remove paths only
    from the index." Without the term the description answers nothing. A term
    is short, does not end like a sentence and looks like code: an option, a
    name with "_", "=" or brackets, an all-capitals keyword, one lower-case name.
    A ``heading`` must have code's marks (capitals alone name a section)."""
    text = " ".join(text.split())
    numbered = _SECTION_NUMBER.match(text)
    if numbered:
        text = text[numbered.end():]  # "3.3.1. BZ2_bzCompressInit"
    words = text.split()
    if not words or len(text) > MAX_TERM_CHARS or len(words) > 12 or \
            _SENTENCE_LIKE.search(text) or any(mark in text for mark in _NOT_TERM):
        return None
    marked = any(mark in text for mark in _CODE_MARKS)
    if text.startswith("-") or "[" in text or "<" in text or \
            any(mark in words[0] for mark in _CODE_MARKS) or (marked and len(words) <= 3):
        return text.rstrip(";").rstrip()  # "-D directory", "pop [<stash>]", "BZ2_bzRead"
    if heading:
        return None
    if len(words) == 1 and _ONE_NAME.fullmatch(text):
        return text  # "dbname"
    letters = [word for word in words if word.isalpha()]
    if letters and all(word.isupper() and len(word) > 1 for word in letters) and \
            not any(word.lower() in _SECTION_WORDS for word in letters):
        return text  # "CONCURRENTLY", "SET SCHEMA"
    return None


# --- terms -----------------------------------------------------------------

_SUFFIXES = ("ation", "able", "ing", "ed", "er")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """Light suffix stripping so "installs", "installer" and "installation" meet.

    Both sides go through it, so an odd stem ("order" -> "ord") still matches.
    """
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith("es") and word[-3] in "sxzh":
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]  # "shipping" -> "shipp" -> "ship", "install" -> "instal"
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]  # "configure" and "configur(ed)" meet
    return word


def _terms(words: Sequence[str]) -> frozenset:
    return frozenset(_stem(word) for word in words if word not in _STOPWORDS)


# --- selecting -------------------------------------------------------------

class _QueryTerms:
    """Which of the query's stemmed terms a text holds.

    Only the query's terms matter to the ranking, and most sentences hold none:
    a stem is the start of every word that has it (but for "ies" -> "y"), so a
    plain text without the start of any query stem is skipped without
    normalising or stemming its words.
    """

    def __init__(self, stems: frozenset) -> None:
        self.stems = stems
        self.roots = tuple({stem[:-1] if stem.endswith("y") else stem for stem in stems})

    def found(self, text: str | None) -> frozenset:
        if not text:
            return frozenset()
        if text.isascii() and not _JOINING.search(text):
            lowered = text.lower()
            if not any(root in lowered for root in self.roots):
                return frozenset()
        return _terms(normalise(text).split()) & self.stems


# What normalise joins into one word ("what's" -> "whats"): the plain-text check
# of `_QueryTerms` cannot see through it.
_JOINING = re.compile(r"\w['`]\w")


def _sentences(passages: Sequence[Passage], query: _QueryTerms) -> list[_Sentence]:
    found = []
    for index, passage in enumerate(passages):
        title = query.found(passage.title) | query.found(passage.context)
        heading = query.found(passage.heading)
        blocks_in_section, previous_kind, position = 0, "", 0
        introducer: _Sentence | None = None  # the last sentence, if it ends in ":"
        for kind, marker, text, label in _labelled(_blocks(passage.text or "")):
            if kind == "heading":
                heading = query.found(text)
                blocks_in_section, previous_kind, introducer = 0, kind, None
                continue
            if kind == "code":
                if introducer is not None and not introducer.code and not introducer.items:
                    introducer.code = text
                    introducer.terms |= query.found(text)
                introducer = None
                continue
            if kind == "bullet" and introducer is not None and not introducer.code \
                    and len(introducer.items) < MAX_CARRIED_ITEMS:
                carrier = introducer
            else:
                carrier, introducer = None, None
            if not (kind == "bullet" and previous_kind == "bullet"):
                blocks_in_section += 1  # a whole list counts as one block
            previous_kind = kind
            pieces = [text] if kind == "bullet" else _split_sentences(text)
            before = frozenset()  # the terms of the sentence before, in this paragraph
            for piece in pieces:
                if not _ALNUM.search(piece):
                    continue
                terms = query.found(piece)
                if label:  # "what does --cached do?": the term is the sentence's subject
                    terms |= query.found(label)
                context = title | heading
                if piece.rstrip().endswith(":"):
                    # "In such a case, do this:" is about what the sentence before said.
                    context |= before
                sentence = _Sentence(
                    index, position, piece, marker, terms, context,
                    heading, lead=blocks_in_section == 1,
                    fragment=position == 0 and piece[0].islower(), label=label)
                label = ""  # the paragraph's first sentence carries it
                before = terms
                found.append(sentence)
                position += 1
                if carrier is not None:
                    carrier.items.append(sentence)
                    carrier.terms |= sentence.terms
                    sentence.carried = True
                elif piece.rstrip().endswith(":"):
                    introducer = sentence
                else:
                    introducer = None
    return found


def _idf(sentences: Sequence[_Sentence], terms: frozenset) -> dict[str, float]:
    """Rarer terms weigh more; a term of a title or heading is counted in every
    sentence under it, so the topic ("Acme Sync") weighs less than the ask ("install")."""
    count = len(sentences)
    frequency = {term: 0 for term in terms}
    for sentence in sentences:
        for term in terms & (sentence.terms | sentence.context):
            frequency[term] += 1
    return {term: math.log(1 + (count + 1) / (frequency[term] + 1)) for term in terms}


def _is_duplicate(sentence: _Sentence, chosen: Sequence[_Sentence]) -> bool:
    """Overlapping chunks repeat sentences, sometimes cut short at a chunk edge."""
    for other in chosen:
        shared = len(sentence.words & other.words)
        smaller = min(len(sentence.words), len(other.words))
        if sentence.words == other.words or shared >= 0.8 * len(sentence.words | other.words):
            return True
        if smaller >= 3 and shared >= 0.9 * smaller:
            return True
    return False


def _render(chosen: Sequence[_Sentence]) -> str:
    """Sentences grouped by passage (best passage first), in their written order."""
    groups: dict[int, list[_Sentence]] = {}
    for sentence in chosen:
        groups.setdefault(sentence.passage, []).append(sentence)
    paragraphs = []
    for group in groups.values():
        lines: list[str] = []
        prose_open = False
        shown = set()
        for sentence in sorted(_with_carried(group), key=lambda s: s.position):
            if id(sentence) in shown:
                continue
            shown.add(id(sentence))
            if sentence.marker:
                lines.append("%s %s" % (sentence.marker, sentence.shown))
                prose_open = False
            elif prose_open and not sentence.label:
                lines[-1] = "%s %s" % (_closed(lines[-1]), sentence.text)
            else:
                lines.append(sentence.shown)
                prose_open = True
            if sentence.code:
                lines.append("%s\n%s\n%s" % (FENCE, sentence.code, FENCE))
                prose_open = False
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _with_carried(group: Sequence[_Sentence]) -> list[_Sentence]:
    """The chosen sentences and the list items they bring along."""
    return [each for sentence in group for each in (sentence, *sentence.items)]


def _closed(text: str) -> str:
    """A line that ran on without punctuation gets a full stop before the next one."""
    return text if _TERMINAL.search(text) else text + "."


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to fit ``limit`` characters with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if not text[limit - 1].isspace() and " " in cut:
        cut = cut.rsplit(None, 1)[0]  # never end on half a word
    return cut.rstrip(" ,;:-–—") + "…"


def _snippet(sentences: Sequence[_Sentence]) -> str:
    snippet = ""
    for sentence in sentences:
        candidate = ("%s %s" % (snippet, sentence.shown)).strip()
        if snippet and len(candidate) > SNIPPET_CHARS:
            break
        snippet = candidate
    return _shorten(snippet, SNIPPET_CHARS)


def _sources(chosen: Sequence[_Sentence], passages: Sequence[Passage]) -> list[dict]:
    by_source: dict[str, list[_Sentence]] = {}
    for sentence in chosen:  # best first
        passage = passages[sentence.passage]
        by_source.setdefault(passage.url or passage.source_id, []).append(sentence)
    sources = []
    for sentences in by_source.values():
        used = [passages[sentence.passage] for sentence in sentences]
        sources.append({
            "source_id": used[0].source_id,
            "title": next((passage.title for passage in used if passage.title), None),
            "url": used[0].url,
            "snippet": _snippet(sentences),
            "score": max(passage.score for passage in used),
        })
    return sources


def _coverage(terms: frozenset, context: frozenset, weights: dict[str, float]) -> float:
    """Share of the query's weight found in ``terms`` (in full) or ``context`` (half)."""
    own = weights.keys() & terms
    in_heading = (weights.keys() & context) - own
    # fsum: the same total whatever order the sets iterate in, so ties stay ties
    found = math.fsum(weights[t] for t in own) + \
        HEADING_WEIGHT * math.fsum(weights[t] for t in in_heading)
    return min(found / math.fsum(weights.values()), 1.0)


def _clamped_score(passage: Passage) -> float:
    return min(max(passage.score, 0.0), 1.0)


# Words of a question that asks for code: "what command...", "which option...".
_ASKS_FOR_CODE = frozenset("""
    command commands option options flag flags switch function functions statement
    statements syntax sql call invocation cli
""".split())


def _asks_for_code(query: str) -> bool:
    return not _ASKS_FOR_CODE.isdisjoint(normalise(query).split())


def _rank(sentences: Sequence[_Sentence], passages: Sequence[Passage],
          weights: dict[str, float], code_wanted: bool = False) -> list[_Sentence]:
    """The sentences worth showing, best first.

    A sentence must cover at least half as much of the query as the best one,
    and its passage at least half as much as the best passage: "open your
    order" in a returns page is no answer to "are you open on Sunday" when the
    opening-hours page covers both words.
    """
    by_passage: dict[int, list[_Sentence]] = {}
    for sentence in sentences:
        by_passage.setdefault(sentence.passage, []).append(sentence)
    passage_coverage = {
        index: _coverage(frozenset().union(*(s.terms | s.context for s in group)),
                         frozenset(), weights)
        for index, group in by_passage.items()}
    coverage = {}
    for sentence in sentences:
        if not weights.keys() & sentence.terms and \
                not (sentence.lead and weights.keys() & sentence.heading):
            continue  # only the paragraph right under "Opening hours" answers by its heading
        found = _coverage(sentence.terms, sentence.context, weights)
        if sentence.fragment:
            found *= FRAGMENT_PENALTY
        if found:
            coverage[id(sentence)] = found
    if not coverage:
        return []
    sentence_floor = KEEP_RELATIVE * max(coverage.values())
    passage_floor = KEEP_RELATIVE * max(passage_coverage.values())
    # Hybrid retrieval ranks pages better than the words a sentence shares with
    # the question: on git's and PostgreSQL's manuals its first page was the
    # expected one for 55-67 % of the questions, BM25's for 38-52 %. So its
    # first pages' sentences gain, and the first page is never left out.
    page_rank: dict[str, int] = {}
    hybrid = any(passage.similarity is not None for passage in passages)
    if hybrid:
        for passage in passages:
            page_rank.setdefault(passage.url or passage.source_id, len(page_rank))
    ranked = []
    for sentence in sentences:
        found = coverage.get(id(sentence), 0.0)
        passage = passages[sentence.passage]
        rank = page_rank.get(passage.url or passage.source_id)
        if found < sentence_floor or (passage_coverage[sentence.passage] < passage_floor
                                      and rank != 0):
            continue
        sentence.score = (found + PASSAGE_WEIGHT * passage_coverage[sentence.passage] +
                          PASSAGE_BONUS * _clamped_score(passage) +
                          (RANK_WEIGHT / (1 + rank) if rank is not None else 0.0) +
                          (CODE_WEIGHT if code_wanted and (sentence.code or sentence.label)
                           else 0.0))
        ranked.append(sentence)
    return sorted(ranked, key=lambda s: (-s.score, s.passage, s.position))


def _choose(ranked: Sequence[_Sentence], max_chars: int,
            max_sentences: int) -> tuple[list[_Sentence], str]:
    """The best sentences that fit, and the text they make."""
    def fits(sentences: list[_Sentence]) -> bool:
        carried = sum(len(s.code) for s in sentences)
        labels = sum(len(s.label) + 2 for s in sentences if s.label)
        return len(_render(sentences)) <= \
            max_chars + min(carried, CODE_ALLOWANCE) + min(labels, LABEL_ALLOWANCE)

    chosen = [ranked[0]]
    if not fits(chosen):
        if ranked[0].code or ranked[0].items:
            bare = dataclasses.replace(ranked[0], code="", items=[])
            if fits([bare]):  # what it introduces is too long to show: the sentence
                return [bare], _render([bare])
        return chosen, _shorten(ranked[0].shown, max_chars)  # the one case for an ellipsis
    for sentence in ranked[1:]:
        if len(chosen) >= max_sentences:
            break
        if any(sentence in s.items for s in chosen):
            continue  # already shown under the sentence that brings it
        if not _is_duplicate(sentence, _with_carried(chosen)) and fits(chosen + [sentence]):
            chosen.append(sentence)
    return chosen, _render(chosen)


def compose_answer(query: str, passages: Sequence[Passage], max_chars: int = 600,
                   max_sentences: int = 4, focus: str | None = None) -> Answer | None:
    """The few sentences of ``passages`` that best answer ``query``, or None.

    None means no sentence (nor the heading above it) shares a meaningful word
    with the query, so the caller should fall back rather than answer from
    unrelated text. ``focus``: the part of ``query`` that is the question itself
    (a follow-up, ``query`` having the previous question before it): when some
    sentence holds one of its words, only such sentences answer ("how do I
    restore that?" after "how do I back up a database?" is about restoring).
    """
    query_terms = _terms(normalise(query).split())
    sentences = _sentences(passages, _QueryTerms(query_terms))
    if not query_terms or not sentences:
        return None
    focus_terms = frozenset()
    if focus:
        focus_terms = _terms(normalise(focus).split()) & query_terms
        focused = [s for s in sentences if s.terms & focus_terms]
        if focused:
            sentences = focused + [s for s in sentences if s.carried and s not in focused]
    weights = _idf(sentences, query_terms)
    ranked = [s for s in _rank(sentences, passages, weights, _asks_for_code(query))
              if not _restates(s, query_terms)]
    if not ranked:
        return _by_meaning(sentences, passages, max_chars, max_sentences)
    chosen, text = _choose(ranked, max_chars, max_sentences)
    # Confidence is how well the best sentence (with what it brings along and the
    # headings above it) answers, not the patchwork of all of them: "open a pull
    # request on GitHub" found each of its words in some sentence of git's manual,
    # at 0.92, while no sentence held them together.
    best = max(_coverage(s.terms, s.context, weights) for s in chosen)
    covered = 0.5 * best + 0.5 * _coverage(frozenset().union(*(s.terms for s in chosen)),
                                           frozenset().union(*(s.context for s in chosen)),
                                           weights)
    if focus and focus_terms:
        # A follow-up is answered when its own words are; the previous question's
        # count half: the session already established the topic.
        own = {term: weight for term, weight in weights.items() if term in focus_terms}
        if own:
            covered = max(covered, max(0.5 * _coverage(s.terms, s.context, own) +
                                       0.5 * _coverage(s.terms, s.context, weights)
                                       for s in chosen))
    best_passage = max(_clamped_score(passages[s.passage]) for s in chosen)
    confidence = covered * (0.6 + 0.4 * best_passage)
    similarities = [p.similarity for p in passages if p.similarity is not None]
    if similarities:
        # Out-of-scope questions share words with some text far more often than
        # they come near its meaning (on our evals: cosine median 0.37 against
        # 0.54 for questions the docs answer).
        low, high = SIMILARITY_RANGE
        near = min(max((max(similarities) - low) / (high - low), 0.0), 1.0)
        confidence = (1 - SIMILARITY_WEIGHT) * confidence + SIMILARITY_WEIGHT * near
    return Answer(text, _sources(chosen, passages), round(confidence, 3))


def _by_meaning(sentences: Sequence[_Sentence], passages: Sequence[Passage], max_chars: int,
                max_sentences: int) -> Answer | None:
    """When no sentence shares a word with the question but hybrid retrieval's
    first passage is near it in meaning ("how do I quit the shell?" and "an
    end-of-file character at the primary prompt causes the interpreter to
    exit"): that passage's first sentences, as confident as its cosine says.
    None without a first passage at `MEANING_ONLY` or nearer."""
    first = passages[0].similarity if passages else None
    if first is None or first < MEANING_ONLY:
        return None
    own = [s for s in sentences if s.passage == 0 and not s.carried]
    if not own:
        return None
    chosen, text = _choose(sorted(own, key=lambda s: s.position), max_chars, max_sentences)
    if not chosen:
        return None
    # From the engine's threshold (0.35) at MEANING_ONLY to 1 at the top of the range.
    confidence = min(0.35 + 0.65 * (first - MEANING_ONLY) /
                     (SIMILARITY_RANGE[1] - MEANING_ONLY), 1.0)
    return Answer(text, _sources(chosen, passages), round(confidence, 3))


def _restates(sentence: _Sentence, query_terms: frozenset) -> bool:
    """Whether ``sentence`` is a question that says little but the asker's own
    question ("9.6 I have several machines; how can I download the updates only
    one time?" as a FAQ's heading): no answer, however well it matches. One that
    brings code or a list along is kept: what it introduces answers."""
    if sentence.code or sentence.items or not sentence.text.rstrip().endswith("?"):
        return False
    return len(content_terms(sentence.text) - query_terms) <= 1


def content_terms(text: str) -> frozenset:
    """The stemmed content words of ``text`` (stopwords dropped), as answers use them."""
    return _terms(normalise(text).split())


def reply_blocks(text: str) -> list[dict]:
    """A reply as ``{"type": "text" | "code", "text"}`` blocks, in order: its fenced
    code blocks apart from the prose, so a client shows them as code (escaped)
    without parsing Markdown. Works on any reply (FAQ, LLM, fallback)."""
    blocks: list[dict] = []
    prose: list[str] = []
    code: list[str] | None = None

    def add(kind: str, lines: list[str]) -> None:
        body = "\n".join(lines).strip("\n")
        if body.strip():
            blocks.append({"type": kind, "text": body})

    for line in text.split("\n"):
        if line.strip().startswith(FENCE):
            if code is None:
                add("text", prose)
                prose, code = [], []
            else:
                add("code", code)
                code = None
            continue
        (prose if code is None else code).append(line)
    if code is not None:
        add("code", code)
    add("text", prose)
    return blocks
