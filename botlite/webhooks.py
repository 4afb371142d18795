"""Signed webhook deliveries.

Each delivery is one JSON POST. The header ``X-Botlite-Signature: t=<unix
seconds>,v1=<hex>`` carries HMAC-SHA256(secret, "<t>.<raw body>"), Stripe-style:
a receiver recomputes it over the exact bytes it received, compares in constant
time, and rejects a ``t`` too far from its clock (replays). ``verify`` below is
that check, for receivers written in Python.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time

import requests

from botlite import __version__, pinned

SIGNATURE_HEADER = "X-Botlite-Signature"
TOLERANCE_SECONDS = 300


class DeliveryFailed(Exception):
    """The receiver could not be reached or did not answer 2xx."""

    expected = True  # the world, not a bug: logged without a traceback (runner)


class DeliveryRefused(DeliveryFailed):
    """The receiver's host resolves to an address deliveries may not use, or does
    not exist: it is never contacted, and retrying cannot help."""

    permanent = True


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp + body, hashlib.sha256)
    return "t=%d,v1=%s" % (timestamp, mac.hexdigest())


def verify(secret: str, header: str, body: bytes, tolerance: float = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within
    ``tolerance`` seconds of ``now``."""
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1].encode("ascii")
    return any(hmac.compare_digest(expected, given.encode("ascii", "replace"))
               for given in fields.get("v1", []))


def deliver(url: str, secret: str, payload: dict, delivery_id: str, timeout: float, *,
            allow_private: bool = True) -> int:
    """POST ``payload`` signed with ``secret``; return the HTTP status (2xx).

    The host is looked up once and the POST connects to one of exactly those
    addresses (`botlite.pinned`). Without ``allow_private`` (a bot's own webhook,
    unless BOTLITE_ALLOW_PRIVATE_URLS=1) every one must be public, as for website
    sources, else `DeliveryRefused` and nothing is sent; the operator's own URL
    may point anywhere. Redirects are not followed (a receiver that moved answers
    3xx: a failure to fix, not to chase). Raises DeliveryFailed.
    """
    from botlite.knowledge.crawl import CrawlError, addresses_to_connect

    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "botlite/%s" % __version__,
        "X-Botlite-Event": payload.get("event", "notification"),
        "X-Botlite-Delivery": delivery_id,
        "X-Botlite-Timestamp": str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    try:
        with requests.Session() as session:
            pinned.mount(session, functools.partial(addresses_to_connect,
                                                    allow_private=allow_private))
            # stream=True: only the status line matters; the receiver's body is never
            # read, so a large or trickling one cannot hold the worker.
            with session.post(url, data=body, headers=headers, timeout=timeout,
                              allow_redirects=False, stream=True) as answer:
                status = answer.status_code
    except CrawlError as exc:
        if exc.permanent:
            raise DeliveryRefused("webhook refused: %s" % exc.reason) from None
        raise DeliveryFailed("webhook host lookup failed: %s" % exc.reason) from None
    except requests.Timeout:
        raise DeliveryFailed("the receiver did not answer within %gs" % timeout) from None
    except requests.RequestException as exc:
        raise DeliveryFailed("cannot reach the receiver: %s" % type(exc).__name__) from None
    if not 200 <= status < 300:
        raise DeliveryFailed("the receiver answered HTTP %d" % status)
    return status
