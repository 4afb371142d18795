"""Failed logins, throttled per client address with a doubling lockout.

Every way of presenting the admin token counts: ``/?token=``, ``POST /login`` and
a bearer token on the API. An address may get `FREE_FAILURES` wrong in a row;
each further one locks it out for twice as long as the last (1 s, 2 s, … up to
`MAX_LOCKOUT`), and while locked out every attempt from it, right or wrong, is
answered 429 without being checked, so guessing gets no faster by sending more.
A success clears the address; failures are forgotten `FORGET_AFTER` seconds
after the last one. Counts are kept in this web process's memory.

Each failure before the lockout is logged (WARNING, with the address and the way
it came); then one line per lockout, not one per refused request.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time

from botlite.auth import token_matches
from botlite.errors import TooManyRequests
from botlite.widget import visitor_key

logger = logging.getLogger(__name__)

FREE_FAILURES = 5
"""Wrong tokens an address may present in a row before it is locked out."""
MAX_LOCKOUT = 300.0
"""The longest lockout, in seconds (the doubling stops there)."""
FORGET_AFTER = 900.0
"""Seconds after its last failure when an address starts again from zero."""


class _Record:
    __slots__ = ("failures", "last_failure", "locked_until", "refused")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0
        self.locked_until = 0.0
        self.refused = 0


class LoginThrottle:
    def __init__(self, clock=time.monotonic, max_addresses: int = 100_000) -> None:
        self.clock = clock
        self.max_addresses = max_addresses
        self.records: collections.OrderedDict[str, _Record] = collections.OrderedDict()
        self.lock = threading.Lock()

    def verify(self, address: str, given: str | None, expected: str, way: str) -> bool:
        """Whether ``given`` is the admin token, counted for ``address``: raises
        TooManyRequests while it is locked out (the token unchecked), clears it on
        a match, counts a failure (``way``: how it came, for the log) otherwise."""
        self.check(address)
        if token_matches(given, expected):
            self.succeeded(address)
            return True
        self.failed(address, way)
        return False

    def check(self, address: str) -> None:
        """Raise TooManyRequests while ``address`` is locked out."""
        now = self.clock()
        with self.lock:
            record = self.records.get(visitor_key(address))
            if record is None or record.locked_until <= now:
                return
            record.refused += 1
            wait = max(1, math.ceil(record.locked_until - now))
        raise TooManyRequests("too many wrong admin tokens from this address; try again "
                              "in %d s" % wait, retry_after=wait)

    def failed(self, address: str, way: str) -> None:
        """Count a wrong token from ``address`` presented by ``way`` (for the log)."""
        now = self.clock()
        key = visitor_key(address)
        with self.lock:
            record = self.records.get(key)
            if record is None or now - record.last_failure > FORGET_AFTER:
                record = self.records[key] = _Record()
            self.records.move_to_end(key)
            record.failures += 1
            record.last_failure = now
            over = record.failures - FREE_FAILURES
            if over > 0:
                lockout = min(MAX_LOCKOUT, 2.0 ** (over - 1))
                record.locked_until = now + lockout
            refused, record.refused = record.refused, 0
            failures = record.failures
            while len(self.records) > self.max_addresses:
                self.records.popitem(last=False)
        if over > 0:
            logger.warning("failed login from %s (%s): %d wrong tokens in a row, locked "
                           "out for %g s%s", address, way, failures, lockout,
                           " (%d attempts refused while locked out)" % refused
                           if refused else "")
        else:
            logger.warning("failed login from %s (%s): wrong admin token", address, way)

    def succeeded(self, address: str) -> None:
        with self.lock:
            self.records.pop(visitor_key(address), None)
