"""Split a `Document` into overlapping chunks for search.

Chunks are packed from whole paragraphs; a paragraph is opened up into
sentences only to fill a chunk that is still short or because it is too long,
and a sentence into words only when it could never fit. Each chunk after the
first of a section starts with the end of the one before, snapped to a sentence
or word boundary. Chunks never cross a section; the same document always gives
the same chunks.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Iterator

from botlite.knowledge.extract import CODE_FENCE, Document

_PARAGRAPH, _SENTENCE, _WORD = 0, 1, 2

# Sentence end: terminal punctuation, closing quotes/brackets, then whitespace;
# CJK full stops need no whitespace. The pattern matches every run of
# punctuation, with or without the whitespace, and `_sentence_ends` keeps the
# ones with: a pattern requiring it failed at each position of a run not
# followed by whitespace, scanning the rest of the run each time ("." * 20000:
# seconds); a match consumes its whole run, so each run is scanned once.
_PUNCTUATION_RUN = re.compile(
    r"[.!?\u2026]+(?:[\"'\u201d\u2019)\]]*\s+)?|[\u3002\uff01\uff1f]+\s*")
_CJK_STOPS = frozenset("\u3002\uff01\uff1f")
# Words before a full stop that do not end a sentence ("Dr. Smith", "e.g. More").
_SPACE = re.compile(r"\s")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs e.g i.e cf al fig figs no nos vol pp ca approx "
    "inc ltd co corp dept jan feb mar apr jun jul aug sep sept oct nov dec".split())


@dataclass
class Chunk:
    """A piece of a document, the unit of search."""

    text: str
    """Whitespace-normalised; paragraphs separated by a blank line."""
    heading: str | None
    locator: str | None
    position: int
    """0-based order within the document."""


def chunk_document(doc: Document, target: int = 1000, max_chars: int = 1200,
                   min_chars: int = 800, overlap: int = 150) -> list[Chunk]:
    """Split ``doc`` into chunks of about ``target`` characters.

    No chunk is longer than ``max_chars``. Chunks end at paragraph or sentence
    ends; while a chunk is shorter than ``min_chars`` it may pass ``target``
    (up to ``max_chars``) to keep a paragraph or sentence whole. A sentence too
    long for any chunk is split between words; only a "word" too long for any
    chunk (a long URL, say) is cut. A section's short last chunk joins the one
    before when the two fit in ``max_chars``.
    """
    return list(iter_chunks(doc, target, max_chars, min_chars, overlap))


def iter_chunks(doc: Document, target: int = 1000, max_chars: int = 1200,
                min_chars: int = 800, overlap: int = 150) -> Iterator[Chunk]:
    """`chunk_document`, section by section: the indexer writes one batch while
    the next is cut."""
    if not 0 <= overlap < min_chars <= target <= max_chars:
        raise ValueError("need 0 <= overlap < min_chars <= target <= max_chars")
    limits = _Limits(target, max_chars, min_chars, overlap)
    position = 0
    for section in doc.sections:
        for text in _chunk_text(section.text, limits):
            yield Chunk(text, section.heading, section.locator, position)
            position += 1


@dataclass(frozen=True)
class _Limits:
    target: int
    max_chars: int
    min_chars: int
    overlap: int

    @property
    def room(self) -> int:
        """The longest piece that fits in a chunk after an overlap and a separator."""
        return max(1, self.max_chars - self.overlap - 2)


def _chunk_text(text: str, limits: _Limits) -> list[str]:
    paragraphs = [piece for paragraph in text.split("\n\n")
                  for piece in _code_pieces(paragraph, limits)]
    queue = deque((paragraph, True, _PARAGRAPH) for paragraph in paragraphs if paragraph)
    packer = _Packer(limits)
    while queue:
        piece, starts_paragraph, level = queue[0]
        if packer.fits(piece, starts_paragraph):
            packer.add(piece, starts_paragraph)
            queue.popleft()
            continue
        smaller = _opened_up(piece, starts_paragraph, level, packer, limits)
        if smaller is not None:
            queue.popleft()
            queue.extendleft(reversed(smaller))
            continue
        packer.close()
    return packer.finish()


def _code_pieces(paragraph: str, limits: _Limits) -> list[str]:
    """A paragraph whitespace-normalised; a fenced code block (extract.code_paragraph)
    kept line by line instead, cut at line ends into fenced pieces that each fit a
    chunk: a command is never joined to the next one, nor cut in the middle."""
    if not paragraph.startswith(CODE_FENCE + "\n") or not paragraph.endswith(
            "\n" + CODE_FENCE):
        return [" ".join(paragraph.split())]
    lines = paragraph.split("\n")[1:-1]
    room = limits.room - 2 * (len(CODE_FENCE) + 1)
    pieces, current, length = [], [], 0
    for line in lines:
        for start in range(0, max(len(line), 1), room):  # a line longer than a chunk
            part = line[start:start + room]
            if current and length + 1 + len(part) > room:
                pieces.append(current)
                current, length = [], 0
            current.append(part)
            length += len(part) + (1 if length else 0)
    if current:
        pieces.append(current)
    return ["%s\n%s\n%s" % (CODE_FENCE, "\n".join(piece), CODE_FENCE) for piece in pieces]


def _opened_up(piece: str, starts_paragraph: bool, level: int, packer: _Packer,
               limits: _Limits) -> list[tuple[str, bool, int]] | None:
    """``piece`` split one level finer, when that is worth it; else None."""
    if piece.startswith(CODE_FENCE):
        return None  # a code piece fits a chunk of its own (`_code_pieces`)
    if level == _PARAGRAPH and (packer.short or len(piece) > limits.room):
        parts = _sentences(piece)
        if len(parts) > 1:
            return [(part, starts_paragraph and index == 0, _SENTENCE)
                    for index, part in enumerate(parts)]
        level = _SENTENCE
    if level == _SENTENCE and len(piece) > limits.room:
        parts = piece.split(" ")
        if len(parts) > 1:
            return [(part, starts_paragraph and index == 0, _WORD)
                    for index, part in enumerate(parts)]
        level = _WORD
    if level == _WORD and not packer.has_body and len(piece) > limits.room:
        # Nothing to split at: cut it, the one place a chunk may end inside a "word".
        room = limits.room
        return [(piece[start:start + room], starts_paragraph and start == 0, _WORD + 1)
                for start in range(0, len(piece), room)]
    return None


class _Packer:
    """Builds the chunks of one section, piece by piece."""

    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self.chunks: list[str] = []
        self._parts: list[str] = []
        self._length = 0
        self._body: list[str] = []  # the current chunk without its overlap
        self._body_starts_paragraph = True

    @property
    def has_body(self) -> bool:
        return bool(self._body)

    @property
    def short(self) -> bool:
        return self._length < self.limits.min_chars

    def fits(self, piece: str, starts_paragraph: bool) -> bool:
        new_length = self._length + self._separator_length(starts_paragraph) + len(piece)
        if new_length <= self.limits.target:
            return True
        return self.short and new_length <= self.limits.max_chars

    def add(self, piece: str, starts_paragraph: bool) -> None:
        separator = self._separator(starts_paragraph)
        if not self._body:
            self._body_starts_paragraph = starts_paragraph
            self._body.append(piece)
        else:
            self._body.append(separator)
            self._body.append(piece)
        if self._parts:
            self._parts.append(separator)
        self._parts.append(piece)
        self._length += len(separator) + len(piece)

    def close(self) -> None:
        text = "".join(self._parts)
        self.chunks.append(text)
        prefix = _overlap_prefix(text, self.limits.overlap)
        if prefix.count(CODE_FENCE) % 2:  # it starts inside a code block: not that part
            prefix = prefix[prefix.index(CODE_FENCE) + len(CODE_FENCE):].lstrip()
        self._parts = [prefix] if prefix else []
        self._length = len(prefix)
        self._body = []

    def finish(self) -> list[str]:
        if not self._body:
            return self.chunks
        body = "".join(self._body)
        if self.chunks and self._length < self.limits.min_chars:
            separator = "\n\n" if self._body_starts_paragraph else " "
            merged = self.chunks[-1] + separator + body
            if len(merged) <= self.limits.max_chars:
                self.chunks[-1] = merged
                return self.chunks
        self.chunks.append("".join(self._parts))
        return self.chunks

    def _separator(self, starts_paragraph: bool) -> str:
        if not self._parts:
            return ""
        return "\n\n" if starts_paragraph else " "

    def _separator_length(self, starts_paragraph: bool) -> int:
        if not self._parts:
            return 0
        return 2 if starts_paragraph else 1


def _sentences(paragraph: str) -> list[str]:
    """Split a whitespace-normalised paragraph into sentences."""
    sentences = []
    start = 0
    for match in _sentence_ends(paragraph, 0, len(paragraph)):
        end = match.end()
        if end >= len(paragraph) or not _ends_sentence(paragraph, match):
            continue
        sentence = paragraph[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = end
    rest = paragraph[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _sentence_ends(text: str, start: int, end: int) -> Iterator[re.Match]:
    """Punctuation in ``text[start:end]`` followed by whitespace (or CJK stops):
    the places a sentence may end, for `_ends_sentence` to judge."""
    for match in _PUNCTUATION_RUN.finditer(text, start, end):
        punctuation = match.group()
        if punctuation[-1].isspace() or punctuation[0] in _CJK_STOPS:
            yield match


def _ends_sentence(text: str, match: re.Match) -> bool:
    following = text[match.end()] if match.end() < len(text) else ""
    if following.islower():
        return False
    punctuation = match.group()
    if punctuation[0] == "." and not punctuation.startswith(".."):
        word_start = text.rfind(" ", 0, match.start()) + 1
        word = text[word_start:match.start()].lstrip("(\"'\u201c\u2018[").lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
    return True


def _overlap_prefix(text: str, overlap: int) -> str:
    """The last ~``overlap`` characters of ``text``, starting at a sentence or
    paragraph start when that leaves at least a third of ``overlap``, else at a
    word start."""
    if overlap <= 0:
        return ""
    if len(text) <= overlap:
        return text
    cut = len(text) - overlap
    latest = len(text) - overlap // 3
    paragraph = text.find("\n\n", cut - 2, latest)
    start = paragraph + 2 if paragraph != -1 else latest + 1
    # A sentence end may begin just before the cut and still start a sentence after it.
    for match in _sentence_ends(text, max(0, cut - 3), start):
        if cut <= match.end() <= latest and _ends_sentence(text, match):
            start = min(start, match.end())
            break
    if start <= latest:
        return text[start:].strip()
    if text[cut - 1].isspace():
        return text[cut:].strip()
    space = _SPACE.search(text, cut)
    return text[space.end():].strip() if space else ""
