"""Replacing a source's chunks (knowledge/replace.py) on a real SQLite file: a re-run
never doubles the chunks, a crash leaves the old ones searchable, and a large
source being indexed never locks out other writers nor shows search a mix."""
import contextlib
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from botlite.knowledge import index, replace, sources
from botlite.knowledge.chunk import Chunk as TextChunk
from botlite.models import Chunk, Source

WORDS = ("report quarter region delivery invoice payment garden season harvest water "
         "schedule shipment supplier contract budget network server backup storage "
         "morning evening annual weekly office employee client partner market").split()


def document(marker, chars, seed):
    """Plain text of about ``chars`` characters; every sentence names ``marker``."""
    rng = random.Random(seed)
    paragraphs, size = [], 0
    while size < chars:
        sentences = []
        for _ in range(rng.randint(3, 6)):
            words = rng.choices(WORDS, k=rng.randint(8, 16))
            words.insert(rng.randint(1, len(words) - 1), marker)
            sentences.append(" ".join(words).capitalize() + ".")
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs) + "\n"


def file_source(data_dir, text):
    source_id = uuid.uuid4().hex
    folder = os.path.join(data_dir, sources.UPLOADS, source_id)
    os.makedirs(folder)
    with open(os.path.join(folder, "doc.txt"), "w", encoding="utf-8") as handle:
        handle.write(text)
    Source.create(id=source_id, chatbot="default", kind="file", title="doc.txt",
                  filename="doc.txt", stored_path=os.path.join(sources.UPLOADS, source_id,
                                                               "doc.txt"),
                  file_kind="txt", size_bytes=len(text))
    return source_id


def rewrite(data_dir, source_id, text):
    """The source's file now says something else (as if re-uploaded in place)."""
    source = Source.get_by_id(source_id)
    with open(os.path.join(data_dir, source.stored_path), "w", encoding="utf-8") as handle:
        handle.write(text)


def process(data_dir, source_id):
    return sources.process_document(data_dir, source_id, lambda done, total: None)


def counts(app, source_id):
    """(chunk rows, rows search can see, index entries, the source's chunk_count)."""
    db = app.database
    rows = Chunk.select().where(Chunk.source == source_id).count()
    visible = db.execute_sql(
        "select count(*) from chunk c join source s on s.id = c.source_id "
        "where c.source_id = ? and c.generation = s.generation", (source_id,)).fetchone()[0]
    indexed = db.execute_sql(
        "select count(*) from chunk_index where chunk_index match 'bot : \"%s\"'"
        % index.bot_token("default")).fetchone()[0]
    return rows, visible, indexed, Source.get_by_id(source_id).chunk_count


def markers(hits):
    return {word for hit in hits for word in ("zebra", "yak") if word in hit.text}


@pytest.fixture
def db(app):
    with app.database.connection_context():
        yield app


def test_a_rerun_replaces_the_chunks_and_never_doubles_them(db, data_dir):
    source_id = file_source(data_dir, document("zebra", 60_000, 1))
    first = process(data_dir, source_id)["chunks"]
    assert first > 10
    assert counts(db, source_id) == (first, first, first, first)
    for _ in range(2):  # the same content again: the same count
        assert process(data_dir, source_id)["chunks"] == first
        assert counts(db, source_id) == (first, first, first, first)
    rewrite(data_dir, source_id, document("yak", 30_000, 2))
    second = process(data_dir, source_id)["chunks"]
    assert second < first and counts(db, source_id) == (second, second, second, second)
    assert markers(index.search("default", "zebra yak", k=10)) == {"yak"}
    source = Source.get_by_id(source_id)
    assert source.status == "ready" and source.staging is None


def test_a_newer_run_supersedes_an_older_one_that_is_still_writing(db, data_dir):
    source_id = file_source(data_dir, document("zebra", 20_000, 3))
    process(data_dir, source_id)
    older = replace.Replacement(source_id)
    newer = replace.Replacement(source_id)
    assert newer.generation > older.generation
    source = Source.get_by_id(source_id)
    rows = index.chunk_rows(source, [TextChunk("yak text", None, None, 0)] *
                            replace.BATCH_ROWS, generation=older.generation)
    with pytest.raises(replace.Superseded):  # its next transaction notices
        older.write(rows)
    with pytest.raises(replace.Superseded):
        older.flip()
    newer.flip()  # an empty new set: the source now shows nothing
    assert counts(db, source_id)[:2] == (0, 0)


CRASHING_RUN = textwrap.dedent("""
    import os, sys
    from botlite.app import Botlite
    from botlite.knowledge import sources
    from botlite.settings import load_settings

    data_dir, source_id = sys.argv[1], sys.argv[2]
    app = Botlite.open(load_settings({"data_dir": data_dir, "semantic": "off"}, environ={}))
    sources.PROGRESS_SECONDS = 0  # report after every batch written
    batches = []

    def progress(done, total):
        if done == 2:
            batches.append(done)
            if len(batches) == 2:
                os._exit(17)  # a crash: no rollback, no clean-up, nothing flushed

    with app.database.connection_context():
        sources.process_document(data_dir, source_id, progress)
    os._exit(0)
""")


