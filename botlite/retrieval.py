"""Hybrid retrieval as the operator sees it: which retrieval answers, how far
each bot's vectors are, and rebuilding them (CLI `botlite vectors`, API
``/api/vectors``)."""
from __future__ import annotations

from botlite import validate
from botlite.chatbots import get_bot
from botlite.errors import Conflict
from botlite.knowledge import embedding, vectors
from botlite.models import Chatbot


def status() -> dict:
    """The retrieval in use and, with semantic search on, each bot's live chunks
    and how many have their vector."""
    state = embedding.status()
    embedder = embedding.current() if state["semantic"] == "on" else None
    state = embedding.status()  # loading it may have turned it off
    view = {"retrieval": state["retrieval"], "semantic": state["semantic"],
            "detail": state["detail"]}
    if embedder is not None:
        bots: dict[str, dict] = {}
        for (bot_id,) in Chatbot.select(Chatbot.id).order_by(Chatbot.id).tuples():
            progress = vectors.progress(embedder.model_id, bot_id).values()
            chunks = sum(p.chunks for p in progress)
            done = sum(p.vectors for p in progress)
            bots[bot_id] = {"chunks": chunks, "vectors": done, "done": done >= chunks}
        view["bots"] = bots
        view["pending"] = vectors.pending(embedder.model_id)
    return view


def rebuild(app, data: dict | None) -> dict:
    """Forget the vectors (of ``data["chatbot_id"]``, or of every bot) and queue
    `embed_chunks` to compute them again with the current model; BM25 answers
    until they are back. 409 when semantic search is off."""
    data = data or {}
    validate.reject_unknown(data, {"chatbot_id"})
    bot_id = data.get("chatbot_id")
    if bot_id is not None:
        bot_id = get_bot(validate.text(data, "chatbot_id")).id
    embedder = embedding.current()
    if embedder is None:
        raise Conflict("semantic search is off, there are no vectors to rebuild (%s)"
                       % embedding.status()["detail"], code="semantic_off")
    deleted = vectors.rebuild(embedder, bot_id)
    task_id = app.runner.enqueue("embed_chunks", [bot_id] if bot_id else [])
    return {"deleted": deleted, "chatbot_id": bot_id, "task_id": task_id}
