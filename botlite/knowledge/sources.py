"""Adding, processing and removing a bot's knowledge sources.

The web API and the CLI call ``add_file`` / ``add_website``; the tasks call
``process_document`` / ``scrape_website``. A run writes a source's new chunks
beside the old ones and swaps them in one short transaction (`replace`), so any
re-run (retry, crash recovery, duplicate enqueue, re-sync) leaves exactly one
set of chunks, and search never sees a half-written one.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Callable
from urllib.parse import urlsplit, urlunsplit

import peewee

from botlite.db import write_transaction
from botlite.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from botlite.knowledge import index
from botlite.knowledge.replace import Replacement, SourceGone, hide_and_delete
from botlite.knowledge.chunk import iter_chunks
from botlite.knowledge.extract import (HEAD_BYTES, SUPPORTED, ExtractionError, UnsupportedType,
                                       detect_kind, extract_file)
from botlite.models import Chatbot, Page, Source
from botlite.timeutil import utcnow

logger = logging.getLogger(__name__)

UPLOADS = "uploads"
MAX_PAGES_LIMIT = 500
MAX_DEPTH_LIMIT = 10
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
Progress = Callable[[int, int], None]
PROGRESS_SECONDS = 0.5
"""While writing chunks, progress is reported (and a stop request noticed) this often."""


@dataclass
class Added:
    source: Source
    duplicate: bool


def get_source(source_id: str) -> Source:
    source = Source.get_or_none(Source.id == source_id)
    if source is None:
        raise NotFound("no source with id %r" % source_id)
    return source


def list_sources(bot_id: str) -> list[Source]:
    return list(Source.select().where(Source.chatbot == bot_id)
                .order_by(Source.created_at.desc(), Source.id))


def safe_filename(name: str | None, kind: str) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    base = _SAFE_NAME.sub("_", base).strip(" .")[:120]
    return base or "upload.%s" % kind


def _new_id() -> str:
    return uuid.uuid4().hex


# -- files -------------------------------------------------------------------------

def add_file(data_dir: str, bot: Chatbot, filename: str | None, stream: BinaryIO,
             max_bytes: int) -> Added:
    """Store an upload and create its source; the caller queues processing.

    Identical content already given to this bot returns that source
    (``duplicate``), unless it had failed: then it is processed again. Whatever
    fails (a full disk too) leaves neither the upload's temp file nor a source
    without its file behind.
    """
    if filename and any(ord(c) < 32 or ord(c) == 127 for c in filename):
        # A NUL reached os.path and the database as a 500; no real file is named so.
        raise BadRequest("the file name contains control characters (such as NUL); "
                         "rename the file", code="invalid_filename")
    uploads = os.path.join(data_dir, UPLOADS)
    os.makedirs(uploads, exist_ok=True)
    digest, size, head = hashlib.sha256(), 0, b""
    temp = tempfile.NamedTemporaryFile(dir=uploads, prefix=".incoming-", delete=False)
    try:
        with temp:  # closing writes the last buffered block: a full disk can fail here
            while True:
                block = stream.read(1024 * 1024)
                if not block:
                    break
                size += len(block)
                if size > max_bytes:
                    raise PayloadTooLarge("the file is larger than the %d MB upload limit"
                                          % (max_bytes // (1024 * 1024)))
                if len(head) < HEAD_BYTES:
                    head += block[:HEAD_BYTES - len(head)]
                digest.update(block)
                temp.write(block)
        if size == 0:
            raise BadRequest("the file is empty", code="invalid_file")
        try:
            kind = detect_kind(filename or "", head)
        except UnsupportedType as exc:
            raise UnsupportedMediaType("%s Supported: %s." % (
                exc.reason, ", ".join(sorted(SUPPORTED)))) from None
        content_hash = digest.hexdigest()
        existing = (Source.select().where((Source.chatbot == bot.id) &
                                          (Source.content_hash == content_hash)).first())
    except BaseException:
        os.unlink(temp.name)
        raise
    if existing is not None:
        os.unlink(temp.name)
        return Added(existing, duplicate=existing.status != "failed")

    source_id = _new_id()
    name = safe_filename(filename, kind)
    relative = os.path.join(UPLOADS, source_id, name)
    folder = os.path.join(data_dir, UPLOADS, source_id)
    try:
        os.makedirs(folder, exist_ok=True)
        os.replace(temp.name, os.path.join(data_dir, relative))
        source = Source.create(id=source_id, chatbot=bot.id, kind="file", title=name,
                               filename=name, stored_path=relative, file_kind=kind,
                               size_bytes=size, content_hash=content_hash)
    except peewee.IntegrityError:  # the same content arrived twice at once
        shutil.rmtree(folder, ignore_errors=True)
        existing = (Source.select().where((Source.chatbot == bot.id) &
                                          (Source.content_hash == content_hash)).get())
        return Added(existing, duplicate=True)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.exists(temp.name):
            os.unlink(temp.name)
        raise
    return Added(source, duplicate=False)


def process_document(data_dir: str, source_id: str, progress: Progress) -> dict:
    """Extract, chunk and index a file source. ExtractionError: the file is the problem."""
    source = _start(source_id, total=3)
    path = os.path.join(data_dir, source.stored_path)
    if not os.path.exists(path):
        raise ExtractionError("The uploaded file is missing from the data directory.")
    document = extract_file(path, source.file_kind)
    progress(1, 3)
    title = document.title or source.filename
    # Chunks are cut while the indexer leaves the write lock to others between batches.
    replacement = Replacement(source_id, on_batch=_every(PROGRESS_SECONDS, progress, 2, 3))
    count = replacement.write(index.iter_chunk_rows(
        source, iter_chunks(document), title=title, generation=replacement.generation))
    if not count:
        raise ExtractionError("The file contains no text.")
    progress(2, 3)
    replacement.flip(title=title, page_count=0, finished=_ready(done=3, total=3))
    progress(3, 3)
    return {"chunks": count, "title": title}


def _every(seconds: float, function: Callable, *args) -> Callable[[], None]:
    """``function(*args)`` when called, at most once per ``seconds``: progress is
    written to the database, and stop requests are checked, by the callback."""
    last = time.monotonic()

    def call() -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            last = time.monotonic()
            function(*args)
    return call


# -- websites ------------------------------------------------------------------------

def normalise_url(url: str) -> str:
    from botlite.knowledge.crawl import canonical_url
    try:
        parts = urlsplit(url.strip())
        parts.port  # raises ValueError for a bad port
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
        if "@" in parts.netloc:  # canonical_url would drop them, and check_url not see them
            raise BadRequest("field 'url': URLs with a user name or password are refused",
                             code="unsafe_url")
        return canonical_url(urlunsplit((parts.scheme, parts.netloc, parts.path or "/",
                                         parts.query, "")))
    except ValueError:
        raise BadRequest("field 'url' must be an http:// or https:// URL", code="invalid_field") \
            from None


def add_website(bot: Chatbot, url: str, *, max_pages: int, max_depth: int,
                refresh_hours: int | None, allow_private: bool) -> Added:
    from botlite.knowledge import crawl as crawling

    url = normalise_url(url)
    crawling.check_url_to_save(url, allow_private, "can't crawl %s" % url)
    existing = Source.select().where((Source.chatbot == bot.id) & (Source.url == url)).first()
    if existing is not None:
        return Added(existing, duplicate=existing.status != "failed")
    try:
        source = Source.create(id=_new_id(), chatbot=bot.id, kind="website", title=url,
                               url=url, max_pages=max_pages, max_depth=max_depth,
                               refresh_hours=refresh_hours)
    except peewee.IntegrityError:  # the same URL arrived twice at once
        existing = Source.select().where((Source.chatbot == bot.id) & (Source.url == url)).get()
        return Added(existing, duplicate=True)
    return Added(source, duplicate=False)


def scrape_website(source_id: str, allow_private: bool, progress: Progress,
                   crawl_options: dict | None = None) -> dict:
    """Crawl a website source and index its pages. Pages whose text did not
    change keep their chunks (carried over, not re-chunked); changed and new pages
    are re-chunked; pages gone from the site are dropped. Search sees the old set
    or the new one, never a mix (see `replace`)."""
    from botlite.knowledge import crawl as crawling

    source = _start(source_id, total=None)
    result = crawling.crawl(
        source.url, max_pages=source.max_pages or 20,
        max_depth=2 if source.max_depth is None else source.max_depth,
        allow_private=allow_private, on_progress=progress, **(crawl_options or {}))
    if not result.pages:
        reasons = "; ".join("%s: %s" % (s.url, s.reason) for s in result.skipped[:3])
        raise ExtractionError("No page with text could be read%s." % (
            " (" + reasons + ")" if reasons else ""))
    known = {page.url: page for page in Page.select().where(Page.source == source.id)}
    seen = {crawled.url for crawled in result.pages}
    gone = [page.id for url, page in known.items() if url not in seen]
    changed = [crawled for crawled in result.pages if crawled.url not in known
               or known[crawled.url].content_hash != crawled.content_hash]
    first = result.pages[0]
    if changed or gone:
        _replace_pages(source, result.pages, known, changed)
        if gone:
            with write_transaction():
                Page.delete().where(Page.id.in_(gone)).execute()
    _finish(source_id, done=len(result.pages), total=len(result.pages), synced=True,
            title=first.title or source.url, page_count=len(result.pages))
    count = Source.get_by_id(source_id).chunk_count
    return {"chunks": count, "pages": len(result.pages), "changed_pages": len(changed),
            "removed_pages": len(gone), "skipped": [
                {"url": s.url, "reason": s.reason} for s in result.skipped[:50]]}


def _replace_pages(source: Source, pages: list, known: dict, changed: list) -> None:
    """A new set of chunks: unchanged pages' chunks carried over, the others'
    chunked anew. A page's new title and content hash are stored at the flip, so
    a crash before it leaves the page to be re-chunked next time."""
    replacement = Replacement(source.id)
    changed_urls = {crawled.url for crawled in changed}
    replacement.copy([known[crawled.url].id for crawled in pages
                      if crawled.url not in changed_urls])
    new_pages = [crawled for crawled in changed if crawled.url not in known]
    if new_pages:
        with write_transaction():
            for crawled in new_pages:
                known[crawled.url] = Page.create(
                    source=source.id, url=crawled.url, title=crawled.title,
                    description=crawled.description, content_hash="")
    page_ids = {}
    for crawled in changed:
        page = known[crawled.url]
        page_ids[crawled.url] = page.id
        replacement.write(index.iter_chunk_rows(
            source, iter_chunks(crawled.document), page=page, url=crawled.url,
            title=crawled.title or crawled.url, generation=replacement.generation))

    def store_pages(_source):
        for crawled in changed:
            Page.update(title=crawled.title, description=crawled.description,
                        content_hash=crawled.content_hash, fetched_at=utcnow()
                        ).where(Page.id == page_ids[crawled.url]).execute()

    replacement.flip(before=store_pages)


# -- shared steps ----------------------------------------------------------------------

def _start(source_id: str, total: int | None) -> Source:
    source = Source.get_or_none(Source.id == source_id)
    if source is None:
        raise SourceGone(source_id)
    Source.update(status="processing", error=None, progress_done=0, progress_total=total,
                  updated_at=utcnow()).where(Source.id == source_id).execute()
    return source


def record_progress(source_id: str, done: int, total: int | None) -> None:
    Source.update(progress_done=done, progress_total=total,
                  updated_at=utcnow()).where(Source.id == source_id).execute()


def _ready(*, done: int, total: int, synced: bool = False, **fields) -> dict:
    """The fields of a source whose run is over."""
    fields.update(status="ready", error=None, progress_done=done, progress_total=total,
                  updated_at=utcnow())
    if synced:
        fields["last_synced_at"] = utcnow()
    return fields


def _finish(source_id: str, **fields) -> None:
    Source.update(**_ready(**fields)).where(Source.id == source_id).execute()


def mark_failed(source_id: str, reason: str, task_id: str | None = None) -> None:
    """The source failed; with ``task_id``, only while that run owns it (a newer
    run may have superseded it)."""
    where = Source.id == source_id
    if task_id is not None:
        where &= Source.task_id == task_id
    Source.update(status="failed", error=reason, updated_at=utcnow()).where(where).execute()


def failed_for_now(source_id: str, task_id: str | None, reason: str,
                   retrying: bool) -> None:
    """A run (task ``task_id``) failed with an error that may pass: while it
    will be tried again, the source stays processing and says why (the next
    attempt clears it); after its last attempt the source is failed. Only the
    run that owns the source writes."""
    if not retrying:
        mark_failed(source_id, reason, task_id=task_id)
        return
    Source.update(error="%s (will try again)" % reason, updated_at=utcnow()).where(
        (Source.id == source_id) & (Source.task_id == task_id) &
        (Source.status == "processing")).execute()


def mark_queued(source: Source, task_id: str) -> None:
    Source.update(task_id=task_id, status="pending", error=None, updated_at=utcnow()).where(
        Source.id == source.id).execute()


def delete_source(data_dir: str, source_id: str) -> Source:
    """Remove a source, its chunks (and their index entries) and its file."""
    source = get_source(source_id)
    try:
        hide_and_delete(source.id)
    except SourceGone:
        return source
    with write_transaction():
        Page.delete().where(Page.source == source.id).execute()
        source.delete_instance()
    if source.stored_path:
        shutil.rmtree(os.path.join(data_dir, UPLOADS, source.id), ignore_errors=True)
    return source


def stale_websites() -> list[Source]:
    """Website sources whose refresh interval has passed."""
    import datetime
    now = utcnow()
    due = []
    for source in Source.select().where((Source.kind == "website") &
                                        Source.refresh_hours.is_null(False) &
                                        (Source.status == "ready")):
        last = source.last_synced_at or source.created_at
        if now - last >= datetime.timedelta(hours=source.refresh_hours):
            due.append(source)
    return due
