"""Task messages and results as JSON, never pickle.

Huey hands the serializer its ``Message`` namedtuples (with nested messages for
pipelines), datetimes, ``Error`` results and ``SKIPPED``. Those are tagged;
everything else must already be plain JSON or enqueueing fails with TypeError.
"""
from __future__ import annotations

import datetime
import json
from typing import Any

from huey.registry import Message
from huey.serializer import Serializer
from huey.utils import SKIPPED, Error

_MESSAGE, _ERROR, _DATETIME, _TIMEDELTA, _SKIPPED, _EXCEPTION, _ESCAPED = (
    "__huey_message__", "__huey_error__", "__datetime__", "__timedelta__", "__skipped__",
    "__exception__", "__escaped__")
_TAGS = frozenset((_MESSAGE, _ERROR, _DATETIME, _TIMEDELTA, _SKIPPED, _EXCEPTION, _ESCAPED))


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Message):
        return {_MESSAGE: [_encode(item) for item in value]}
    if isinstance(value, Error):
        return {_ERROR: _encode(value.metadata)}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("task data must be JSON: dict key %r is not a string" % (key,))
            encoded[key] = _encode(item)
        if len(encoded) == 1 and next(iter(encoded)) in _TAGS:
            return {_ESCAPED: encoded}  # a user's dict that looks like one of our tags
        return encoded
    if isinstance(value, datetime.datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {_TIMEDELTA: value.total_seconds()}
    if value is SKIPPED:
        return {_SKIPPED: True}
    if isinstance(value, BaseException):
        # on_error handlers receive the exception: pass its type and message.
        return {_EXCEPTION: {"type": type(value).__name__, "message": str(value)}}
    raise TypeError("task data must be JSON: %s is not JSON serialisable"
                    % type(value).__name__)


def _decode(value: Any) -> Any:
    """Undo _encode, top-down (so an escaped dict's own keys stay as they are)."""
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        key, inner = next(iter(value.items()))
        if key == _MESSAGE:
            message = Message(*[_decode(item) for item in inner])
            # Huey appends pipeline results to args with tuple concatenation.
            return message._replace(args=tuple(message.args or ()))
        if key == _ESCAPED:
            return {k: _decode(v) for k, v in inner.items()}
        if key == _ERROR:
            return Error(_decode(inner))
        if key == _DATETIME:
            return datetime.datetime.fromisoformat(inner)
        if key == _TIMEDELTA:
            return datetime.timedelta(seconds=inner)
        if key == _SKIPPED:
            return SKIPPED
        if key == _EXCEPTION:
            return TaskError(inner["type"], inner["message"])
    return {k: _decode(v) for k, v in value.items()}


class TaskError(Exception):
    """An exception as an on_error handler receives it: its type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__("%s: %s" % (type_name, message))
        self.type_name = type_name
        self.message = message

    def __eq__(self, other):
        return isinstance(other, TaskError) and (self.type_name, self.message) == (
            other.type_name, other.message)

    __hash__ = Exception.__hash__


class JSONSerializer(Serializer):
    """Huey serializer that writes compact JSON (optionally compressed)."""

    def _serialize(self, data: Any) -> bytes:
        return json.dumps(_encode(data), separators=(",", ":"),
                          allow_nan=False).encode("utf-8")

    def _deserialize(self, data: bytes) -> Any:
        data = bytes(data)
        if data.startswith(b'{"__huey_message__":') and data.count(b'{"__') == 1:
            # The common case: a message with plain JSON arguments and no times.
            message = Message(*json.loads(data)[_MESSAGE])
            return message._replace(args=tuple(message.args or ()))
        return _decode(json.loads(data))


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data, or TypeError naming what is not JSON."""
    return json.loads(json.dumps(_encode(value), allow_nan=False))
