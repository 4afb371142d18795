"""Embedding chunks for hybrid retrieval (knowledge/vectors.py)."""
from __future__ import annotations

import threading

from botlite.knowledge import embedding, vectors
from botlite.runner import PermanentError, report_progress, stop_requested, task


class Stopped(PermanentError):
    """The task was revoked while it ran (the vectors written so far are kept)."""


_building = threading.Lock()


@task(queue="low_priority", retries=3, retry_delay=60)
def embed_chunks(chatbot_id: str | None = None) -> dict:
    """Embed the live chunks (of one bot, or of all) that have no vector yet, 8
    at a time; BM25 answers meanwhile. Queued after each ingestion run and every
    minute by the schedule (a crash mid-way loses nothing: the next run goes on).

    One build at a time per process: a run that finds one going ends at once
    (the build goes on until its pass over the chunks ends; a chunk it passed
    before it lost its vector, by a rebuild, waits for the next minute's run).
    Not deduplicated in the queue: a finished run must not keep the next one
    from being queued. Builders in several processes may embed the same chunks
    (each writes the same vector): wasted work, no harm."""
    if chatbot_id is not None and (not isinstance(chatbot_id, str) or not chatbot_id):
        raise PermanentError("chatbot_id must be a bot id or null")
    embedder = embedding.current()
    if embedder is None:
        return {"embedded": 0, "semantic": embedding.status()["semantic"]}
    if not _building.acquire(blocking=False):
        return {"embedded": 0, "already_running": True}
    try:
        total = vectors.pending(embedder.model_id)

        def step(done: int) -> None:
            if stop_requested():
                raise Stopped("stopped on request after %d vectors" % done)
            report_progress(done, max(total, done))

        return {"embedded": vectors.build(embedder, chatbot_id, on_batch=step),
                "model": embedder.model_id}
    finally:
        _building.release()
