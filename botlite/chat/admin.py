"""FAQs and custom intents of a bot (the admin API behind them)."""
from __future__ import annotations

import json

import peewee

from botlite import validate
from botlite.chat.intents import Intent
from botlite.chatbots import get_bot
from botlite.errors import BadRequest, Conflict, NotFound
from botlite.models import CustomIntent, Faq
from botlite.timeutil import utcnow



def list_faqs(bot_id: str) -> list[dict]:
    get_bot(bot_id)
    return [f.to_dict() for f in Faq.select().where(Faq.chatbot == bot_id).order_by(Faq.id)]


def add_faq(bot_id: str, data: dict) -> dict:
    validate.reject_unknown(data, {"question", "answer"})
    question = validate.text(data, "question", required=True, max_length=1000, allow_blank=False)
    answer = validate.text(data, "answer", required=True, max_length=8000, allow_blank=False)
    get_bot(bot_id)
    return Faq.create(chatbot=bot_id, question=question, answer=answer).to_dict()


def update_faq(faq_id: str, data: dict) -> dict:
    validate.reject_unknown(data, {"question", "answer"})
    faq = Faq.get_or_none(Faq.id == validate.row_id(faq_id, "FAQ"))
    if faq is None:
        raise NotFound("no FAQ with id %r" % faq_id)
    changes = {k: v for k, v in (
        ("question", validate.text(data, "question", max_length=1000, allow_blank=False)),
        ("answer", validate.text(data, "answer", max_length=8000, allow_blank=False)))
        if v is not None}
    if changes:
        Faq.update(updated_at=utcnow(), **changes).where(Faq.id == faq.id).execute()
    return Faq.get_by_id(faq.id).to_dict()


def delete_faq(faq_id: str) -> dict:
    faq = Faq.get_or_none(Faq.id == validate.row_id(faq_id, "FAQ"))
    if faq is None:
        raise NotFound("no FAQ with id %r" % faq_id)
    faq.delete_instance()
    return faq.to_dict()


def list_intents(bot_id: str) -> list[dict]:
    get_bot(bot_id)
    return [i.to_dict() for i in
            CustomIntent.select().where(CustomIntent.chatbot == bot_id).order_by(CustomIntent.id)]


def add_intent(bot_id: str, data: dict) -> dict:
    validate.reject_unknown(data, {"name", "examples", "responses"})
    name = validate.text(data, "name", required=True, max_length=64, allow_blank=False)
    examples = validate.string_list(data, "examples", max_items=100, max_length=500)
    responses = validate.string_list(data, "responses", max_items=20, max_length=2000)
    if not examples:
        raise BadRequest("field 'examples' needs at least one example phrase",
                         code="invalid_field")
    if not responses:
        raise BadRequest("field 'responses' needs at least one response", code="invalid_field")
    Intent(name, tuple(examples), tuple(responses))  # the engine's own checks
    get_bot(bot_id)
    try:
        row = CustomIntent.create(chatbot=bot_id, name=name, examples=json.dumps(examples),
                                  responses=json.dumps(responses))
    except peewee.IntegrityError:
        raise Conflict("the bot already has an intent named %r" % name) from None
    return row.to_dict()


def delete_intent(intent_id: str) -> dict:
    row = CustomIntent.get_or_none(CustomIntent.id == validate.row_id(intent_id, "intent"))
    if row is None:
        raise NotFound("no intent with id %r" % intent_id)
    row.delete_instance()
    return row.to_dict()
