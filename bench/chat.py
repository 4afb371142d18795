"""HTTP chat latency and throughput against a bot with ``--chunks`` chunks, with
``/healthz`` as the baseline in the same run and setup, and retrieval-only time
at ``--retrieval-chunks`` chunks. Prints one JSON line.

Knowledge: English-like text generated with a fixed seed from a vocabulary of a
few thousand words (a few hundred real common words, then made-up words) drawn
with a Zipf-like distribution, in ~900-character chunks of paragraphs under
headings. The chunks are spread over ``--pages`` pages: half are file sources
(one document each), half are pages with URLs of four website sources. They are
inserted through ``index.chunk_rows`` / ``index.insert_chunks`` into a fresh
data directory before the server starts (what ``process_document`` does,
without the extraction and chunking).

HTTP: a real ``python -m botlite serve --port 0`` (2 task workers, as by
default) on 127.0.0.1, driven by ``--clients`` threads, each with its own
keep-alive ``requests.Session``. First ``/healthz`` (the baseline: a database
``select 1``, the queue depth and the workers' heartbeats, through the same
waitress and bottle) for ``--duration`` seconds, then ``POST /chatbot/message/``
for ``--duration`` seconds, each after a short warm-up. Latency is per request,
as the client sees it; requests/s is completed requests over the phase's wall
time. Chat questions are built from the words of the generated chunks (so most
are answered from the knowledge base), with a few greetings, thanks and
off-topic ones mixed in; ``answer_sources`` is the share of each
``answer_source`` in the replies. Each client keeps a session for 5 messages.
``server_reply_p50_ms`` is the median ``latency_ms`` the server logged for the
measured turns (the engine's answer only: no HTTP, no logging of the turn),
``server_rss_mb`` its resident memory after the chat phase (the first web
process), ``queue_pending_after`` the queue depth /healthz reported right after the chat
phase (a chat turn queues no task: its analytics row is written with the turn).
botlite has no answer or search cache: every request, repeated question or not,
is a full turn (search, composing, logging). ``server_cpu_ms_per_req`` and
``client_cpu_ms_per_req``: CPU time of the server (HTTP threads and task workers,
and its extra web processes with ``--web-processes N``) and of this one over the
phase, per request sent; with ``cpus`` cores
shared by both, they say whether latency is queueing for CPU (the GIL).

Retrieval (``retrieval_100k``): a second fresh database with
``--retrieval-chunks`` chunks made the same way; ``index.search("default",
question, 5)`` in this process, in one connection, p50/p99 over
``--retrieval-questions`` questions after a warm-up; the slowest go to stderr.
``connection_per_search_p50_ms``: the same with a new connection per search, as
each web request has.

Goals (the issue): chat p50 <= 10 ms, p99 <= 50 ms, chat >= 50 % of /healthz
requests/s, retrieval p50 <= 5 ms; with ``--semantic``, hybrid's server CPU per
turn <= 1.5x BM25's and its retrieval at 100k p50 <= 8 ms, p99 <= 50 ms;
``goals_met`` says which are.

``--semantic`` (needs the ``semantic`` extra) measures hybrid retrieval in the
same run: the chat index and the retrieval index get a vector per chunk
(`add_vectors`: random unit vectors of the real model's id; the cost does not
depend on their meaning), then the HTTP phases run again with ``serve
--semantic on`` (``hybrid``: its chat and /healthz figures, and
``server_cpu_vs_bm25``, its server CPU per chat turn over BM25's) and the
retrieval timing again with the question's embedding included
(``retrieval_100k_hybrid``).

``--profile N`` also prints to stderr, for N chat turns run in this process
against the chat database (``botlite.chat.service.chat`` as the web layer calls
it, no HTTP): the time per turn with one shared connection and with a
connection per turn, a per-stage table (intents, FAQ, search, compose_answer,
queueing the turn for the log, the rest, which includes the GIL time of the turn
log's writer thread), ``--clients`` threads at once, and a cProfile;
and a cProfile of the retrieval searches.

    python bench/chat.py [--chunks 10000] [--clients 4] [--duration 10]
                         [--retrieval-chunks 100000] [--profile 500]
"""
import os
import sys

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's ``queue`` (imported by requests' urllib3 and by peewee).
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, _ROOT)  # this checkout's botlite

