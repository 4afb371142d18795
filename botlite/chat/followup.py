"""Follow-up questions: "and how do I undo that?" after "How do I create a branch?".

A question that leans on the one before (it points back with "that", "it",
"them"..., opens with "and" / "what about", or asks for more of the same) and
brings few content words of its own is searched together with the session's
previous question: "and how do I undo that?" becomes "How do I create a branch?
and how do I undo that?". A question that stands on its own (enough content
words, no pointing back) is answered as it is, so the past never pollutes it.

The previous question of each session is kept in this process's memory
(`SessionMemory`); a session this process has not seen (another web process, a
restart) is looked up in the transcript, once.
"""
from __future__ import annotations

import collections
import datetime
import re
import json
import threading
import time
from dataclasses import dataclass

from botlite.chat.answer import content_terms
from botlite.chat.intents import normalise
from botlite.db import execute
from botlite.timeutil import utcnow

MAX_OWN_TERMS = 3
"""A question with more content words than this (one more if it points back with
"it", "that"...) stands on its own."""
MAX_SESSIONS = 50_000
"""Sessions remembered per process (least recently used forgotten first)."""
MAX_REMEMBERED_WORDS = 40
"""Words of a session's resolved question kept (a long chain keeps its latest)."""
MEMORY_SECONDS = 30 * 60
"""A question older than this is no longer what a follow-up points back to."""

_POINTING = frozenset("""
    that this it its they them their those these there then one ones he she him her
    same such former latter above previous
""".split())
_OPENERS = ("and ", "but ", "also ", "so ", "then ", "what about", "how about", "what if",
            "and what", "or ", "why not", "instead", "else", "only ", "just ")
_MORE = re.compile(r"\b(more detail|more details|explain|elaborate|example|examples|"
                   r"tell me more|go on|details|in detail|further|why)\b")


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on the one before it rather than standing alone."""
    words = normalise(question).split()
    if not words:
        return False
    own = content_terms(question)
    pointing = any(word in _POINTING for word in words)
    if len(own) > MAX_OWN_TERMS + pointing:  # "update it to the newest upstream commit"
        return False
    text = " ".join(words) + " "
    return (pointing or text.startswith(_OPENERS) or bool(_MORE.search(text)) or not own)


@dataclass(frozen=True)
class Previous:
    """A session's last question (as resolved) and the pages its reply cited
    (their URL, or source id for a file)."""
    question: str
    pages: frozenset = frozenset()


def resolve(question: str, previous: str | None) -> str:
    """The question to search and answer: with the previous one for a follow-up."""
    if previous and is_follow_up(question):
        return "%s %s" % (previous, question)
    return question


def page_key(source: dict) -> str:
    """What identifies a cited page: its URL, else its source."""
    return source.get("url") or source.get("source_id") or ""


class SessionMemory:
    """The last question each session asked (as resolved), in this process."""

    def __init__(self, clock=time.monotonic, max_sessions: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.max_sessions = max_sessions
        self.questions: collections.OrderedDict[tuple[str, str], tuple[float, Previous]] = \
            collections.OrderedDict()
        self.lock = threading.Lock()

    def previous(self, bot_id: str, session_id: str) -> Previous | None:
        """The session's last question, from memory or else its transcript."""
        key = (bot_id, session_id)
        with self.lock:
            found = self.questions.get(key)
        if found is not None:
            asked, question = found
            return question if self.clock() - asked <= MEMORY_SECONDS else None
        return _last_question_logged(bot_id, session_id)

    def remember(self, bot_id: str, session_id: str, question: str,
                 sources: list[dict]) -> None:
        """Keep ``question`` (as resolved: a chain of follow-ups keeps its topic),
        its last `MAX_REMEMBERED_WORDS` words, and the pages ``sources`` cite."""
        question = " ".join(question.split()[-MAX_REMEMBERED_WORDS:])
        found = Previous(question, frozenset(page_key(s) for s in sources if page_key(s)))
        key = (bot_id, session_id)
        with self.lock:
            self.questions[key] = (self.clock(), found)
            self.questions.move_to_end(key)
            while len(self.questions) > self.max_sessions:
                self.questions.popitem(last=False)


def _last_question_logged(bot_id: str, session_id: str) -> Previous | None:
    """The session's last question in the transcript, if asked in the last
    `MEMORY_SECONDS`: for a process that did not see the turn before (another web
    process, a restart). A turn is written moments after its reply, so one asked
    an instant ago elsewhere may not be there yet."""
    from botlite.models import Message

    since = Message.created_at.db_value(utcnow() - datetime.timedelta(seconds=MEMORY_SECONDS))
    row = execute(
        "select u.text, b.sources from conversation c join message b on b.conversation_id = c.id "
        "join message u on u.conversation_id = c.id and u.created_at = b.created_at "
        "and u.role = 'user' where c.chatbot_id = ? and c.session_id = ? and "
        "b.role = 'bot' and b.intent = 'question' and b.created_at >= ? "
        "order by b.created_at desc limit 1", (bot_id, session_id, since)).fetchone()
    if row is None:
        return None
    try:
        cited = json.loads(row[1] or "[]")
    except ValueError:
        cited = []
    pages = frozenset(page_key(s) for s in cited if isinstance(s, dict) and page_key(s))
    return Previous(row[0], pages)
