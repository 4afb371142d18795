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
from botlite.timeutil import utcnow

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


RECOVERY_GRACE = 60  # seconds a new source may wait for its run to be queued
REUPLOAD_GRACE = 5  # ...when the same file is uploaded again (two uploads at once)


def run_lost(runner, source, grace: float = 0.0) -> bool:
    """Whether the source waits for a run that was never queued: a crash between
    storing the source and queueing its run (two databases, so no one transaction
    holds both) leaves it pending with no task, or naming a task the queue never got.
    A source changed in the last ``grace`` seconds may be between those two writes
    right now (another request's), so it is not lost yet."""
    if source.status not in ("pending", "processing"):
        return False
    if grace and source.updated_at is not None and \
            (utcnow() - source.updated_at).total_seconds() < grace:
        return False
    return source.task_id is None or runner.storage.get_state(source.task_id) is None


def recover_lost_runs(runner, grace: float = RECOVERY_GRACE) -> list[str]:
    """Queue the run of every source that `run_lost` says waits for nothing and
    was last changed over ``grace`` seconds ago (younger ones may be between their
    two writes right now). Returns their ids."""
    import datetime

    from botlite.models import Source
    from botlite.timeutil import utcnow

    cutoff = utcnow() - datetime.timedelta(seconds=grace)
    queued = []
    for source in Source.select().where(Source.status.in_(("pending", "processing")) &
                                        (Source.updated_at <= cutoff)):
        if run_lost(runner, source):
            logger.warning("source %s waited for a run that was never queued: queueing it",
                           source.id)
            queue_source(runner, source)
            queued.append(source.id)
    return queued


@task(queue="high_priority", dedup=True, dedup_ttl=30)
def recover_sources(grace_seconds: int = RECOVERY_GRACE) -> dict:
    """Queue again the processing of sources whose run was never queued (a crash
    between storing an upload and queueing it); the schedule runs it every minute."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int) or \
            not 0 <= grace_seconds <= 86400:
        raise PermanentError("grace_seconds must be a whole number from 0 to 86400")
    return {"queued": recover_lost_runs(current_runner(), grace_seconds)}


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
