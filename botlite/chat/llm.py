"""Optional answers from an OpenAI-compatible chat-completions endpoint.

The retrieved chunks go in as numbered context and the model is asked to cite
them as [1], [2]. A timeout or an error counts as a failure; after
``FAILURES_TO_OPEN`` failures in a row the circuit opens and the LLM is skipped
for ``COOL_DOWN`` seconds (then one call is tried again). The caller falls back
to the extractive answer, so an LLM outage never breaks chat.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import requests

logger = logging.getLogger(__name__)

FAILURES_TO_OPEN = 3
COOL_DOWN = 60.0
TIMEOUT = (3.0, 20.0)
MAX_ANSWER_BYTES = 1024 * 1024
SYSTEM_PROMPT = (
    "You are {bot_name}, a helpful assistant. Answer the user's question using only the "
    "numbered context passages. Cite the passages you use like [1] or [2]. If the "
    "context does not contain the answer, say that you don't know. Be concise.")
_CITATION = re.compile(r"\[(\d{1,2})\]")


class LLMUnavailable(Exception):
    """The LLM did not answer (error, timeout, or circuit open)."""


@dataclass
class LLMAnswer:
    text: str
    cited: list[int]  # 0-based indexes of the context passages the text cites


def completions_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class CircuitBreaker:
    def __init__(self, failures_to_open: int = FAILURES_TO_OPEN,
                 cool_down: float = COOL_DOWN) -> None:
        self.failures_to_open = failures_to_open
        self.cool_down = cool_down
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Closed: yes. Open: no, until the cool-down passes; then exactly one
        caller (the probe) is let through until it succeeds or fails."""
        with self._lock:
            if self.opened_at is None:
                return True
            if self.probing or time.monotonic() - self.opened_at < self.cool_down:
                return False
            self.probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            self.probing = False
            if self.failures >= self.failures_to_open:
                self.opened_at = time.monotonic()

    @property
    def state(self) -> str:
        with self._lock:
            if self.opened_at is None:
                return "closed"
            if self.probing or time.monotonic() - self.opened_at >= self.cool_down:
                return "half-open"
            return "open"


class LLMClient:
    def __init__(self, url: str, model: str | None, api_key: str | None,
                 timeout: tuple[float, float] = TIMEOUT,
                 breaker: CircuitBreaker | None = None) -> None:
        self.url = completions_url(url)
        self.model = model or "default"
        self.api_key = api_key
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker()
        self.session = requests.Session()

    def answer(self, question: str, passages: Sequence[str], bot_name: str) -> LLMAnswer:
        if not self.breaker.allow():
            raise LLMUnavailable("circuit open after repeated failures")
        context = "\n\n".join("[%d] %s" % (i + 1, text) for i, text in enumerate(passages))
        payload = {"model": self.model, "temperature": 0.2, "messages": [
            {"role": "system", "content": SYSTEM_PROMPT.format(bot_name=bot_name)},
            {"role": "user", "content": "Context:\n%s\n\nQuestion: %s" % (context, question)}]}
        headers = {"Authorization": "Bearer %s" % self.api_key} if self.api_key else {}
        deadline = time.monotonic() + self.timeout[1]
        try:
            # requests' read timeout is per read: a server trickling bytes would
            # never trip it, so the whole answer must arrive before the deadline.
            with self.session.post(self.url, json=payload, headers=headers,
                                   timeout=self.timeout, stream=True) as response:
                response.raise_for_status()
                body = bytearray()
                while True:
                    block = response.raw.read1(65536, decode_content=True)  # what has arrived
                    if not block:
                        break
                    body += block
                    if time.monotonic() > deadline:
                        raise TimeoutError("no complete answer within %ss" % self.timeout[1])
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ValueError("answer larger than %d bytes" % MAX_ANSWER_BYTES)
            text = json.loads(body)["choices"][0]["message"]["content"].strip()
            if not text:
                raise ValueError("empty answer")
        except Exception as exc:
            self.breaker.failure()
            logger.warning("LLM call failed (%s); using the extractive answer", exc)
            raise LLMUnavailable(str(exc)) from None
        self.breaker.success()
        cited = sorted({int(n) - 1 for n in _CITATION.findall(text)
                        if 0 < int(n) <= len(passages)})
        return LLMAnswer(text, cited)
