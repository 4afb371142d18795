"""Small helpers for text shown to people."""
from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """'1 chunk', '2 chunks', '0 pages' (nouns that take an -s)."""
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")
