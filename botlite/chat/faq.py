"""Matching a question against a bot's FAQ, paraphrases included.

Each FAQ question and the message become sets of stemmed content words; the
match score is a Dice overlap weighted by how rare each word is among the bot's
FAQ questions (so "refund" counts more than "order" when every FAQ mentions
orders). Above ``THRESHOLD`` the FAQ's answer is returned verbatim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from botlite.chat.answer import content_terms

THRESHOLD = 0.6


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answer: str


@dataclass(frozen=True)
class FaqMatch:
    entry: FaqEntry
    score: float


def best_match(message: str, entries: Sequence[FaqEntry]) -> FaqMatch | None:
    """The best FAQ for ``message`` if it scores at least THRESHOLD."""
    asked = content_terms(message)
    if not asked or not entries:
        return None
    questions = [content_terms(entry.question) for entry in entries]
    count = len(entries)
    frequency: dict[str, int] = {}
    for terms in questions:
        for term in terms:
            frequency[term] = frequency.get(term, 0) + 1

    def weight(term: str) -> float:
        return math.log(1 + (count + 1) / (frequency.get(term, 0) + 0.5))

    best = None
    for entry, terms in zip(entries, questions):
        if not terms:
            continue
        shared = sum(weight(t) for t in asked & terms)
        total = sum(weight(t) for t in asked) + sum(weight(t) for t in terms)
        score = 2 * shared / total if total else 0.0
        if best is None or score > best.score:
            best = FaqMatch(entry, round(score, 3))
    return best if best is not None and best.score >= THRESHOLD else None
