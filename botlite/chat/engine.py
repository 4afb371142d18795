"""One chat turn: normalise → intent → FAQ → knowledge → optional LLM → fallback.

The reply says which step answered (``answer_source``: intent, faq, knowledge,
llm or fallback) and how confident it is. Knowledge answers cite their pages;
below ``KNOWLEDGE_THRESHOLD`` the bot says it does not know instead of answering
from text that merely shares a word with the question.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from botlite.chat import followup
from botlite.chat.answer import Passage, compose_answer
from botlite.chat.faq import FaqEntry, best_match
from botlite.chat.intents import Intent, detect_intent, respond, strip_opener
from botlite.chat.llm import LLMClient, LLMUnavailable
from botlite.knowledge import index
from botlite.db import execute
from botlite.models import Chatbot

logger = logging.getLogger(__name__)

KNOWLEDGE_THRESHOLD = 0.35
SEARCH_K = 8
DEFAULT_FALLBACK = ("Sorry, I don't know the answer to that yet. Try rephrasing your "
                    "question, or ask about something else.")


@dataclass
class Reply:
    reply: str
    intent: str
    answer_source: str
    confidence: float
    sources: list[dict] = field(default_factory=list)
    question: str | None = None  # what was searched: with the previous one for a follow-up


# Plain SQL: these run on every turn (see botlite.db.execute).
def custom_intents(bot_id: str) -> list[Intent]:
    rows = execute("select name, examples, responses from custom_intent where chatbot_id = ? "
                   "order by id", (bot_id,)).fetchall()
    return [Intent(name, tuple(json.loads(examples)), tuple(json.loads(responses)))
            for name, examples, responses in rows]


def faq_entries(bot_id: str) -> list[FaqEntry]:
    rows = execute("select id, question, answer from faq where chatbot_id = ? order by id",
                   (bot_id,)).fetchall()
    return [FaqEntry(str(id_), question, answer) for id_, question, answer in rows]


class ChatEngine:
    def __init__(self, llm: LLMClient | None = None) -> None:
        self.llm = llm

    def reply(self, bot: Chatbot, message: str, seed: str | None = None,
              previous: followup.Previous | None = None) -> Reply:
        """``previous``: the session's last question, which a follow-up leans on
        (`botlite.chat.followup`)."""
        text = " ".join(message.split())
        match = detect_intent(text, custom_intents(bot.id), bot_name=bot.name)
        if match is not None:
            return Reply(respond(match, bot.name, seed), match.intent.name, "intent",
                         round(match.confidence, 3))

        question = strip_opener(text, bot.name) or text
        faq = best_match(question, faq_entries(bot.id))
        if faq is not None:
            return Reply(faq.entry.answer, "question", "faq", faq.score,
                         [{"source_id": "faq:%s" % faq.entry.id, "title": faq.entry.question,
                           "url": None, "snippet": faq.entry.answer[:200],
                           "score": faq.score}])

        resolved = followup.resolve(question, previous.question if previous else None)
        if resolved == question:
            previous = None
        reply = self._from_knowledge(bot, resolved, question if previous else None,
                                     previous.pages if previous else frozenset())
        reply.question = resolved
        return reply

    def _from_knowledge(self, bot: Chatbot, question: str, focus: str | None,
                        pages: frozenset) -> Reply:
        """``focus``: a follow-up's own words; ``pages``: those the reply before it
        cited, whose passages carry the previous question as their context."""
        hits = index.search(bot.id, question, SEARCH_K)
        passages = [Passage(h.source_id, h.title, h.url, h.text, h.score, h.heading,
                            context=question if (h.url or h.source_id) in pages else None,
                            similarity=h.similarity)
                    for h in hits]
        extractive = compose_answer(question, passages, focus=focus) if passages else None
        if extractive is None or extractive.confidence < KNOWLEDGE_THRESHOLD:
            return self.fallback(bot, extractive)

        if self.llm is not None:
            try:
                generated = self.llm.answer(question, [p.text for p in passages], bot.name)
            except LLMUnavailable:
                pass
            else:
                text, sources = _cite(generated, passages)
                return Reply(text, "question", "llm", extractive.confidence, sources)
        return Reply(extractive.text, "question", "knowledge", extractive.confidence,
                     extractive.sources)

    @staticmethod
    def fallback(bot: Chatbot, extractive=None) -> Reply:
        confidence = round(extractive.confidence, 3) if extractive is not None else 0.0
        return Reply(bot.fallback_message or DEFAULT_FALLBACK, "question", "fallback",
                     confidence)


_MARK = re.compile(r"\[(\d{1,3})\]")


def _cite(generated, passages) -> tuple[str, list[dict]]:
    """The LLM's text with its [n] renumbered to the returned sources (one per
    page, in order of first citation); markers naming no passage are dropped."""
    number_of_page, sources, renumber = {}, [], {}
    for position in generated.cited:
        passage = passages[position]
        key = passage.url or passage.source_id
        if key not in number_of_page:
            sources += _page_sources([passage])
            number_of_page[key] = len(sources)
        renumber[position + 1] = number_of_page[key]

    def mark(match):
        number = renumber.get(int(match.group(1)))
        return "[%d]" % number if number else ""

    text = re.sub(r" +([.,;:!?])", r"\1", _MARK.sub(mark, generated.text)).strip()
    return text, sources or _page_sources(passages[:1])


def _page_sources(passages) -> list[dict]:
    """One source per page (or per file), best first."""
    seen, sources = set(), []
    for p in sorted(passages, key=lambda p: -p.score):
        key = p.url or p.source_id
        if key in seen:
            continue
        seen.add(key)
        sources.append({"source_id": p.source_id, "title": p.title, "url": p.url,
                        "snippet": " ".join(p.text.split())[:200], "score": p.score})
    return sources
