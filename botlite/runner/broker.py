"""A Huey instance from a broker URL, on Huey's own storages."""
from __future__ import annotations

from urllib.parse import urlsplit

from huey import Huey
from huey.storage import PostgresStorage, PriorityRedisStorage, SqliteStorage

from botlite.runner.serializer import JSONSerializer

SQLITE_PREFIX = "sqlite:///"


def storage_options(url: str) -> tuple[type, dict]:
    """The Huey storage class and its keyword arguments for ``url``."""
    scheme = urlsplit(url).scheme
    if url.startswith(SQLITE_PREFIX):
        return SqliteStorage, {"filename": url[len(SQLITE_PREFIX):], "timeout": 10}
    if scheme in ("redis", "rediss"):
        return PriorityRedisStorage, {"url": url}
    if scheme in ("postgresql", "postgres"):
        return PostgresStorage, {"dsn": url}
    raise ValueError("unsupported broker URL %r (use sqlite:///, redis:// or postgresql://)" % url)


def build_huey(url: str, name: str = "botlite") -> Huey:
    """Huey on the storage named by ``url``, with JSON payloads and UTC times."""
    storage_class, options = storage_options(url)
    return Huey(name, storage_class=storage_class, serializer=JSONSerializer(),
                utc=True, **options)
