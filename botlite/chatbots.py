"""Creating, changing and deleting chatbots."""
from __future__ import annotations

import json
import re
import unicodedata
from urllib.parse import urlsplit

import peewee

from botlite.errors import BadRequest, Conflict, NotFound
from botlite.models import DEFAULT_BOT_ID, Chatbot
from botlite.timeutil import utcnow
from botlite import validate

BOT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EDITABLE = {"name", "description", "greeting", "fallback_message", "allowed_domains",
            "rate_limit_per_minute", "webhook_url", "webhook_secret"}
MIN_SECRET_LENGTH = 16


HOST_PATTERN = re.compile(r"^(https?://)?(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?"
                          r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")


# Letters that Unicode does not decompose into an ASCII base letter.
_LATIN = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                        "ß": "ss", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "þ": "th"})


def _slug(name: str) -> str:
    ascii_name = (unicodedata.normalize("NFKD", name.translate(_LATIN))
                  .encode("ascii", "ignore").decode())
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:48].strip("-")
    return slug or "bot"


def get_bot(bot_id: str) -> Chatbot:
    bot = Chatbot.get_or_none(Chatbot.id == bot_id)
    if bot is None:
        raise NotFound("no chatbot with id %r" % bot_id)
    return bot


def _changes(data: dict, *, creating: bool, allow_private: bool,
             saved_url: str | None = None) -> dict:
    changes = {
        "name": validate.text(data, "name", required=creating, max_length=200,
                              allow_blank=False),
        "description": validate.text(data, "description", max_length=2000),
        "greeting": validate.text(data, "greeting", max_length=2000),
        "fallback_message": validate.text(data, "fallback_message", max_length=2000),
        "rate_limit_per_minute": validate.integer(data, "rate_limit_per_minute",
                                                  minimum=0, maximum=10000),
    }
    domains = validate.string_list(data, "allowed_domains")
    if domains is not None:
        domains = [d.lower().rstrip("/") for d in domains]
        bad = [d for d in domains if not HOST_PATTERN.match(d)]
        if bad:
            raise BadRequest("field 'allowed_domains' must hold host names like example.com, "
                             "*.example.com or https://example.com:8443 (not %r)" % bad[0],
                             code="invalid_field")
        changes["allowed_domains"] = json.dumps(domains)
    changes = {key: value for key, value in changes.items() if value is not None}
    # null: an optional text empties (as "" does); a name or a number has no "none"
    for key in () if creating else ("name", "rate_limit_per_minute"):  # creating: the default
        if key in data and data[key] is None:
            raise BadRequest("field %r cannot be null" % key, code="invalid_field")
    changes.update({key: "" for key in ("description", "greeting", "fallback_message")
                    if key in data and data[key] is None})
    if "allowed_domains" in data and data["allowed_domains"] is None:
        changes["allowed_domains"] = "[]"
    changes.update(_webhook_changes(data, allow_private, saved_url))
    return changes


def _webhook_changes(data: dict, allow_private: bool, saved_url: str | None) -> dict:
    """webhook_url / webhook_secret; null or "" clears them. A URL on a private,
    loopback or link-local address is refused here, when it is saved, unless
    ``allow_private`` (BOTLITE_ALLOW_PRIVATE_URLS); delivery checks it again,
    since what a name resolves to can change (so the ``saved_url`` sent back
    unchanged is not looked up again)."""
    changes = {}
    if "webhook_url" in data:
        url = validate.text(data, "webhook_url", max_length=2000) or None
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadRequest("field 'webhook_url' must be an http:// or https:// URL",
                                 code="invalid_field")
            if url != saved_url:
                _check_webhook_address(url, allow_private)
        changes["webhook_url"] = url
    if "webhook_secret" in data:
        secret = validate.text(data, "webhook_secret", max_length=500) or None
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise BadRequest("field 'webhook_secret' must be at least %d characters"
                             % MIN_SECRET_LENGTH, code="invalid_field")
        changes["webhook_secret"] = secret
    return changes


def _check_webhook_address(url: str, allow_private: bool) -> None:
    """Refuse a webhook URL on a private address, or whose host does not exist;
    a lookup that fails for now lets it through: delivery checks each time."""
    from botlite.knowledge import crawl

    crawl.check_url_to_save(url, allow_private, "field 'webhook_url'")


def _check_webhook(url: str | None, secret: str | None) -> None:
    if url and not secret:
        raise BadRequest("a webhook_url needs a webhook_secret (at least %d characters): "
                         "deliveries are always signed" % MIN_SECRET_LENGTH,
                         code="invalid_field")


def create_bot(data: dict, allow_private: bool = False) -> Chatbot:
    validate.reject_unknown(data, EDITABLE | {"id"})
    fields = _changes(data, creating=True, allow_private=allow_private)
    _check_webhook(fields.get("webhook_url"), fields.get("webhook_secret"))
    wanted = validate.text(data, "id", max_length=64)
    if wanted is not None:
        if not BOT_ID.match(wanted):
            raise BadRequest("field 'id' must be lowercase letters, digits, '-' or '_' "
                             "(at most 64, starting with a letter or digit)",
                             code="invalid_field")
        candidates = [wanted]
    else:
        base = _slug(fields["name"])
        candidates = [base] + ["%s-%d" % (base, n) for n in range(2, 1000)]
    for bot_id in candidates:
        if Chatbot.get_or_none(Chatbot.id == bot_id) is not None:
            continue
        try:
            return Chatbot.create(id=bot_id, **fields)
        except peewee.IntegrityError:
            continue  # created concurrently; try the next id
    raise Conflict("a chatbot with id %r already exists" % candidates[0])


def update_bot(bot_id: str, data: dict, allow_private: bool = False) -> Chatbot:
    validate.reject_unknown(data, EDITABLE)
    bot = get_bot(bot_id)
    changes = _changes(data, creating=False, allow_private=allow_private,
                       saved_url=bot.webhook_url)
    _check_webhook(changes.get("webhook_url", bot.webhook_url),
                   changes.get("webhook_secret", bot.webhook_secret))
    if changes:
        changes["updated_at"] = utcnow()
        Chatbot.update(**changes).where(Chatbot.id == bot.id).execute()
        bot = get_bot(bot_id)
    return bot


def delete_bot(bot_id: str, data_dir: str | None = None) -> Chatbot:
    """Delete a bot with its sources, chunks, FAQs and conversations (cascades),
    and its uploaded files."""
    import os
    import shutil

    from botlite.models import Source
    if bot_id == DEFAULT_BOT_ID:
        raise Conflict("the default chatbot answers /chatbot/message/ and cannot be deleted")
    bot = get_bot(bot_id)
    folders = [s.id for s in Source.select(Source.id).where(
        (Source.chatbot == bot.id) & Source.stored_path.is_null(False))]
    bot.delete_instance()
    for source_id in folders if data_dir else ():
        shutil.rmtree(os.path.join(data_dir, "uploads", source_id), ignore_errors=True)
    return bot


def list_bots() -> list[Chatbot]:
    return list(Chatbot.select().order_by(Chatbot.created_at, Chatbot.id))
