"""Feeding a bot: the use cases behind the sources API and `python -m botlite ingest`."""
from __future__ import annotations

from typing import BinaryIO

from botlite import validate
from botlite.chatbots import get_bot
from botlite.errors import Conflict
from botlite.knowledge import embedding, sources, vectors
from botlite.models import Source
from botlite.tasks.ingest import REUPLOAD_GRACE, queue_source, run_lost

DEFAULT_MAX_PAGES, DEFAULT_MAX_DEPTH = 20, 2


def add_file(app, bot_id: str, filename: str | None, stream: BinaryIO) -> tuple[Source, bool]:
    """Store an upload and queue its processing. Returns (source, duplicate)."""
    bot = get_bot(bot_id)
    added = sources.add_file(app.settings.data_dir, bot, filename, stream,
                             app.settings.max_upload_mb * 1024 * 1024)
    return _queue_unless_known(app, added)


def _queue_unless_known(app, added) -> tuple[Source, bool]:
    """Queue a new source's run; a known one is a duplicate, unless its run was
    never queued (a crash between the two writes) and it is over `REUPLOAD_GRACE`
    old (younger, another upload of the same file may be queueing it right now):
    then it is queued now."""
    if not added.duplicate or run_lost(app.runner, added.source, REUPLOAD_GRACE):
        queue_source(app.runner, added.source)
        return Source.get_by_id(added.source.id), False
    return Source.get_by_id(added.source.id), True


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
    return _queue_unless_known(app, added)


def reprocess(app, source_id: str) -> Source:
    """Process a source again (a failed one, or a website to re-sync now)."""
    source = sources.get_source(source_id)
    if source.status in ("pending", "processing") and task_active(app, source):
        raise Conflict("source %s is already %s" % (source_id, source.status))
    queue_source(app.runner, source)
    return Source.get_by_id(source_id)


def delete_source(app, source_id: str) -> Source:
    """Delete a source (see `sources.delete_source`); its run still queued or
    waiting to be tried again is revoked, so it does not run only to find it gone."""
    deleted = sources.delete_source(app.settings.data_dir, source_id)
    revoke_waiting_runs(app, [deleted.task_id])
    return deleted


def delete_bot(app, bot_id: str):
    """Delete a bot (see `chatbots.delete_bot`), revoking its sources' waiting runs."""
    from botlite.chatbots import delete_bot as delete

    task_ids = [s.task_id for s in Source.select(Source.task_id).where(Source.chatbot == bot_id)]
    bot = delete(bot_id, app.settings.data_dir)
    revoke_waiting_runs(app, task_ids)
    return bot


def revoke_waiting_runs(app, task_ids) -> None:
    """Revoke those of ``task_ids`` that are queued or waiting for a retry (a
    running one finds its source gone and ends without a dead letter)."""
    from botlite.runner import InvalidTransition, TaskNotFound

    for task_id in filter(None, task_ids):
        state = app.runner.storage.get_state(task_id)
        if state is not None and state["status"] in ("PENDING", "RETRY"):
            try:
                app.runner.revoke(task_id)
            except (InvalidTransition, TaskNotFound):
                pass  # it started or ended meanwhile


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


def vector_progress(bot_ids) -> dict | None:
    """{source id: `vectors.Progress`} of the bots' sources (a source missing
    has no live chunks); None when semantic search is off."""
    embedder = embedding.current()
    if embedder is None:
        return None
    progress: dict = {}
    for bot_id in set(bot_ids):
        progress.update(vectors.progress(embedder.model_id, bot_id))
    return progress


def source_views(sources_: list[Source]) -> list[dict]:
    """The sources as the API shows them, each with its vector progress under
    "vectors" ({chunks, vectors, done}; null when semantic search is off)."""
    progress = vector_progress(s.chatbot_id for s in sources_)
    empty = vectors.Progress(0, 0)
    return [dict(s.to_dict(), vectors=progress.get(s.id, empty).to_dict()
                 if progress is not None else None) for s in sources_]
