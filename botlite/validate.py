"""Field checks for JSON bodies: each failure is a 400 naming the field."""
from __future__ import annotations

from typing import Any

from botlite.errors import BadRequest, NotFound

MAX_ROW_ID = 2 ** 63 - 1
"""The largest row id SQLite and PostgreSQL (bigint) can hold; past it, no row."""


def reject_unknown(data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest("unknown field(s): %s (allowed: %s)" % (
            ", ".join(unknown), ", ".join(sorted(allowed))), code="invalid_field")


def text(data: dict, name: str, *, required: bool = False, max_length: int = 4000,
         allow_blank: bool = True) -> str | None:
    if name not in data or data[name] is None:
        if required:
            raise BadRequest("field %r is required" % name, code="invalid_field")
        return None
    value = data[name]
    if not isinstance(value, str):
        raise BadRequest("field %r must be a string" % name, code="invalid_field")
    if "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise BadRequest("field %r contains characters that are not valid text" % name,
                         code="invalid_field")
    value = value.strip()
    if not value and not allow_blank:
        raise BadRequest("field %r must not be blank" % name, code="invalid_field")
    if len(value) > max_length:
        raise BadRequest("field %r is longer than %d characters" % (name, max_length),
                         code="invalid_field")
    return value


def integer(data: dict, name: str, *, minimum: int, maximum: int) -> int | None:
    if name not in data or data[name] is None:
        return None
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("field %r must be a whole number" % name, code="invalid_field")
    if not minimum <= value <= maximum:
        raise BadRequest("field %r must be between %d and %d" % (name, minimum, maximum),
                         code="invalid_field")
    return value


def string_list(data: dict, name: str, *, max_items: int = 50,
                max_length: int = 253) -> list[str] | None:
    if name not in data or data[name] is None:
        return None
    value: Any = data[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("field %r must be a list of strings" % name, code="invalid_field")
    if len(value) > max_items:
        raise BadRequest("field %r has more than %d items" % (name, max_items),
                         code="invalid_field")
    cleaned = [v.strip() for v in value if v.strip()]
    if any(len(v) > max_length for v in cleaned):
        raise BadRequest("field %r has an item longer than %d characters" % (name, max_length),
                         code="invalid_field")
    return cleaned


def flag(value: str | None, name: str) -> bool:
    """A ``?name=`` query flag: 1, true or yes; 0, false, no or absent; else 400."""
    if value in (None, "", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise BadRequest("%s must be true or false (1 or 0)" % name, code="invalid_field")


def limit(value: str | int | None, *, default: int = 50, maximum: int = 500) -> int:
    """A ``?limit=`` query value: a whole number from 1 to ``maximum``."""
    try:
        number = default if value in (None, "") else int(value)
    except ValueError:
        raise BadRequest("limit must be a whole number", code="invalid_field") from None
    if not 1 <= number <= maximum:
        raise BadRequest("limit must be between 1 and %d" % maximum, code="invalid_field")
    return number


def row_id(value: str, what: str) -> int:
    """The integer row id in a URL's ``value``; NotFound (404) for anything that
    names no row: not a plain decimal number, or outside 1..`MAX_ROW_ID` (a larger
    one overflowed the database driver into a 500)."""
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ROW_ID:
        raise NotFound("no %s with id %r" % (what, value))
    return int(value)
