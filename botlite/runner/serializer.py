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

_MESSAGE, _ERROR, _DATETIME, _TIMEDELTA, _SKIPPED = (
    "__huey_message__", "__huey_error__", "__datetime__", "__timedelta__", "__skipped__")


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
        return encoded
    if isinstance(value, datetime.datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {_TIMEDELTA: value.total_seconds()}
    if value is SKIPPED:
        return {_SKIPPED: True}
    raise TypeError("task data must be JSON: %s is not JSON serialisable"
                    % type(value).__name__)


def _decode_object(obj: dict) -> Any:
    if len(obj) == 1:
        key, value = next(iter(obj.items()))
        if key == _MESSAGE:
            return Message(*value)
        if key == _ERROR:
            return Error(value)
        if key == _DATETIME:
            return datetime.datetime.fromisoformat(value)
        if key == _TIMEDELTA:
            return datetime.timedelta(seconds=value)
        if key == _SKIPPED:
            return SKIPPED
    return obj


class JSONSerializer(Serializer):
    """Huey serializer that writes compact JSON (optionally compressed)."""

    def _serialize(self, data: Any) -> bytes:
        return json.dumps(_encode(data), separators=(",", ":"),
                          allow_nan=False).encode("utf-8")

    def _deserialize(self, data: bytes) -> Any:
        return json.loads(data, object_hook=_decode_object)


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data, or TypeError naming what is not JSON."""
    return json.loads(json.dumps(_encode(value), allow_nan=False))