import argparse  # noqa: E402
import collections  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pstats  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import requests  # noqa: E402

from botlite.app import Botlite  # noqa: E402
from botlite.db import write_transaction  # noqa: E402
from botlite.knowledge import index  # noqa: E402
from botlite.knowledge.chunk import Chunk as TextChunk  # noqa: E402
from botlite.models import Chatbot, Message, Page, Source  # noqa: E402
from botlite.settings import load_settings  # noqa: E402

BOT = "default"
SEED = 20240917
WEBSITES = 4
SESSION_MESSAGES = 5
GOALS = {"p50_ms": 10.0, "p99_ms": 50.0, "chat_vs_healthz_ratio": 0.5,
         "retrieval_p50_ms": 5.0,
         # wave 2, --semantic: hybrid's server CPU per turn over BM25's (same run), and
         # its retrieval at 100k chunks with the question's embedding
         "hybrid_cpu_vs_bm25": 1.5, "hybrid_retrieval_p50_ms": 8.0,
         "hybrid_retrieval_p99_ms": 50.0}


def log(message, *args):
    print("chat bench: " + (message % args if args else message), file=sys.stderr, flush=True)


def _percentile(values, pct):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _clean_environ():
    """This environment without BOTLITE_* settings: the bench chooses its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BOTLITE_")}


def _stat(pid):
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().rsplit(")", 1)[1].split()


def _children(pid):
    """The processes whose parent is ``pid`` (serve's extra web processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError):
                pass
    return found


def _cpu_s(pid=None):
    """User + system CPU seconds of a process (this one by default), all threads,
    plus those of its child processes (serve --web-processes)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    total = 0
    for each in [pid] + _children(pid):
        fields = _stat(each)
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def open_app(data_dir, semantic="off"):
    return Botlite.open(load_settings({"data_dir": data_dir, "semantic": semantic},
                                      environ={}))


def add_vectors(data_dir):
    """A unit vector (random, fixed seed) of the real model's id for every chunk, so
    hybrid retrieval runs on this index without an hour of embedding: its cost
    (the question's real embedding, the product with the matrix, the fusion, the
    rows of chunks only the vectors found) does not depend on what they mean."""
    import numpy

    from botlite.knowledge import embedding

    started = time.perf_counter()
    app = open_app(data_dir, "on")
    try:
        model = embedding.current().model_id
        rng = numpy.random.default_rng(SEED)
        with app.database.connection_context():
            ids = [row[0] for row in app.database.execute_sql(
                "select id from chunk order by id").fetchall()]
            for start in range(0, len(ids), 5000):
                part = ids[start:start + 5000]
                matrix = rng.standard_normal((len(part), embedding.DIMENSIONS)).astype(
                    numpy.float32)
                matrix /= numpy.linalg.norm(matrix, axis=1, keepdims=True)
                with write_transaction():
                    app.database.cursor().executemany(
                        "insert into chunk_vector (chunk_id, chatbot_id, model, version, "
                        "vector) values (?, ?, ?, 1, ?)",
                        [(chunk_id, BOT, model, row.astype("<f2").tobytes())
                         for chunk_id, row in zip(part, matrix)])
            with write_transaction():
                app.database.execute_sql("insert into vector_version (chatbot_id, version) "
                                         "values (?, 1)", (BOT,))
    finally:
        app.close()
    log("added %d vectors in %.1f s", len(ids), time.perf_counter() - started)


# --- generated English-like text --------------------------------------------------

# Real words first (the most frequent ranks), then made-up ones up to VOCABULARY.
_COMMON = """
the of and to a in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when
if so no will more can out up into other time only new some could these two may first
then do any like my now over such our man me even most made after also did many before
must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old
year off come since against go came right used take three system customer order service
account invoice payment delivery warehouse product price report quarter region team
manager policy support request schedule shipment supplier contract budget project review
update process record data network server backup storage access security training meeting
office employee department client partner market sales revenue cost margin forecast plan
quality issue ticket response release version feature option setting default install
configure document guide section table figure page chapter summary result analysis growth
garden water soil plant season harvest weather spring summer autumn winter morning evening
local national annual monthly weekly daily recent current previous following available
required optional important general specific standard simple complex clear early late
user password login email address phone number card refund return exchange warranty
shipping tracking package box label store shop online mobile app website browser
computer laptop printer screen keyboard battery charger cable device model serial
reset restart upgrade download upload file folder share link message notification
alert error warning problem solution answer question help contact hours opening closing
monday tuesday wednesday thursday friday saturday sunday week month holiday vacation
travel flight hotel booking reservation ticket seat gate airport station train bus
car parking fuel engine tire repair insurance claim policy premium coverage benefit
health doctor patient appointment clinic hospital medicine pharmacy prescription test
school student teacher course class lesson exam grade library book loan member
bank transfer balance statement interest loan mortgage credit debit fee charge limit
energy electricity gas meter reading tariff bill supply heating cooling boiler
kitchen recipe ingredient oven temperature minute hour cup spoon salt sugar flour
""".split()
_ONSETS = ("b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr qu r s sc sh sk sl "
           "sm sn sp st str t th tr v w wh y z").split()
_VOWELS = "a e i o u a e i o ai ea ee io ou oa".split()
_CODAS = ("", "", "", "n", "r", "l", "s", "t", "nd", "nt", "rt", "st", "ck", "m", "ng", "x")
_ENDINGS = ("", "", "", "", "tion", "ment", "er", "ing", "ly", "ness", "able", "al", "ive")
VOCABULARY = 4000


def _made_up_word(rng):
    syllables = rng.choice((1, 2, 2, 2, 3))
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(syllables))
    return word + rng.choice(_ENDINGS)


class TextGen:
    """Sentences, headings and titles from a fixed-seed Zipf-ish vocabulary."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        words = list(dict.fromkeys(_COMMON))
        seen = set(words)
        while len(words) < VOCABULARY:
            word = _made_up_word(self.rng)
            if 3 <= len(word) <= 14 and word not in seen:
                seen.add(word)
                words.append(word)
        # The common words stay on top; the made-up ones are shuffled into ranks.
        head, tail = words[:60], words[60:]
        self.rng.shuffle(tail)
        self.words = head + tail
        self.cum = list(itertools.accumulate(1.0 / (rank + 2.7)
                                             for rank in range(len(self.words))))
        # Content words for headings and questions: not the top ranks, not stopwords.
        self.rank = {w: r for r, w in enumerate(self.words)}
        self.content = [w for w in self.words[40:] if w not in index.STOPWORDS]
        self.content_cum = list(itertools.accumulate(
            1.0 / (self.rank[w] + 2.7) for w in self.content))

    def _words(self, n):
        return self.rng.choices(self.words, cum_weights=self.cum, k=n)

    def _content(self, n):
        return self.rng.choices(self.content, cum_weights=self.content_cum, k=n)

    def sentence(self):
        words = self._words(self.rng.randint(6, 20))
        words[0] = words[0].capitalize()
        if self.rng.random() < 0.3:  # a comma now and then
            cut = self.rng.randint(2, len(words) - 2)
            words[cut] += ","
        return " ".join(words) + self.rng.choice(".........?!")

    def heading(self):
        return " ".join(w.capitalize() for w in self._content(self.rng.randint(2, 4)))

    def chunk_text(self, target=900):
        paragraphs, length = [], 0
        while length < target:
            sentences = []
            for _ in range(self.rng.randint(2, 5)):
                sentences.append(self.sentence())
                length += len(sentences[-1]) + 1
                if length >= target:
                    break
            paragraphs.append(" ".join(sentences))
        return "\n\n".join(paragraphs)


def build(data_dir, gen, chunks, pages, keep=0, label="index"):
    """A fresh botlite data dir whose default bot has ``chunks`` chunks over ``pages``
    pages; returns ``keep`` of them, (title, heading, text), spread evenly."""
    started = time.perf_counter()
    app = open_app(data_dir)
    kept = []
    every = max(1, chunks // keep) if keep else 0
    try:
        with app.database.connection_context():
            sites = []
            for s in range(WEBSITES):
                start = "https://docs%d.example.com/" % s
                sites.append(Source.create(
                    id=uuid.uuid4().hex, chatbot=BOT, kind="website", title=start, url=start,
                    status="ready", max_pages=500, max_depth=3))
            per_page, extra = divmod(chunks, pages)
            done = 0
            rows = []
            for p in range(pages):
                count = per_page + (1 if p < extra else 0)
                title = gen.heading()
                if p % 2:  # a page of a website
                    site = sites[p % WEBSITES]
                    url = "%sguide/%s-%d" % (site.url, title.lower().replace(" ", "-"), p)
                    with write_transaction():
                        page = Page.create(source=site.id, url=url, title=title,
                                           content_hash=uuid.uuid4().hex)
                    source = site
                else:  # a document
                    page, url = None, None
                    source = Source.create(
                        id=uuid.uuid4().hex, chatbot=BOT, kind="file", title=title,
                        filename="%s.txt" % title.lower().replace(" ", "_"), file_kind="txt",
                        status="ready", chunk_count=count)
                heading, pieces = None, []
                for position in range(count):
                    if heading is None or gen.rng.random() < 0.2:  # a new section
                        heading = gen.heading()
                    text = gen.chunk_text()
                    pieces.append(TextChunk(text, heading, None, position))
                    if every and (done + position) % every == 0 and len(kept) < keep:
                        kept.append((title, heading, text))
                rows.extend(index.chunk_rows(source, pieces, page=page, url=url, title=title))
                done += count
                if len(rows) >= 5000 or p == pages - 1:
                    with write_transaction():
                        index.insert_chunks(rows)
                    rows = []
            for site in sites:
                Source.update(chunk_count=chunks // 2, page_count=pages // 2 // WEBSITES).where(
                    Source.id == site.id).execute()
            # The clients are one visitor sending far more than a visitor may.
            Chatbot.update(rate_limit_per_minute=0).where(Chatbot.id == BOT).execute()
    finally:
        app.close()
    seconds = time.perf_counter() - started
    log("%s: %d chunks over %d pages in %.1f s", label, chunks, pages, seconds)
    return kept, seconds


# --- questions --------------------------------------------------------------------

_TEMPLATES = (
    "How do I {0} the {1}?",
    "What is the {0} {1}?",
    "Where can I find the {0} for {1} {2}?",
    "Can you tell me about {0} and {1}?",
    "{0} {1} {2}",
    "Why does the {0} {1} when the {2}?",
    "what about {0} {1}",
    "Is there a {0} {1} in the {2}?",
    "I need help with {0} {1} {2}, please.",
    "When should the {0} be {1}?",
)
_OTHERS = (
    "hi", "Hello!", "thanks, that helped", "Thank you so much", "bye",
    "what can you do?", "hi, how are you?",
    "Is it going to rain on the moon next tuesday?",
    "Who won the football world cup in 1966?",
    "asdf qwerty zxcv",
)


def _content_words(gen, text):
    words = []
    for word in re.findall(r"[a-z]+", text.lower()):
        if word not in index.STOPWORDS and gen.rank.get(word, 0) >= 40 and word not in words:
            words.append(word)
    return words


def questions(gen, kept, count, varied_share=0.0):
    """``count`` questions: most from the words of one sentence (and now and then the
    heading) of a kept chunk; ``varied_share`` of them small talk or off-topic."""
    rng = random.Random(SEED + 1)
    out = []
    while len(out) < count:
        if varied_share and rng.random() < varied_share:
            out.append(rng.choice(_OTHERS))
            continue
        title, heading, text = rng.choice(kept)
        sentence = rng.choice(re.split(r"(?<=[.?!])\s+", text))
        words = _content_words(gen, sentence)
        if rng.random() < 0.3:
            words = _content_words(gen, heading)[:1] + words
        if len(words) < 3:
            continue
        picked = rng.sample(words[:8], 3)
        out.append(rng.choice(_TEMPLATES).format(*picked))
    return out


# --- the server and the load ------------------------------------------------------

class Server:
    """``python -m botlite serve --port 0`` on a data dir; ``url`` once it is ready."""

    def __init__(self, data_dir, web_processes=1, semantic="off"):
        self.stderr = open(os.path.join(data_dir, "serve.stderr"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "botlite", "serve", "--port", "0", "--data-dir", data_dir,
             "--log-level", "WARNING", "--web-processes", str(web_processes),
             "--semantic", semantic],
            cwd=_ROOT, env=_clean_environ(), stdout=subprocess.PIPE, stderr=self.stderr,
            text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = None

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def _died(self):
        self.stderr.seek(0)
        return RuntimeError("serve exited with %s: %s" % (self.proc.returncode,
                                                          self.stderr.read()[-2000:]))

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self.url is None:
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not print its ready line in %ss" % timeout)
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise self._died() from None
                continue
            match = re.search(r"is ready: (http://[^/\s]+)", line)
            if match:
                self.url = match.group(1)
        # 200 needs a worker heartbeat, which may come a moment after the ready line.
        with requests.Session() as session:
            while True:
                try:
                    if session.get(self.url + "/healthz", timeout=2).status_code == 200:
                        return self.url
                except requests.RequestException:
                    pass
                if self.proc.poll() is not None:
                    raise self._died()
                if time.monotonic() > deadline:
                    raise RuntimeError("/healthz did not answer 200 within %ss" % timeout)
                time.sleep(0.05)  # polling for the heartbeat

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                log("serve did not stop within 15 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()


def load(clients, duration, warmup, send):
    """``clients`` threads calling ``send(session, client, i) -> result`` for ``warmup``
    then ``duration`` seconds; returns (latencies in ms, results, errors, wall seconds)
    of the measured part, which starts when every client has finished warming up."""
    phase = {}

    def next_phase():  # run by the last thread to reach the barrier
        now = time.perf_counter()
        if "warm_until" not in phase:
            phase["warm_until"] = now + warmup
        else:
            phase["started"], phase["end"] = now, now + duration

    barrier = threading.Barrier(clients, action=next_phase)
    per_client = [None] * clients

    def run(client):
        latencies, results, errors = [], [], []
        with requests.Session() as session:
            i = 0
            barrier.wait()
            while time.perf_counter() < phase["warm_until"]:
                send(session, client, i)
                i += 1
            barrier.wait()
            end = phase["end"]
            while True:
                began = time.perf_counter()
                if began >= end:
                    break
                try:
                    result = send(session, client, i)
                except Exception as exc:  # counted, reported on stderr
                    errors.append(repr(exc))
                else:
                    latencies.append((time.perf_counter() - began) * 1000)
                    results.append(result)
                i += 1
            finished = time.perf_counter()
        per_client[client] = (latencies, results, errors, finished)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if any(p is None for p in per_client):
        raise RuntimeError("a client thread failed (see above)")
    wall = max(p[3] for p in per_client) - phase["started"]
    latencies = [ms for p in per_client for ms in p[0]]
    results = [r for p in per_client for r in p[1]]
    errors = [e for p in per_client for e in p[2]]
    return latencies, results, errors, wall


def _summary(latencies, wall):
    return {"requests": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "rps": round(len(latencies) / wall, 1)}


def measured_load(pid, clients, duration, warmup, send):
    """``load`` plus the CPU the server process (HTTP threads and task workers) and
    this one (the clients) used per request: CPU over the whole call divided by
    every request sent, warm-up included in both."""
    server_cpu, client_cpu = _cpu_s(pid), _cpu_s()
    sent = [0]
    lock = threading.Lock()

    def counted(session, client, i):
        with lock:
            sent[0] += 1
        return send(session, client, i)

    latencies, results, errors, wall = load(clients, duration, warmup, counted)
    server_cpu, client_cpu = _cpu_s(pid) - server_cpu, _cpu_s() - client_cpu
    stats = _summary(latencies, wall)
    stats["errors"] = len(errors)
    stats["server_cpu_ms_per_req"] = round(server_cpu * 1000 / sent[0], 2)
    stats["client_cpu_ms_per_req"] = round(client_cpu * 1000 / sent[0], 2)
    return stats, results, errors


def _rss_mb(pid):
    """The resident memory of process ``pid`` now, in MB (Linux)."""
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run_http(data_dir, chat_questions, clients, duration, warmup, web_processes,
             semantic="off"):
    server = Server(data_dir, web_processes, semantic)
    try:
        base = server.wait_ready()
        log("serving at %s (pid %d)", base, server.proc.pid)

        def healthz(session, client, i):
            reply = session.get(base + "/healthz", timeout=10)
            if reply.status_code != 200:
                raise RuntimeError("/healthz answered %d" % reply.status_code)
            return None

        health, _, _ = measured_load(server.proc.pid, clients, duration, warmup, healthz)
        log("/healthz: %s", health)

        def chat(session, client, i):
            question = chat_questions[(client * 997 + i) % len(chat_questions)]
            body = {"message": question,
                    "session_id": "bench-%d-%d" % (client, i // SESSION_MESSAGES)}
            reply = session.post(base + "/chatbot/message/", json=body, timeout=30)
            if reply.status_code != 200:
                raise RuntimeError("chat answered %d: %s" % (reply.status_code,
                                                              reply.text[:200]))
            data = reply.json()
            return data["answer_source"], data["message_id"]

        chat_stats, results, errors = measured_load(server.proc.pid, clients, duration,
                                                    warmup, chat)
        after = requests.get(base + "/healthz", timeout=10).json()
        chat_stats["server_rss_mb"] = _rss_mb(server.proc.pid)
        counts = collections.Counter(source for source, _ in results)
        chat_stats["answer_sources"] = {k: round(v / len(results), 3)
                                        for k, v in counts.most_common()}
        chat_stats["queue_pending_after"] = after.get("queue", {}).get("pending")
        for error in collections.Counter(errors).most_common(5):
            log("chat error x%d: %s", error[1], error[0])
        log("chat: %s", chat_stats)
    finally:
        server.stop()

    measured = {message_id for _, message_id in results}
    app = open_app(data_dir)
    try:
        with app.database.connection_context():
            server_ms = [m.latency_ms for m in Message.select(Message.id, Message.latency_ms)
                         .where(Message.role == "bot") if m.id in measured]
    finally:
        app.close()
    if server_ms:
        chat_stats["server_reply_p50_ms"] = round(statistics.median(server_ms), 2)
    return chat_stats, health


# --- retrieval only and the in-process profile ---------------------------------------

def time_search(data_dir, qs, warmup, profile=False, semantic="off"):
    """``index.search`` of ``qs[warmup:]`` in one connection after ``qs[:warmup]``;
    then the same with a fresh connection per search (as each web request has)."""
    app = open_app(data_dir, semantic)
    try:
        with app.database.connection_context():
            for question in qs[:warmup]:
                index.search(BOT, question, 5)
            times, empty = [], 0
            for question in qs[warmup:]:
                began = time.perf_counter()
                hits = index.search(BOT, question, 5)
                times.append((time.perf_counter() - began) * 1000)
                empty += not hits
        fresh = []
        for question in qs[warmup:]:
            began = time.perf_counter()
            with app.database.connection_context():
                index.search(BOT, question, 5)
            fresh.append((time.perf_counter() - began) * 1000)
        if profile:
            profiler = cProfile.Profile()
            with app.database.connection_context():
                profiler.enable()
                for question in qs[warmup:]:
                    index.search(BOT, question, 5)
                profiler.disable()
    finally:
        app.close()
    slowest = sorted(zip(times, qs[warmup:]), reverse=True)[:5]
    log("slowest searches: %s", "; ".join("%.1f ms %r" % pair for pair in slowest))
    if profile:
        log("cProfile of %d searches, one connection:", len(times))
        _print_profile(profiler, 25, 15)
    return {"questions": len(times), "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(_percentile(times, 99), 2), "no_hits": empty,
            "connection_per_search_p50_ms": round(statistics.median(fresh), 2)}


class _Timed:
    """Wraps ``owner.name`` to add each call's duration to ``totals[label]``."""

    def __init__(self, totals, owner, name, label):
        self.totals, self.owner, self.name, self.label = totals, owner, name, label
        self.original = getattr(owner, name)

    def __enter__(self):
        original, totals, label = self.original, self.totals, self.label

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label].append((time.perf_counter() - began) * 1000)

        setattr(self.owner, self.name, timed)

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def _print_profile(profiler, cumulative=40, own=25):
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(cumulative)
    out.write("\n--- by own time ---\n")
    stats.sort_stats("tottime").print_stats(own)
    print(out.getvalue(), file=sys.stderr, flush=True)


def profile_chat(data_dir, chat_questions, n, clients):
    """N chat turns in this process (no HTTP), on stderr: sequential with one shared
    connection; sequential with a connection per turn, as the web layer does, with
    a per-stage table; ``clients`` threads with a connection per turn each (what
    the GIL allows without HTTP and task workers); a cProfile of the second."""
    from contextlib import ExitStack

    from botlite.chat import engine, service

    def turn(i, tag):
        service.chat(app, {"message": chat_questions[i % len(chat_questions)],
                           "session_id": "%s-%d" % (tag, i // SESSION_MESSAGES)})

    def own_connection(i, tag):
        with app.database.connection_context():
            turn(i, tag)

    app = open_app(data_dir)
    try:
        with app.database.connection_context():
            for i in range(20):  # warm-up
                turn(i, "warm")
            began = time.perf_counter()
            for i in range(n):
                turn(i, "shared")
            shared_ms = (time.perf_counter() - began) * 1000 / n

        totals = collections.defaultdict(list)
        stages = [(engine, "detect_intent", "intents (detect_intent)"),
                  (engine, "custom_intents", "intents (custom_intents query)"),
                  (engine, "faq_entries", "faq (faq_entries query)"),
                  (engine, "best_match", "faq (best_match)"),
                  (engine.index, "search", "search (index.search)"),
                  (engine, "compose_answer", "compose_answer"),
                  (service, "chat_bot", "chat_bot (bot query)"),
                  (app.turn_log, "submit", "turn_log.submit (queued; written by its thread)")]
        with ExitStack() as stack:
            for stage in stages:
                stack.enter_context(_Timed(totals, *stage))
            began = time.perf_counter()
            for i in range(n):
                own_connection(i, "own")
            whole = (time.perf_counter() - began) * 1000
        staged = sum(sum(times) for times in totals.values())
        totals["rest (connection open/close, validation, ...)"] = [(whole - staged) / n] * n
        log("in-process service.chat, %d turns: %.2f ms per turn with one shared connection, "
            "%.2f ms with a connection per turn (as the web layer)", n, shared_ms, whole / n)
        log("%-46s %6s %8s %8s %6s", "stage (connection per turn)", "calls", "p50 ms",
            "ms/turn", "share")
        for label, times in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
            log("%-46s %6d %8.3f %8.3f %5.1f%%", label, len(times), statistics.median(times),
                sum(times) / n, 100 * sum(times) / whole)

        latencies = []
        per_thread = max(1, n // clients)

        def client(c):
            for i in range(per_thread):
                t0 = time.perf_counter()
                own_connection(c * 997 + i, "thread%d" % c)
                latencies.append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        log("in-process, %d threads, connection per turn (no HTTP, no task workers): "
            "%.1f turns/s, p50 %.2f ms, p99 %.2f ms", clients, len(latencies) / wall,
            statistics.median(latencies), _percentile(latencies, 99))

        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(n):
            own_connection(i, "profile")
        profiler.disable()
    finally:
        app.close()
    log("cProfile of %d turns, connection per turn:", n)
    _print_profile(profiler)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load for /healthz and again for chat")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--web-processes", type=int, default=1,
                        help="serve --web-processes (for /healthz and chat alike)")
    parser.add_argument("--retrieval-chunks", type=int, default=100000,
                        help="0 skips the retrieval-only part")
    parser.add_argument("--retrieval-questions", type=int, default=300)
    parser.add_argument("--semantic", action="store_true",
                        help="also measure hybrid retrieval (the semantic extra) in the "
                             "same run: chat_hybrid, retrieval_100k_hybrid")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N in-process chat turns (stderr)")
    args = parser.parse_args()
    if args.chunks < args.pages or args.pages < 2 or args.clients < 1 or args.duration <= 0:
        parser.error("need --chunks >= --pages >= 2, --clients >= 1, --duration > 0")

    chat_dir = tempfile.mkdtemp(prefix="botlite-bench-chat-")
    retrieval_dir = tempfile.mkdtemp(prefix="botlite-bench-chat-100k-")
    try:
        gen = TextGen(SEED)
        kept, _ = build(chat_dir, gen, args.chunks, args.pages, keep=500, label="chat index")
        chat_questions = questions(gen, kept, 400, varied_share=0.1)
        chat_stats, health = run_http(chat_dir, chat_questions, args.clients, args.duration,
                                      args.warmup, args.web_processes)
        if args.profile:
            profile_chat(chat_dir, chat_questions, args.profile, args.clients)
        hybrid = None
        if args.semantic:
            add_vectors(chat_dir)
            hybrid_stats, hybrid_health = run_http(chat_dir, chat_questions, args.clients,
                                                   args.duration, args.warmup,
                                                   args.web_processes, "on")
            hybrid = {"chat": hybrid_stats, "healthz": hybrid_health,
                      "server_cpu_vs_bm25": round(hybrid_stats["server_cpu_ms_per_req"] /
                                                  chat_stats["server_cpu_ms_per_req"], 3)}

        retrieval = retrieval_hybrid = None
        if args.retrieval_chunks:
            gen = TextGen(SEED)
            kept, build_s = build(retrieval_dir, gen, args.retrieval_chunks,
                                  max(args.pages, args.retrieval_chunks // 50), keep=500,
                                  label="retrieval index")
            warm = 30
            retrieval_questions = questions(gen, kept, args.retrieval_questions + warm)
            retrieval = dict(chunks=args.retrieval_chunks, **time_search(
                retrieval_dir, retrieval_questions, warm, bool(args.profile)),
                build_s=round(build_s, 1))
            log("retrieval: %s", retrieval)
            if args.semantic:
                add_vectors(retrieval_dir)
                retrieval_hybrid = dict(chunks=args.retrieval_chunks, **time_search(
                    retrieval_dir, retrieval_questions, warm, False, "on"))
                log("retrieval (hybrid): %s", retrieval_hybrid)
    finally:
        shutil.rmtree(chat_dir, ignore_errors=True)
        shutil.rmtree(retrieval_dir, ignore_errors=True)

    ratio = round(chat_stats["rps"] / health["rps"], 3)
    result = {"bench": "chat", "chunks": args.chunks, "pages": args.pages,
              "clients": args.clients, "duration_s": args.duration, "cpus": os.cpu_count(),
              "web_processes": args.web_processes,
              "chat": chat_stats, "healthz": health, "chat_vs_healthz_ratio": ratio,
              "retrieval_100k": retrieval}
    if args.semantic:
        result.update(hybrid=hybrid, retrieval_100k_hybrid=retrieval_hybrid)
    met = {"p50": chat_stats["p50_ms"] <= GOALS["p50_ms"],
           "p99": chat_stats["p99_ms"] <= GOALS["p99_ms"],
           "ratio": ratio >= GOALS["chat_vs_healthz_ratio"]}
    if retrieval:
        met["retrieval_p50"] = retrieval["p50_ms"] <= GOALS["retrieval_p50_ms"]
    if args.semantic:
        met["hybrid_cpu"] = hybrid["server_cpu_vs_bm25"] <= GOALS["hybrid_cpu_vs_bm25"]
        if retrieval_hybrid:
            met["hybrid_retrieval_p50"] = \
                retrieval_hybrid["p50_ms"] <= GOALS["hybrid_retrieval_p50_ms"]
            met["hybrid_retrieval_p99"] = \
                retrieval_hybrid["p99_ms"] <= GOALS["hybrid_retrieval_p99_ms"]
    result["goals_met"] = met
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