def test_a_crash_while_indexing_leaves_the_old_chunks_and_a_rerun_converges(db, data_dir):
    source_id = file_source(data_dir, document("zebra", 60_000, 4))
    old = process(data_dir, source_id)["chunks"]
    rewrite(data_dir, source_id, document("yak", 1_000_000, 5))
    run = subprocess.run([sys.executable, "-c", CRASHING_RUN, data_dir, source_id],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 17, run.stderr
    rows, visible, _, count = counts(db, source_id)
    assert rows > old  # two batches of the new set were written...
    assert visible == count == old  # ...but search and the count still show the old set
    assert markers(index.search("default", "zebra yak", k=10)) == {"zebra"}

    new = process(data_dir, source_id)["chunks"]
    assert new > old and counts(db, source_id) == (new, new, new, new)
    assert markers(index.search("default", "zebra yak", k=10)) == {"yak"}
    assert {c.generation for c in Chunk.select(Chunk.generation).where(
        Chunk.source == source_id)} == {Source.get_by_id(source_id).generation}


CHAT_WRITER = textwrap.dedent("""
    import json, os, sys, time
    from botlite.app import Botlite
    from botlite.chat import service
    from botlite.settings import load_settings

    data_dir, stop_file = sys.argv[1], sys.argv[2]
    app = Botlite.open(load_settings({"data_dir": data_dir, "semantic": "off"}, environ={}))
    turns, failures, slowest = 0, [], 0.0
    with app.database.connection_context():
        print("ready", flush=True)
        while not os.path.exists(stop_file):
            started = time.monotonic()
            try:
                service.chat(app, {"message": "When is the zebra harvest?",
                                   "session_id": "s%d" % (turns % 7)})
                turns += 1
            except Exception as exc:
                failures.append(repr(exc))
            slowest = max(slowest, time.monotonic() - started)
    print(json.dumps({"turns": turns, "failures": failures[:5], "failed": len(failures),
                      "slowest_s": slowest}), flush=True)
    app.close()
""")


def test_indexing_a_large_source_never_locks_out_chat_nor_shows_a_mix(
        db, data_dir, monkeypatch):
    source_id = file_source(data_dir, document("zebra", 1_500_000, 6))
    old = process(data_dir, source_id)["chunks"]
    rewrite(data_dir, source_id, document("yak", 2_500_000, 7))

    # How long each of the indexer's write transactions holds the lock.
    holds = []
    real = replace.write_transaction

    @contextlib.contextmanager
    def timed_transaction():
        with real():
            started = time.monotonic()
            yield
        holds.append(time.monotonic() - started)
    monkeypatch.setattr(replace, "write_transaction", timed_transaction)

    stop_file = os.path.join(data_dir, "stop")
    writer = subprocess.Popen([sys.executable, "-c", CHAT_WRITER, data_dir, stop_file],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    searches, seen, mixed, bad_counts = 0, [], [], []
    done = threading.Event()

    def reader():
        nonlocal searches
        from botlite.db import database
        with database.connection_context():
            while not done.is_set():
                found = markers(index.search("default", "zebra yak", k=10))
                seen.append(frozenset(found))
                if len(found) > 1:
                    mixed.append(found)
                count = Source.get_by_id(source_id).chunk_count
                if count not in (old, new_count[0]):
                    bad_counts.append(count)
                searches += 1

    new_count = [None]
    try:
        assert writer.stdout.readline().strip() == "ready"
        thread = threading.Thread(target=reader)
        thread.start()
        started = time.monotonic()
        try:
            from botlite.knowledge.chunk import chunk_document
            from botlite.knowledge.extract import extract_file
            new_count[0] = len(chunk_document(extract_file(os.path.join(
                data_dir, Source.get_by_id(source_id).stored_path), "txt")))
            assert process(data_dir, source_id)["chunks"] == new_count[0]
        finally:
            indexing_s = time.monotonic() - started
            done.set()
            thread.join(timeout=60)
    finally:
        open(stop_file, "w").close()
        out, err = writer.communicate(timeout=60)
    chat = json.loads(out.strip().splitlines()[-1])

    assert chat["failed"] == 0, chat["failures"]
    assert chat["turns"] > 20, (chat, err)
    # No transaction holds the write lock for long, nor for much of the indexing
    # (which takes about half a second on a quiet machine, more on a busy one).
    assert max(holds) < 0.5 and max(holds) * 4 < indexing_s, (max(holds), indexing_s)
    assert len(holds) >= 4, holds
    assert chat["slowest_s"] < 2.0, chat
    assert not mixed and not bad_counts
    assert frozenset({"zebra"}) in seen
    assert markers(index.search("default", "zebra yak", k=10)) == {"yak"}
    assert searches > 10
    new = new_count[0]
    assert counts(db, source_id) == (new, new, new, new)


def test_deleting_a_source_while_a_run_writes_stops_the_run(db, data_dir):
    source_id = file_source(data_dir, document("zebra", 20_000, 8))
    process(data_dir, source_id)
    running = replace.Replacement(source_id)
    running.write(index.chunk_rows(Source.get_by_id(source_id), [
        TextChunk("yak text", None, None, 0)],
        generation=running.generation))
    sources.delete_source(data_dir, source_id)
    assert Source.get_or_none(Source.id == source_id) is None
    assert Chunk.select().where(Chunk.source == source_id).count() == 0
    with pytest.raises(replace.SourceGone):
        running.flip()
