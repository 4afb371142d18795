"""Feeding a bot: the use cases behind the sources API and `python -m botlite ingest`."""
from __future__ import annotations

from typing import BinaryIO

from botlite import validate
from botlite.chatbots import get_bot
from botlite.errors import Conflict
from botlite.knowledge import sources
from botlite.models import Source
from botlite.tasks.ingest import queue_source

DEFAULT_MAX_PAGES, DEFAULT_MAX_DEPTH = 20, 2


def add_file(app, bot_id: str, filename: str | None, stream: BinaryIO) -> tuple[Source, bool]:
    """Store an upload and queue its processing. Returns (source, duplicate)."""
    bot = get_bot(bot_id)
    added = sources.add_file(app.settings.data_dir, bot, filename, stream,
                             app.settings.max_upload_mb * 1024 * 1024)
    if not added.duplicate:
        queue_source(app.runner, added.source)
    return Source.get_by_id(added.source.id), added.duplicate


def add_website(app, bot_id: str, data: dict) -> tuple[Source, bool]:
    validate.reject_unknown(data, {"url", "max_pages", "max_depth", "refresh_hours"})
    url = validate.text(data, "url", required=True, max_length=2000, allow_blank=False)
    max_pages = validate.integer(data, "max_pages", minimum=1,
                                 maximum=sources.MAX_PAGES_LIMIT) or DEFAULT_MAX_PAGES
    max_depth = validate.integer(data, "max_depth", minimum=0,
                                 maximum=sources.MAX_DEPTH_LIMIT)
    refresh = validate.integer(data, "refresh_hours", minimum=1, maximum=24 * 365)
    bot = get_bot(bot_id)
    added = sources.add_website(bot, url, max_pages=max_pages,
                                max_depth=DEFAULT_MAX_DEPTH if max_depth is None else max_depth,
                                refresh_hours=refresh,
                                allow_private=app.settings.allow_private_urls)
    if not added.duplicate:
        queue_source(app.runner, added.source)
    return Source.get_by_id(added.source.id), added.duplicate


def reprocess(app, source_id: str) -> Source:
    """Process a source again (a failed one, or a website to re-sync now)."""
    source = sources.get_source(source_id)
    if source.status in ("pending", "processing") and task_active(app, source):
        raise Conflict("source %s is already %s" % (source_id, source.status))
    queue_source(app.runner, source)
    return Source.get_by_id(source_id)


def task_active(app, source: Source) -> bool:
    """Whether the source's task is still queued or running (it may have been
    revoked, purged or lost, which would leave the source pending for ever)."""
    state = app.runner.storage.get_state(source.task_id) if source.task_id else None
    return state is not None and state["status"] not in ("SUCCESS", "FAILURE", "REVOKED")


def accepted(source: Source, duplicate: bool) -> tuple[int, dict]:
    """The API answer: 202 when queued, 200 with "duplicate" when it was known."""
    body = {"source_id": source.id, "task_id": source.task_id,
            "status": source.status if duplicate else "processing", "duplicate": duplicate,
            "source": source.to_dict()}
    return (200 if duplicate else 202), body
