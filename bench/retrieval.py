"""Retrieval quality on real documentation botlite's authors did not write: the
Debian Administrator's Handbook (Debian package ``debian-handbook``). Prints one
JSON line.

The book's HTML is served on 127.0.0.1 by ``http.server`` in a thread and
crawled with botlite's own crawler into a fresh data directory, exactly as a
website source is ingested. Then each question of ``--questions`` (a JSON list
of ``{"question", "expected_page"}``; ``expected_page`` is a page file name such
as ``"sect.apt-get.html"``, or a list of them when two pages genuinely cover the
answer) goes through ``index.search("default", question, k=10)``; the hits are
deduplicated by page (first occurrence) and the expected page's rank gives
hit@1 and hit@3. Misses go to stderr. ``search_p50_ms`` is over three passes.

``--mode hybrid`` (repeatable with ``--mode bm25``; needs the ``semantic`` extra)
embeds the chunks first (``build_vectors_s`` and ``vectors_per_s`` in the line)
and searches with BM25 fused with the vectors; each mode's figures are under
its name. For ``--scale``, the synthetic copies get their original's vector
plus a little noise (embedding 100,000 chunks here takes over an hour; the
timing does not depend on the vectors' meaning), and the hybrid timings
include embedding the question.

``--reuse DIR`` keeps the built indexes in DIR and reuses them on the next run
(delete DIR after changing chunking or extraction).

``--scale N`` also times the same questions against a synthetic index of N
chunks in one bot (copies of the book whose rare words are renamed in each
copy, see `build_synthetic`), and adds ``scale_chunks``,
``scale_search_p50_ms`` and ``scale_search_p90_ms`` to the line. Its hit rates
are not reported: the copies tie on every common word, so for a question made
only of those, which copy comes first says nothing about the ranking.

    apt-get install debian-handbook
    python bench/retrieval.py [--reuse /tmp/handbook-index] [--scale 100000] [--docs DIR] [-v]
"""
import argparse
import functools
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's ``queue`` (imported by psycopg through peewee).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's botlite

from botlite.app import Botlite  # noqa: E402
from botlite.knowledge import embedding, index, sources, vectors  # noqa: E402
from botlite.models import Chunk, Page, Source  # noqa: E402
from botlite.settings import load_settings  # noqa: E402

DOCS = "/usr/share/doc/debian-handbook/html/en-US"
QUESTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "retrieval_questions.json")
BOT = "default"
K = 10


def log(message, *args):
    print("retrieval bench: " + (message % args if args else message), file=sys.stderr,
          flush=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(directory):
    """An HTTP server for ``directory`` on a free port of 127.0.0.1, in a thread."""
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def docs_version(directory):
    if directory.startswith("/usr/share/doc/debian-handbook/"):
        try:
            return "debian-handbook " + subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "debian-handbook"],
                capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return directory


def open_app(data_dir, mode="bm25"):
    return Botlite.open(load_settings({"data_dir": data_dir,
                                       "semantic": "on" if mode == "hybrid" else "off"},
                                      environ={"BOTLITE_ALLOW_PRIVATE_URLS": "1"}))


def build_vectors():
    """Embed the chunks that have no vector yet: (seconds, vectors made)."""
    started = time.perf_counter()
    made = vectors.build(embedding.current())
    took = time.perf_counter() - started
    if made:
        log("embedded %d chunks in %.1f s (%.1f chunks/s)", made, took, made / took)
    return took, made


def copy_vectors_to_synthetic(original_vectors):
    """Give each synthetic chunk its original's vector plus a little noise."""
    import numpy

    model = embedding.current().model_id
    rng = numpy.random.default_rng(7)
    ids = [row[0] for row in Chunk._meta.database.execute_sql(
        "select id from chunk order by id").fetchall()]
    rows = []
    for position, chunk_id in enumerate(ids):
        original = numpy.frombuffer(original_vectors[position % len(original_vectors)],
                                    dtype="<f2").astype(numpy.float32)
        noisy = original + rng.normal(0, 0.02, original.shape).astype(numpy.float32)
        noisy /= numpy.linalg.norm(noisy)
        rows.append((chunk_id, BOT, model, 1, noisy.astype("<f2").tobytes()))
        if len(rows) == 5000 or position == len(ids) - 1:
            with Chunk._meta.database.atomic():
                Chunk._meta.database.cursor().executemany(
                    "insert or replace into chunk_vector (chunk_id, chatbot_id, model, "
                    "version, vector) values (?, ?, ?, ?, ?)", rows)
            rows = []
    Chunk._meta.database.execute_sql(
        "insert or replace into vector_version (chatbot_id, version) values (?, 1)", (BOT,))


def build_index(app, docs):
    """Crawl ``docs`` through a local HTTP server into the default bot."""
    server = serve(docs)
    try:
        start = "http://127.0.0.1:%d/index.html" % server.server_address[1]
        with app.database.connection_context():
            source = Source.create(id=sources._new_id(), chatbot=BOT, kind="website",
                                   title=start, url=start, max_pages=2000, max_depth=10)
            started = time.perf_counter()
            result = sources.scrape_website(source.id, allow_private=True,
                                            progress=lambda done, total: None,
                                            crawl_options={"delay": 0})
        log("crawled %d pages, %d chunks in %.1f s (%d skipped)", result["pages"],
            result["chunks"], time.perf_counter() - started, len(result["skipped"]))
    finally:
        server.shutdown()
        server.server_close()


def build_synthetic(app, originals, count):
    """``count`` chunks in the default bot of ``app``: copies of ``originals``
    ((url, title, heading, text) of the book's chunks), the first as it is and the
    others with their rare words renamed per copy ("munin" -> "muninx7"). Like
    many sites in one bot: common words are everywhere, each site's own terms
    stay rare."""
    word = re.compile(r"\w+")
    frequency = {}
    for _, title, heading, text in originals:
        for term in set(word.findall(" ".join(filter(None, (title, heading, text))).lower())):
            frequency[term] = frequency.get(term, 0) + 1
    common = max(2, len(originals) // 100)

    def renamed(text, copy):
        if not text or not copy:
            return text
        return word.sub(lambda m: m.group() if frequency.get(m.group().lower(), 0) >= common
                        else "%sx%d" % (m.group(), copy), text)

    started = time.perf_counter()
    source = Source.create(id=sources._new_id(), chatbot=BOT, kind="file",
                           title="synthetic", status="ready")
    rows = []
    for position in range(count):
        copy = position // len(originals)
        url, title, heading, text = originals[position % len(originals)]
        name = page_name(url) if not copy else "%d-%s" % (copy, page_name(url))
        rows.append({"source": source.id, "page": None, "chatbot_id": BOT,
                     "bot": index.bot_token(BOT), "url": "synthetic/%d/%s" % (copy, name),
                     "title": renamed(title, copy), "heading": renamed(heading, copy),
                     "locator": None, "position": position, "text": renamed(text, copy)})
        if len(rows) == 5000 or position == count - 1:
            with app.database.atomic():
                index.insert_chunks(rows)
            rows = []
    log("built a synthetic index of %d chunks in %.1f s", count, time.perf_counter() - started)


def page_name(url):
    return urlsplit(url).path.rsplit("/", 1)[-1]


def ranked_pages(hits):
    """Page file names in hit order, each once (its first, best hit)."""
    pages = []
    for hit in hits:
        name = page_name(hit.url or "")
        if name not in pages:
            pages.append(name)
    return pages


def evaluate(questions, verbose=False):
    timings, hit1, hit3, misses = [], 0, 0, []
    for item in questions:
        expected = item["expected_page"]
        expected = {expected} if isinstance(expected, str) else set(expected)
        started = time.perf_counter()
        hits = index.search(BOT, item["question"], k=K)
        timings.append((time.perf_counter() - started) * 1000)
        pages = ranked_pages(hits)
        rank = next((i + 1 for i, page in enumerate(pages) if page in expected), None)
        hit1 += rank == 1
        hit3 += rank is not None and rank <= 3
        if rank != 1:
            misses.append((item, rank, pages[:3], hits[0].score if hits else None))
        elif verbose:
            log("ok    %-60s %.2f", item["question"][:60], hits[0].score)
    return hit1, hit3, timings, misses


def log_misses(misses):
    for item, rank, top, score in misses:
        log("MISS  %s\n        expected %s (rank %s); got %s (top score %s)",
            item["question"], item["expected_page"], rank, ", ".join(top), score)


def time_at_scale(data_dir, originals, count, questions, mode, original_vectors):
    os.makedirs(data_dir, exist_ok=True)
    app = open_app(data_dir, mode)
    try:
        with app.database.connection_context():
            if Chunk.select().count() != count:
                Source.delete().execute()
                build_synthetic(app, originals, count)
            if mode == "hybrid" and Chunk._meta.database.execute_sql(
                    "select count(*) from chunk_vector").fetchone()[0] != count:
                copy_vectors_to_synthetic(original_vectors)
            evaluate(questions)  # loads the matrix
            timings = []
            for _ in range(3):
                timings += evaluate(questions)[2]
    finally:
        app.close()
    return {"scale_chunks": count, "scale_search_p50_ms": round(statistics.median(timings), 2),
            "scale_search_p90_ms": round(statistics.quantiles(timings, n=10)[-1], 2),
            "scale_search_p99_ms": round(statistics.quantiles(timings, n=100)[-1], 2)}


def run_mode(mode, data_dir, args, questions):
    app = open_app(data_dir, mode)
    figures = {}
    try:
        with app.database.connection_context():
            built = Source.select().where(Source.status == "ready").exists()
        if not built:
            build_index(app, args.docs)
        with app.database.connection_context():
            if mode == "hybrid":
                took, made = build_vectors()
                if made:
                    figures.update(build_vectors_s=round(took, 1),
                                   vectors_per_s=round(made / took, 1))
            pages, chunks = Page.select().count(), Chunk.select().count()
            originals = list(Chunk.select(Chunk.url, Chunk.title, Chunk.heading,
                                          Chunk.text).order_by(Chunk.id).tuples())
            original_vectors = [bytes(blob) for (blob,) in Chunk._meta.database.execute_sql(
                "select v.vector from chunk c join chunk_vector v on v.chunk_id = c.id "
                "order by c.id").fetchall()] if mode == "hybrid" else None
            hit1, hit3, timings, misses = evaluate(questions, args.verbose)
            for _ in range(2):
                timings += evaluate(questions)[2]
        log("%s:", mode)
        log_misses(misses)
    finally:
        app.close()
    figures = dict({"pages": pages, "chunks": chunks,
                    "hit_at_1": round(hit1 / len(questions), 3),
                    "hit_at_3": round(hit3 / len(questions), 3),
                    "search_p50_ms": round(statistics.median(timings), 2)}, **figures)
    if args.scale:
        figures.update(time_at_scale(os.path.join(data_dir, "scale-%d" % args.scale),
                                     originals, args.scale, questions, mode, original_vectors))
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=DOCS, help="the HTML directory (default: %(default)s)")
    parser.add_argument("--questions", default=QUESTIONS)
    parser.add_argument("--reuse", metavar="DIR",
                        help="keep the crawled index in DIR and reuse it when present")
    parser.add_argument("--scale", type=int, metavar="N",
                        help="also time the questions on a synthetic index of N chunks")
    parser.add_argument("--mode", action="append", choices=("bm25", "hybrid"),
                        help="retrieval to measure (repeat to compare; default: bm25)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log hits too")
    args = parser.parse_args(argv)
    modes = args.mode or ["bm25"]
    if not os.path.isfile(os.path.join(args.docs, "index.html")):
        parser.error("no index.html in %s (apt-get install debian-handbook)" % args.docs)
    with open(args.questions, encoding="utf-8") as handle:
        questions = json.load(handle)

    data_dir = args.reuse or tempfile.mkdtemp(prefix="botlite-retrieval-")
    line = {"bench": "retrieval", "docs": docs_version(args.docs),
            "questions": len(questions)}
    try:
        for mode in modes:
            line[mode] = run_mode(mode, data_dir, args, questions)
            line.update(pages=line[mode].pop("pages"), chunks=line[mode].pop("chunks"))
    finally:
        if not args.reuse:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
