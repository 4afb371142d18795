"""Answer quality: what the bot replies, end to end, to questions people would
ask about real documentation botlite's authors did not write. Prints one JSON
line.

Corpora (Debian packages; the page lists and the questions are in
``--questions``, bench/answers_questions.json):

- ``git``: a subset of git's HTML manual pages and guides (``git-doc``),
- ``postgresql``: a subset of the PostgreSQL 15 HTML documentation
  (``postgresql-doc-15``),
- ``pdf``: PDF manuals uploaded as files: the bzip2 manual (``bzip2-doc``) and
  fontconfig's user manual (``fontconfig``).

Each corpus is one bot (its id is the corpus name) in a fresh data directory of
its own (BM25's statistics are over every bot of a database: another corpus in
the same one would change this one's ranking).
A website corpus is ingested as a user would add a site: its pages are copied
into a folder with a generated ``index.html`` linking to each, served on
127.0.0.1 by ``http.server`` in a thread, and crawled by botlite's own crawler
(``sources.add_website`` + ``sources.scrape_website``; links to pages outside
the subset are 404s the crawler skips). A PDF is uploaded as a file
(``sources.add_file`` + ``sources.process_document``). ``--reuse DIR`` keeps the
built indexes in DIR and reuses them on the next run (delete DIR after changing
chunking, extraction or a page list).

Every question goes through ``botlite.chat.service.chat`` (what the chat API
calls) with a fixed session id, so a run is deterministic. Kinds of question:

- ``questions``: ``{"question", "expected_page", "key_terms"}``. The reply's
  cited pages, in the order of its ``sources``, deduplicated, give hit@1 and
  hit@3 (``expected_page`` is a page file name or a list of them); the reply
  must contain one of ``key_terms`` (case-insensitive).
- ``commands``: ``{"question", "command", "expected_page"?}``: the reply must
  contain ``command`` (or one of a list), case-sensitive, whitespace
  normalised.
- ``followups``: ``{"first", "followup", "expected_page", "key_terms",
  "first_expected_page"?, "first_key_terms"?}``: both asked in one session, in
  order; a follow-up succeeds when its reply is no fallback, cites an expected
  page in its first three and holds a key term (``followup_first_ok_rate``: the
  first questions, judged the same way by their ``first_`` fields).
  ``followup_context_ignored``: how many follow-ups got the very same reply
  when asked alone, in a fresh session (the first question made no difference).
- ``out_of_scope``: questions the corpus does not answer (off-topic ones and
  near misses in the same domain): the reply must be the fallback.

A PDF's sources name the file, not the page: for a file, the pages are found by
looking the reply's sentences up in that file's chunks (their locator, "page
N"), in the order of the reply text, and named ``FILE#page=N``.

Per corpus: ``hit_at_1``, ``hit_at_3``, ``key_term_rate`` (over ``questions``),
``command_rate``, ``followup_success_rate``, ``followup_first_ok_rate``,
``oos_fallback_rate``, ``false_fallback_rate`` (in-scope turns, all of them but
the out-of-scope ones, answered by the fallback), ``glued_replies`` (replies
with a token that looks like words glued together: a run of letters that is in
none of the reference words, /usr/share/dict/words if present plus the words of
the corpus's own files read so that nothing is glued (see `readings`), and
that is longer than 25 letters or splits into 2-4 reference words;
``glued_vocabulary`` says which), ``markup_replies`` (replies with an HTML tag
or entity that the documents nowhere show as text), ``answer_sources``, and
``reliability``: the answered (not fallback) turns per confidence bucket, with
how many were correct (a question or either turn of a follow-up: page in the
first three and a key term; a command: the command; out of scope: never).
``all`` adds the corpora up. Key terms and commands are matched in the reply as
a reader sees it (NFKC: a PDF's "ﬁle" is "file"). ``botlite`` is this
checkout's commit ("+": botlite/ has uncommitted changes). Misses go to stderr
with ``-v``; ``--replies FILE`` writes every turn as JSON lines.

``--mode``: how the bot answers; ``bm25`` (botlite's search and extractive
answer, no LLM) is the only one today. Each mode gets its own block in
``modes`` and its own data directory under the run's (a mode that needs its own
index, e.g. embeddings, builds it there), so modes can run side by side:
``--mode bm25 --mode hybrid``.

    apt-get install git-doc postgresql-doc-15 bzip2-doc fontconfig
    python bench/answers.py [--reuse /tmp/answers-index] [--mode bm25] [--corpus git]
                            [--replies /tmp/replies.jsonl] [-v]
"""
import argparse
import functools
import gzip
import html
import http.server
import io
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
import unicodedata
from urllib.parse import urlsplit

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's ``queue`` (imported by psycopg through peewee).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's botlite

