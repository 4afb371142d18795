"""Who may use a bot's public chat: its allowed sites (CORS) and its rate limit.

The public chat endpoints answer browsers on other sites only when the page's
origin is in the bot's ``allowed_domains``; requests from any other site are
refused (403) and get no CORS headers. Each visitor (client address) may send a
bot at most ``rate_limit_per_minute`` messages in any 60 seconds (0: no limit);
the admin (bearer token, or the dashboard session with its CSRF token) is exempt.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from botlite.chat import service as chat_service
from botlite.chatbots import get_bot
from botlite.errors import Forbidden, TooManyRequests
from botlite.models import DEFAULT_BOT_ID, Chatbot

WINDOW_SECONDS = 60.0
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type"
CORS_MAX_AGE = "600"


@dataclass
class Caller:
    """The parts of a request the checks need; ``allow_origin`` is their verdict."""
    origin: str | None
    own_origin: str
    address: str
    admin: bool = False
    allow_origin: str | None = None

    def cross_site(self) -> bool:
        return bool(self.origin) and self.origin != self.own_origin


def _split_origin(origin: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port


def origin_allowed(origin: str, allowed_domains: list[str]) -> bool:
    """``origin`` (scheme://host[:port]) against entries such as ``example.com``
    (any scheme, any port), ``*.example.com`` (subdomains only),
    ``example.com:8080`` or ``https://example.com`` (that scheme, its default port
    unless one is given)."""
    split = _split_origin(origin)
    if split is None:
        return False
    scheme, host, port = split
    for entry in allowed_domains:
        want_scheme, _, rest = entry.rpartition("://")
        if want_scheme and want_scheme != scheme:
            continue
        want_host, _, want_port = rest.partition(":")
        if want_port:
            if (port or (443 if scheme == "https" else 80)) != int(want_port):
                continue
        elif want_scheme and port not in (None, 443 if scheme == "https" else 80):
            continue
        if want_host.startswith("*."):
            if host.endswith(want_host[1:]) and host != want_host[2:]:
                return True
        elif host == want_host:
            return True
    return False


def _allowed_domains(bot: Chatbot) -> list[str]:
    return json.loads(bot.allowed_domains or "[]")


class RateLimiter:
    """A sliding 60-second window per (bot, visitor), in this process's memory."""

    def __init__(self, clock=time.monotonic, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        # Least recently seen first: when full, the oldest visitors are forgotten
        # (in O(1) per hit, never a scan under the lock).
        self.hits: collections.OrderedDict[tuple[str, str], collections.deque] = \
            collections.OrderedDict()
        self.lock = threading.Lock()

    def hit(self, bot_id: str, visitor: str, per_minute: int,
            what: str = "this chatbot accepts %d messages per minute") -> None:
        """Count one message, or raise TooManyRequests (counting nothing); ``what``
        says what the limit is (``%d``: ``per_minute``)."""
        if per_minute <= 0:
            return
        now = self.clock()
        key = (bot_id, visitor_key(visitor))
        with self.lock:
            window = self.hits.get(key)
            if window is None:
                window = self.hits[key] = collections.deque()
            else:
                self.hits.move_to_end(key)
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if len(window) >= per_minute:
                retry_after = max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
                raise TooManyRequests(
                    "%s from one visitor; try again in %d s" % (what % per_minute, retry_after),
                    retry_after=retry_after)
            window.append(now)
            while len(self.hits) > self.max_keys:
                self.hits.popitem(last=False)


FEEDBACK_PER_MINUTE = 30
"""Feedback answers ("was this helpful?") one visitor may give per minute, over all
bots (each change queued a task: 2,000 POSTs in 6 s queued 1,000)."""


def feedback_gate(caller_address: str, limiter: RateLimiter) -> None:
    """Count one feedback POST from ``caller_address``, or raise TooManyRequests."""
    limiter.hit("\0feedback", caller_address, FEEDBACK_PER_MINUTE,
                what="feedback is accepted %d times per minute")


def visitor_key(address: str) -> str:
    """One visitor per IPv4 address and per IPv6 /64 (one host can hold a whole
    /64, so counting its addresses one by one would be no limit at all)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network("%s/64" % ip, strict=False))


def check_origin(bot: Chatbot, caller: Caller) -> None:
    """Refuse other sites' pages unless the bot allows them; note the CORS verdict.
    The admin passes anyway: the dashboard behind a proxy that changes the scheme or
    host looks cross-site here."""
    if not caller.cross_site():
        return
    if origin_allowed(caller.origin, _allowed_domains(bot)):
        caller.allow_origin = caller.origin
    elif not caller.admin:
        raise Forbidden("chatbot %r does not allow pages on %s to use it (add the site "
                        "to its allowed domains)" % (bot.id, caller.origin),
                        code="origin_not_allowed")


def admit(bot: Chatbot, caller: Caller, limiter: RateLimiter) -> None:
    """The origin check, then the visitor's rate limit."""
    check_origin(bot, caller)
    if not caller.admin:
        limiter.hit(bot.id, caller.address, bot.rate_limit_per_minute)


def chat(app, data: dict, bot_id: str | None, caller: Caller, limiter: RateLimiter) -> dict:
    """A public chat message: admitted for the bot it names, then answered."""
    named = bot_id if bot_id is not None else data.get("chatbot_id", DEFAULT_BOT_ID)
    bot = None
    if isinstance(named, str) and named:
        bot = chat_service.chat_bot(named)  # read once: for the check and for the turn
        admit(bot, caller, limiter)
    return chat_service.chat(app, data, bot_id=bot_id, bot=bot)


def public_info(bot_id: str, caller: Caller) -> dict:
    """What the widget shows before the first message: the bot's name and greeting."""
    bot = get_bot(bot_id)
    check_origin(bot, caller)
    return {"id": bot.id, "name": bot.name, "greeting": bot.greeting}


def preflight(bot_id: str | None, caller: Caller) -> None:
    """Answer a CORS preflight: allowed when the origin may use the bot (or, for
    /chatbot/message/, whose body names the bot, any bot)."""
    if not caller.origin:
        return
    bots = [get_bot(bot_id)] if bot_id is not None else list(Chatbot.select())
    if any(origin_allowed(caller.origin, _allowed_domains(bot)) for bot in bots):
        caller.allow_origin = caller.origin
        return
    raise Forbidden("no chatbot here allows pages on %s to use it" % caller.origin,
                    code="origin_not_allowed")


def cors_headers(origin: str, preflight_request: bool) -> dict:
    headers = {"Access-Control-Allow-Origin": origin}
    if preflight_request:
        headers.update({"Access-Control-Allow-Methods": CORS_METHODS,
                        "Access-Control-Allow-Headers": CORS_HEADERS,
                        "Access-Control-Max-Age": CORS_MAX_AGE})
    else:
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers
