"""Turning sources into searchable chunks."""
from __future__ import annotations

import logging
import uuid


from botlite.knowledge import sources
from botlite.knowledge.crawl import CrawlError
from botlite.knowledge.extract import ExtractionError
from botlite.knowledge.replace import Superseded
from botlite.runner import (PermanentError, current_runner, current_task_id, report_progress,
                            retries_left, stop_requested, task)
from botlite.tasks.context import context

logger = logging.getLogger(__name__)

# The seed's limits: 25 min soft, 30 min hard (the attempt runs in a child process).
SOFT_LIMIT, HARD_LIMIT = 25 * 60, 30 * 60


class Stopped(PermanentError):
    """The task was revoked while it ran."""


def _progress(source_id):
    def report(done, total):
        if stop_requested():
            sources.mark_failed(source_id, "stopped on request")
            raise Stopped("stopped on request")
        report_progress(done, total)
        sources.record_progress(source_id, done, total)
    return report


def _run_source(source_id: str, work) -> dict:
    """``work(progress)`` for a source's run, and how the run ends when it raises:
    superseded or deleted meanwhile is nothing failed; the file itself (or a site
    refusing for good) fails the source without retries; anything else may pass,
    so the source says why while its task is retried (failed after the last try)."""
    def failed_for_now(reason):
        sources.failed_for_now(source_id, current_task_id(), reason,
                               retrying=retries_left() > 0)

    try:
        return work(_progress(source_id))
    except Superseded:
        return {"superseded": True}
    except sources.SourceGone:  # deleted meanwhile: nothing left to do, nothing failed
        return {"source_deleted": True}
    except ExtractionError as exc:
        sources.mark_failed(source_id, exc.reason)
        raise PermanentError(exc.reason) from None
    except CrawlError as exc:
        if exc.permanent:
            sources.mark_failed(source_id, str(exc))
            raise PermanentError(str(exc)) from None
        failed_for_now(str(exc))
        raise  # transient: retried with backoff
    except PermanentError:
        raise
    except Exception as exc:
        failed_for_now("%s: %s" % (type(exc).__name__, exc))
        raise


@task(queue="documents", retries=3, retry_delay=60, soft_time_limit=SOFT_LIMIT,
      hard_time_limit=HARD_LIMIT)
def process_document(source_id: str) -> dict:
    """Extract, chunk and index an uploaded file (replacing its chunks)."""
    return _run_source(source_id, lambda progress: sources.process_document(
        context.data_dir, source_id, progress))


@task(queue="websites", retries=3, retry_delay=60, soft_time_limit=SOFT_LIMIT,
      hard_time_limit=HARD_LIMIT)
def scrape_website(source_id: str) -> dict:
    """Crawl a website source and index its pages (only changed pages are re-chunked)."""
    return _run_source(source_id, lambda progress: sources.scrape_website(
        source_id, context.allow_private_urls, progress))


@task(queue="low_priority", dedup=True, dedup_ttl=300)
def resync_websites() -> dict:
    """Queue a re-crawl of every website source whose refresh interval passed."""
    runner = current_runner()
    queued = []
    for source in sources.stale_websites():
        queue_source(runner, source)
        queued.append(source.id)
    return {"queued": queued}


def queue_source(runner, source) -> str:
    """Queue a source's processing, ending with a "ready" or "failed" notification.

    No deduplication is needed: a run replaces the source's chunks as a whole
    (knowledge/replace.py), and a newer run supersedes an older one still going.
    """
    name = "process_document" if source.kind == "file" else "scrape_website"
    task_id = uuid.uuid4().hex
    sources.mark_queued(source, task_id)
    runner.enqueue(name, [source.id], task_id=task_id,
                   then=("notify_source_ready", [source.id, task_id]),
                   on_error=("notify_source_failed", [source.id, task_id]))
    return task_id