from botlite.app import Botlite  # noqa: E402
from botlite.chat import service  # noqa: E402
from botlite.chatbots import create_bot  # noqa: E402
from botlite.models import Chatbot, Chunk, Conversation, Message, Page, Source  # noqa: E402
from botlite.knowledge import embedding, sources, vectors  # noqa: E402
from botlite.settings import load_settings  # noqa: E402

QUESTIONS = os.path.join(_HERE, "answers_questions.json")
CORPORA = ("git", "postgresql", "pdf")
DICTIONARY = "/usr/share/dict/words"
BUCKETS = (0.2, 0.4, 0.6, 0.8, 1.0)

# How the bot answers. ``index``: the name of the data directory whose indexes
# the mode reads (modes with the same index share one build); ``settings``:
# flags for load_settings. A later mode (hybrid retrieval, an LLM) adds an
# entry here, and whatever its ingestion needs in `build_corpus`.
MODES = {
    "bm25": {"index": "bm25", "settings": {"semantic": "off"}},
    "hybrid": {"index": "hybrid", "settings": {"semantic": "on"}},
}


def log(message, *args):
    print("answers bench: " + (message % args if args else message), file=sys.stderr,
          flush=True)


# --- the corpora ---------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(directory):
    """An HTTP server for ``directory`` on a free port of 127.0.0.1, in a thread."""
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def package_version(package):
    try:
        return "%s %s" % (package, subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return package


def checkout():
    """This checkout's commit, "+" when botlite/ has uncommitted changes."""
    root = os.path.dirname(_HERE)
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "botlite"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+" if dirty else "")


def html_title(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        match = re.search(r"<title>(.*?)</title>", handle.read(), re.S | re.I)
    return html.unescape(" ".join(match.group(1).split())) if match else os.path.basename(path)


def make_site(corpus, folder):
    """The corpus's pages in ``folder`` with an index.html linking to each: a small
    documentation site."""
    os.makedirs(folder, exist_ok=True)
    links = []
    for name in corpus["pages"]:
        source = os.path.join(corpus["docs"], name)
        shutil.copyfile(source, os.path.join(folder, name))
        links.append('<li><a href="%s">%s</a></li>' % (
            html.escape(name), html.escape(html_title(source))))
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as handle:
        handle.write("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>"
                     "</head><body><h1>%s</h1><ul>\n%s\n</ul></body></html>\n" % (
                         html.escape(corpus["title"]), html.escape(corpus["title"]),
                         "\n".join(links)))


def read_file(path):
    """A file's bytes; a ``.gz`` is unpacked (Debian compresses large docs)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return handle.read()


def build_corpus(app, name, corpus, work_dir):
    """Ingest ``corpus`` into the bot ``name`` as a user would: crawl the site or
    upload the files."""
    started = time.perf_counter()
    with app.database.connection_context():
        if Chatbot.get_or_none(Chatbot.id == name) is None:
            create_bot({"id": name, "name": corpus["title"]})
        bot = Chatbot.get_by_id(name)
    if corpus["kind"] == "website":
        site = os.path.join(work_dir, "site-" + name)
        make_site(corpus, site)
        server = serve(site)
        try:
            start = "http://127.0.0.1:%d/index.html" % server.server_address[1]
            with app.database.connection_context():
                added = sources.add_website(bot, start, max_pages=len(corpus["pages"]) + 50,
                                            max_depth=3, refresh_hours=None,
                                            allow_private=True)
                result = sources.scrape_website(added.source.id, allow_private=True,
                                                progress=lambda done, total: None,
                                                crawl_options={"delay": 0})
        finally:
            server.shutdown()
            server.server_close()
            shutil.rmtree(site, ignore_errors=True)
        skipped = len(result["skipped"])  # the first 50: links out of the subset are 404s
        log("%s: crawled %d pages, %d chunks in %.1f s (%s skipped)", name, result["pages"],
            result["chunks"], time.perf_counter() - started,
            "%d+" % skipped if skipped == 50 else skipped)
    else:
        for path, filename in corpus["files"]:
            with app.database.connection_context():
                added = sources.add_file(app.settings.data_dir, bot, filename,
                                         io.BytesIO(read_file(path)),
                                         app.settings.max_upload_mb * 1024 * 1024)
                result = sources.process_document(app.settings.data_dir, added.source.id,
                                                  progress=lambda done, total: None)
            log("%s: %s: %d chunks", name, filename, result["chunks"])
        log("%s: processed %d files in %.1f s", name, len(corpus["files"]),
            time.perf_counter() - started)


def corpus_ready(app, name, corpus):
    with app.database.connection_context():
        ready = Source.select().where((Source.chatbot == name) &
                                      (Source.status == "ready")).count()
    return ready == (1 if corpus["kind"] == "website" else len(corpus["files"]))


def forget_sessions(app, name):
    """Drop the bot's transcripts: a follow-up's previous question is looked up
    in them for a session this process has not seen, and a reused data
    directory holds the last run's sessions under the same ids."""
    with app.database.connection_context():
        with app.database.atomic():
            conversations = Conversation.select(Conversation.id).where(
                Conversation.chatbot == name)
            Message.delete().where(Message.conversation.in_(conversations)).execute()
            Conversation.delete().where(Conversation.chatbot == name).execute()


# --- reading replies -----------------------------------------------------------

def page_name(url):
    return urlsplit(url).path.rsplit("/", 1)[-1]


def squash(text):
    return " ".join((text or "").split())


_PIECES = re.compile(r"(?<=[.!?:;])\s+|\n+")
_MARKER = re.compile(r"^(?:[-*•]|\d{1,3}[.)])\s+")


class Pages:
    """The pages a reply cites, in order: a website page by its URL's file name, a
    file's pages by finding the reply's sentences in its chunks."""

    def __init__(self, bot_id):
        self.files = {}   # source id -> file name
        self.chunks = {}  # source id -> [(position, locator, text)]
        for source_id, filename in (Source.select(Source.id, Source.filename)
                                    .where((Source.chatbot == bot_id) &
                                           (Source.kind == "file")).tuples()):
            self.files[source_id] = filename
            self.chunks[source_id] = [
                (position, locator, squash(text)) for position, locator, text in
                Chunk.select(Chunk.position, Chunk.locator, Chunk.text)
                .where(Chunk.source == source_id).order_by(Chunk.position).tuples()]

    def of(self, reply):
        pages = []
        for cited in reply["sources"]:
            if cited.get("url"):
                found = [page_name(cited["url"])]
            elif cited.get("source_id") in self.files:
                found = self.file_pages(cited["source_id"], reply["reply"])
            else:
                found = [cited.get("source_id") or "?"]
            pages += [page for page in found if page not in pages]
        return pages

    def file_pages(self, source_id, text):
        filename, pages = self.files[source_id], []
        for piece in _PIECES.split(text):
            piece = squash(_MARKER.sub("", piece.strip())).rstrip("…")
            if len(piece) < 15:
                continue
            probe = piece[:80]
            for _, locator, chunk in self.chunks[source_id]:
                if probe in chunk:
                    page = "%s#%s" % (filename, (locator or "").replace("page ", "page="))
                    if page not in pages:
                        pages.append(page)
                    break
        return pages or [filename]


_WORD = re.compile(r"[A-Za-z]+")
_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>|&(?:#\d+|#x[0-9a-fA-F]+|[a-z]+);")
_TAG = re.compile(r"<[^>]*>")
_INLINE_TAG = re.compile(r"</?(?:a|abbr|acronym|b|cite|code|em|font|i|kbd|q|s|samp|small|span|"
                         r"strong|sub|sup|tt|u|var|wbr)\b[^>]*>", re.I)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.S | re.I)


LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl",
                           "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})


def readings(path):
    """A corpus file's text as its author wrote it, in which nothing is glued: HTML
    with every tag read as a space, and with inline tags read as nothing
    ("<code>pg_basebackup</code>s"); a PDF's text in pypdf's layout mode."""
    data = read_file(path)
    if path.endswith((".pdf", ".pdf.gz")):
        from pypdf import PdfReader
        reader = PdfReader(io.BytesIO(data))
        # Ligatures spelled out, as botlite reads them ("ﬁles" is the word "files").
        return [" ".join(page.extract_text(extraction_mode="layout")
                         for page in reader.pages).translate(LIGATURES)]
    text = _SCRIPT.sub(" ", data.decode("utf-8", "replace"))
    return [html.unescape(_TAG.sub(" ", text)),
            html.unescape(_TAG.sub(" ", _INLINE_TAG.sub("", text)))]


class Reference:
    """What a corpus's own files say, to tell the reply's flaws from its content:
    tokens that look like several words glued together, and markup (an HTML tag
    or entity the documents nowhere show as text: "<commit>" in git's manual is
    content)."""

    def __init__(self, paths):
        self.words, texts = set(), []
        for path in paths:
            for text in readings(path):
                self.words.update(word.lower() for word in _WORD.findall(text))
                texts.append(squash(text))
        self.text = "\n".join(texts)
        self.dictionary = os.path.exists(DICTIONARY)
        if self.dictionary:
            with open(DICTIONARY, encoding="utf-8", errors="replace") as handle:
                self.words.update(line.strip().lower() for line in handle if line.strip())
        self.vocabulary = "corpus+dict" if self.dictionary else "corpus"

    @functools.lru_cache(maxsize=None)
    def _splits(self, token, parts):
        if token in self.words and len(token) >= 2:
            return True
        if parts == 1:
            return False
        return any(token[:cut] in self.words and self._splits(token[cut:], parts - 1)
                   for cut in range(2, len(token) - 1))

    def is_glued(self, token):
        token = token.lower()
        if len(token) < 6 or token in self.words:
            return False
        return len(token) > 25 or self._splits(token, 4)

    def glued(self, text):
        return sorted({token for token in _WORD.findall(text) if self.is_glued(token)})

    def markup(self, text):
        return sorted({found for found in _MARKUP.findall(text)
                       if squash(found) not in self.text})


# --- asking --------------------------------------------------------------------

def ask(app, bot_id, message, session_id):
    started = time.perf_counter()
    with app.database.connection_context():
        reply = service.chat(app, {"message": message, "session_id": session_id},
                             bot_id=bot_id)
    reply["ms"] = (time.perf_counter() - started) * 1000
    return reply


def expected_set(expected):
    return {expected} if isinstance(expected, str) else set(expected)


def readable(text):
    """``text`` as a reader sees it: a PDF's ligatures ("ﬁle") read as letters."""
    return unicodedata.normalize("NFKC", text)


def has_term(text, terms):
    lowered = readable(text).lower()
    return any(term.lower() in lowered for term in terms)


def has_command(text, commands):
    text = squash(readable(text))
    commands = [commands] if isinstance(commands, str) else commands
    return any(squash(command) in text for command in commands)


def rank_of(pages, expected):
    return next((i + 1 for i, page in enumerate(pages) if page in expected), None)


class Run:
    """One corpus's questions asked of one mode's bot, and what came back."""

    def __init__(self, app, bot_id, questions, reference, pages):
        self.app, self.bot_id, self.questions = app, bot_id, questions
        self.reference, self.pages = reference, pages
        self.turns = []

    def turn(self, kind, number, message, session_id, **judged):
        reply = ask(self.app, self.bot_id, message, session_id)
        with self.app.database.connection_context():
            pages = self.pages.of(reply)
        turn = {"kind": kind, "n": number, "question": message, "reply": reply["reply"],
                "answer_source": reply["answer_source"], "confidence": reply["confidence"],
                "pages": pages[:5], "glued": self.reference.glued(reply["reply"]),
                "markup": self.reference.markup(reply["reply"]), "ms": reply["ms"]}
        turn.update(judged)
        self.turns.append(turn)
        return turn

    def judge_page(self, turn, item):
        turn["expected"] = item["expected_page"]
        turn["rank"] = rank_of(turn["pages"], expected_set(item["expected_page"]))
        turn["term"] = has_term(turn["reply"], item["key_terms"])
        turn["correct"] = (turn["answer_source"] != "fallback" and turn["rank"] is not None
                           and turn["rank"] <= 3 and turn["term"])

    def ask_all(self):
        prefix = "answers-%s" % self.bot_id
        for number, item in enumerate(self.questions.get("questions", [])):
            turn = self.turn("question", number, item["question"], "%s-q%d" % (prefix, number))
            self.judge_page(turn, item)
        for number, item in enumerate(self.questions.get("commands", [])):
            turn = self.turn("command", number, item["question"], "%s-c%d" % (prefix, number))
            turn["expected"] = item["command"]
            turn["correct"] = turn["command"] = has_command(turn["reply"], item["command"])
            if "expected_page" in item:
                turn["rank"] = rank_of(turn["pages"], expected_set(item["expected_page"]))
        for number, item in enumerate(self.questions.get("followups", [])):
            session = "%s-f%d" % (prefix, number)
            first = self.turn("followup_first", number, item["first"], session)
            if "first_expected_page" in item:
                self.judge_page(first, {"expected_page": item["first_expected_page"],
                                        "key_terms": item["first_key_terms"]})
            second = self.turn("followup", number, item["followup"], session)
            self.judge_page(second, item)
            alone = ask(self.app, self.bot_id, item["followup"], "%s-alone" % session)
            second["context_ignored"] = alone["reply"] == second["reply"]
        for number, question in enumerate(self.questions.get("out_of_scope", [])):
            turn = self.turn("out_of_scope", number, question, "%s-o%d" % (prefix, number))
            turn["correct"] = turn["answer_source"] == "fallback"
        return self.turns


# --- scoring -------------------------------------------------------------------

def rate(count, total):
    return round(count / total, 3) if total else None


def reliability(turns):
    rows = []
    for low, high in zip((0.0,) + BUCKETS[:-1], BUCKETS):
        inside = [t for t in turns if t["answer_source"] != "fallback" and
                  (low <= t["confidence"] < high or (high == 1.0 and t["confidence"] >= 1.0))]
        correct = sum(1 for t in inside if t.get("correct"))
        rows.append({"bucket": "%.1f-%.1f" % (low, high), "count": len(inside),
                     "correct": correct, "share_correct": rate(correct, len(inside))})
    return rows


def score(turns):
    of = {kind: [t for t in turns if t["kind"] == kind]
          for kind in ("question", "command", "followup_first", "followup", "out_of_scope")}
    questions, followups = of["question"], of["followup"]
    firsts = [t for t in of["followup_first"] if "correct" in t]
    in_scope = [t for t in turns if t["kind"] != "out_of_scope"]
    return {
        "questions": len(questions),
        "hit_at_1": rate(sum(t["rank"] == 1 for t in questions), len(questions)),
        "hit_at_3": rate(sum(t["rank"] is not None and t["rank"] <= 3 for t in questions),
                         len(questions)),
        "key_term_rate": rate(sum(t["term"] for t in questions), len(questions)),
        "commands": len(of["command"]),
        "command_rate": rate(sum(t["command"] for t in of["command"]), len(of["command"])),
        "followups": len(followups),
        "followup_success_rate": rate(sum(t["correct"] for t in followups), len(followups)),
        "followup_first_ok_rate": rate(sum(t["correct"] for t in firsts), len(firsts)),
        "followup_context_ignored": sum(t["context_ignored"] for t in followups),
        "out_of_scope": len(of["out_of_scope"]),
        "oos_fallback_rate": rate(sum(t["correct"] for t in of["out_of_scope"]),
                                  len(of["out_of_scope"])),
        "in_scope_turns": len(in_scope),
        "false_fallback_rate": rate(sum(t["answer_source"] == "fallback" for t in in_scope),
                                    len(in_scope)),
        "answer_sources": {source: sum(t["answer_source"] == source for t in turns)
                           for source in sorted({t["answer_source"] for t in turns})},
        "glued_replies": sum(bool(t["glued"]) for t in turns),
        "markup_replies": sum(bool(t["markup"]) for t in turns),
        "reply_p50_ms": round(statistics.median(t["ms"] for t in turns), 2) if turns else None,
        "reliability": reliability(turns),
    }


def one_line(text, limit=400):
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def log_misses(corpus, turns):
    for t in turns:
        problems = []
        if t["kind"] in ("question", "followup", "followup_first") and "correct" in t:
            if t["answer_source"] == "fallback":
                problems.append("fallback")
            if t["rank"] != 1:
                problems.append("page rank %s" % t["rank"])
            if not t["term"]:
                problems.append("no key term")
            if t["kind"] == "followup" and t.get("context_ignored") and not t["correct"]:
                problems.append("same reply without the first question")
        elif t["kind"] == "command" and not t["command"]:
            problems.append("command missing")
        elif t["kind"] == "out_of_scope" and not t["correct"]:
            problems.append("answered")
        if t["glued"]:
            problems.append("glued: " + " ".join(t["glued"][:5]))
        if t["markup"]:
            problems.append("markup: " + " ".join(t["markup"][:5]))
        if not problems:
            continue
        log("MISS  %s %s #%d: %s\n        %s\n        expected %s; got %s (%s %.3f)\n"
            "        reply: %s", corpus, t["kind"], t["n"], ", ".join(problems), t["question"],
            t.get("expected"), ", ".join(t["pages"][:3]) or "-", t["answer_source"],
            t["confidence"], one_line(t["reply"]))


# --- main ----------------------------------------------------------------------

def run_corpus(mode, name, corpus, questions, data_dir, args, replies):
    """One corpus's turns in one mode, in the corpus's own data directory: BM25's
    statistics are over all bots of a database, so another bot's pages would
    change this one's ranking."""
    os.makedirs(data_dir, exist_ok=True)
    settings = load_settings(dict({"data_dir": data_dir}, **MODES[mode]["settings"]),
                             environ={"BOTLITE_ALLOW_PRIVATE_URLS": "1"})
    app = Botlite.open(settings)
    try:
        if not corpus_ready(app, name, corpus):
            build_corpus(app, name, corpus, data_dir)
        if MODES[mode]["index"] == "hybrid":
            with app.database.connection_context():
                started = time.perf_counter()
                built = vectors.build(embedding.current(), name)
                if built:
                    log("%s: %d vectors in %.1f s", name, built, time.perf_counter() - started)
        forget_sessions(app, name)
        with app.database.connection_context():
            pages = Page.select().join(Source).where(Source.chatbot == name).count() or \
                Chunk.select(Chunk.source, Chunk.locator).distinct().join(Source).where(
                    Source.chatbot == name).count()
            chunks = Chunk.select().join(Source).where(Source.chatbot == name).count()
            page_finder = Pages(name)
        reference = Reference(corpus_files(corpus))
        started = time.perf_counter()
        turns = Run(app, name, questions, reference, page_finder).ask_all()
        log("%s: %d turns in %.1f s", name, len(turns), time.perf_counter() - started)
        app.turn_log.flush()
    finally:
        app.close()
    if args.verbose:
        log_misses(name, turns)
    if replies is not None:
        for turn in turns:
            replies.write(json.dumps(dict(turn, mode=mode, corpus=name)) + "\n")
    block = dict({"pages": pages, "chunks": chunks, "glued_vocabulary": reference.vocabulary},
                 **score(turns))
    return block, turns


def run_mode(mode, data_dir, spec, corpora, args, replies):
    block, everything = {"mode": mode}, []
    for name in corpora:
        block[name], turns = run_corpus(mode, name, spec[name]["corpus"], spec[name],
                                        os.path.join(data_dir, name), args, replies)
        everything += turns
    if len(corpora) > 1:
        block["all"] = score(everything)
    return block


def corpus_files(corpus):
    if corpus["kind"] == "website":
        return [os.path.join(corpus["docs"], name) for name in corpus["pages"]]
    return [path for path, _ in corpus["files"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", default=QUESTIONS)
    parser.add_argument("--mode", action="append", choices=sorted(MODES),
                        help="how the bot answers (repeat to compare; default: bm25)")
    parser.add_argument("--corpus", action="append", choices=CORPORA,
                        help="only this corpus (repeatable; default: all)")
    parser.add_argument("--reuse", metavar="DIR",
                        help="keep the built indexes in DIR and reuse them when present")
    parser.add_argument("--replies", metavar="FILE", help="write every turn to FILE (JSON lines)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the misses")
    args = parser.parse_args(argv)
    modes = args.mode or ["bm25"]
    corpora = [name for name in CORPORA if name in (args.corpus or CORPORA)]
    with open(args.questions, encoding="utf-8") as handle:
        spec = json.load(handle)
    for name in corpora:
        missing = [path for path in corpus_files(spec[name]["corpus"])
                   if not os.path.exists(path)]
        if missing:
            parser.error("%s: %s is missing (apt-get install %s)" % (
                name, missing[0], " ".join(spec[name]["corpus"]["packages"])))

    started = time.perf_counter()
    data_dir = args.reuse or tempfile.mkdtemp(prefix="botlite-answers-")
    replies = open(args.replies, "w", encoding="utf-8") if args.replies else None
    try:
        blocks = {}
        for mode in modes:
            blocks[mode] = run_mode(mode, os.path.join(data_dir, MODES[mode]["index"]), spec,
                                    corpora, args, replies)
    finally:
        if replies is not None:
            replies.close()
        if not args.reuse:
            shutil.rmtree(data_dir, ignore_errors=True)
    line = {"bench": "answers", "mode": ",".join(modes), "botlite": checkout(),
            "docs": {name: ", ".join(package_version(p)
                                     for p in spec[name]["corpus"]["packages"])
                     for name in corpora},
            "modes": blocks, "wall_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
