"""Kill -9 soak of botlite's "accepted means kept" promise. Prints one JSON line
(progress on stderr).

Each phase runs real processes on a fresh data dir, with a signed webhook receiver
(a threaded http.server on 127.0.0.1 in this script, answering 200 and recording
every delivery) and this load while processes are killed:

- ``--rate`` (25) ``send_notification`` tasks per second through ``POST /api/tasks``,
  each with its own title (so deduplication never merges two requests);
- ``--uploads`` (70) small distinct Markdown / text files (deterministic, every
  10th one larger) spread over the phase, to the default bot's sources endpoint.

A request is *accepted* when it gets its 202 (an upload also when the server
answers 200 "duplicate": it says it already has that file). Connection errors
while a process is down are expected: the same request is sent again to the new
process until it is accepted; a 5xx is retried a few times (``--max-5xx``), a
4xx never. Phases (``--phases``):

- control (always first): SQLite ``serve``, no kills, ``--control-seconds`` of
  load. It checks the checker (everything below should be 0 here) and its chunks
  are the clean reference the other phases' sources are compared with.
- sqlite: one ``serve`` on SQLite, SIGKILLed ``--kills`` (30) times 1-4 s apart
  (seeded), restarted each time on the same data dir (new port, read from its
  ready line); after each kill, and at the end, ``pragma integrity_check`` of
  botlite.db and queue.db and the FTS5 integrity check of ``chunk_index``.
  ``--aim tasks|uploads`` times each kill to land while such a request is in
  flight (the crash windows inside a request are milliseconds wide: random kills
  rarely hit them).
- redis / postgresql: the app database on a fresh PostgreSQL database,
  ``serve --no-worker`` plus 2 ``worker`` processes sharing the data dir and the
  admin token, the queue on Redis (``--redis-url``, flushed first) or on another
  fresh PostgreSQL database; ``--worker-kills`` (10) SIGKILLs of a worker,
  alternating, each restarted.

Only the killed process's pid gets SIGKILL (its task children must exit by
themselves; any still there after 5 s are counted in ``orphans_after_kill`` and
killed). After the last kill: restart, stop the load, wait (``--drain-timeout``)
until no task is PENDING, STARTED or RETRY, stop the processes (SIGTERM) and
count from the API and the app database:

- accepted_lost: accepted notification requests with no notification row;
- stored_duplicates: extra rows for one request (rows per title above 1);
- webhook_repeats / webhook_missing: POSTs beyond the first per notification
  (allowed: at-least-once, same X-Botlite-Delivery id), notifications never POSTed;
- dead_letters (FAILURE states), dead_letters_lock ("identical task is running");
- http_5xx (any endpoint), conn_refused / conn_reset / timeouts apart;
- sources_not_ready, sources_chunk_mismatch (of the ready ones: the current
  generation's chunk count and texts' hash against the control's),
  sources_multiple_generations;
- stuck: tasks still unfinished at the end; integrity (SQLite).

``goals_met`` has one boolean per goal and phase. Everything started is stopped and
every temp dir and database removed at the end, also on Ctrl-C.

    python bench/soak.py [--quick] [--phases sqlite,redis,postgresql] [--kills 30]
                         [--worker-kills 10] [--uploads 70] [--rate 25] [--seed 1]
                         [--aim none|tasks|uploads] [--keep]
"""
import os
import sys

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's queue.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
ROOT = os.path.dirname(_HERE)
sys.path.insert(0, ROOT)  # this checkout's botlite

import argparse  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import requests  # noqa: E402

from botlite.webhooks import verify  # noqa: E402

READY = re.compile(r"is ready: (http://[^/\s]+)/(?:\?token=(\S+))?")
WORKER_READY = re.compile(r"worker is running")
UNFINISHED = ("PENDING", "STARTED", "RETRY")
USER = "soak"
LOCK_WORDS = ("identical task is running", "TaskLocked")
ABORT = threading.Event()  # Ctrl-C / SIGTERM: every loop and wait stops


def log(message, *args):
    print("soak: " + (message % args if args else message), file=sys.stderr, flush=True)


def pause(seconds):
    """Sleep unless aborted; raise KeyboardInterrupt when aborted."""
    if ABORT.wait(max(0.0, seconds)):
        raise KeyboardInterrupt


# -- what gets cleaned up --------------------------------------------------------------

class Cleanup:
    def __init__(self):
        self.procs, self.dirs, self.servers = [], [], []
        self.pg_dbs, self.redis_urls = [], []
        self.pg_admin = None
        self.keep = False

    def run(self):
        for proc in list(self.procs):
            proc.kill_group()
        for server in self.servers:
            try:
                server.stop()
            except Exception:
                pass
        for url in self.redis_urls:
            try:
                import redis
                redis.Redis.from_url(url).flushdb()
            except Exception as exc:
                log("could not flush %s: %r", url, exc)
        for name in self.pg_dbs:
            try:
                pg_admin(self.pg_admin, "drop database if exists %s with (force)" % name)
            except Exception as exc:
                log("could not drop database %s: %r", name, exc)
        for path in self.dirs:
            if self.keep:
                log("kept %s", path)
            else:
                shutil.rmtree(path, ignore_errors=True)


CLEANUP = Cleanup()


def pg_admin(admin_url, sql):
    import psycopg
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


def with_database(url, name):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


# -- processes -------------------------------------------------------------------------

def _process_table():
    """{pid: (state, pgrp)} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            table[int(entry)] = (fields[0], int(fields[2]))
        except (OSError, IndexError, ValueError):
            pass
    return table


class Proc:
    """A botlite command in its own session (process group = its pid); stdout lines
    are queued for the ready line, stdout and stderr go to a log file."""

    def __init__(self, label, args, env, log_path, ready):
        self.label, self.ready, self.log_path = label, ready, log_path
        self.log = open(log_path, "ab")
        self.log.write(("\n=== %s: %s\n" % (label, " ".join(args))).encode())
        self.log.flush()
        self.started = time.monotonic()
        self.popen = subprocess.Popen([sys.executable, "-m", "botlite", *args], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=self.log,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid
        CLEANUP.procs.append(self)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.popen.stdout:
            self.lines.put(raw.decode("utf-8", "replace"))
            try:
                self.log.write(raw)
                self.log.flush()
            except ValueError:
                break

    def wait_ready(self, timeout=60.0):
        """The ready line's match, and seconds since the start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ABORT.is_set():
                raise KeyboardInterrupt
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None:
                    raise RuntimeError("%s exited with %s before it was ready (log: %s)"
                                       % (self.label, self.popen.returncode, self.log_path))
                continue
            match = self.ready.search(line)
            if match:
                return match, time.monotonic() - self.started
        raise RuntimeError("%s printed no ready line within %ss" % (self.label, timeout))

    def group(self):
        return [pid for pid, (state, pgrp) in _process_table().items()
                if pgrp == self.pid and state != "Z"]

    def kill9(self, grace=5.0):
        """SIGKILL the process itself; wait up to ``grace`` s for the rest of its group
        (task children) to exit by themselves. Returns how many had to be killed."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)
        deadline = time.monotonic() + grace
        left = self.group()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.group()
        if left:
            log("%s: %d process(es) of the group still there %.0fs after the kill: %s",
                self.label, len(left), grace, left)
            self.kill_group()
        self._forget()
        return len(left)

    def terminate(self, timeout=30.0):
        """SIGTERM, wait; SIGKILL the group if it does not stop. Returns its exit code
        (None when it had to be killed)."""
        code = None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                code = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s did not stop within %ss of SIGTERM: killed", self.label, timeout)
        else:
            code = self.popen.returncode
        self.kill_group()
        self._forget()
        return code

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def _forget(self):
        if self in CLEANUP.procs:
            CLEANUP.procs.remove(self)
        try:
            self.log.close()
        except Exception:
            pass


def base_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTLITE_")}
    env.update(PYTHONUNBUFFERED="1", BOTLITE_LOG_LEVEL="INFO")
    env.update(extra)
    return env


# -- the webhook receiver ----------------------------------------------------------------

class Receiver:
    """Records every POST: (X-Botlite-Delivery, the body's id, signature valid)."""

    def __init__(self, secret):
        self.secret = secret
        self.lock = threading.Lock()
        self.posts = []
        self.partial = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request
                    with receiver.lock:
                        receiver.partial += 1
                    return
                try:
                    note_id = str(json.loads(body).get("id"))
                except (ValueError, AttributeError):
                    note_id = None
                good = verify(receiver.secret, self.headers.get("X-Botlite-Signature", ""),
                              body)
                with receiver.lock:
                    receiver.posts.append((self.headers.get("X-Botlite-Delivery"), note_id,
                                           good))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()
        CLEANUP.servers.append(self)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        if self in CLEANUP.servers:
            CLEANUP.servers.remove(self)

    def snapshot(self):
        with self.lock:
            return list(self.posts)


# -- HTTP with counts ------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.Counter()   # (endpoint, status)
        self.errors = collections.Counter()     # kind

    def status(self, endpoint, code):
        with self.lock:
            self.statuses[(endpoint, code)] += 1

    def error(self, kind):
        with self.lock:
            self.errors[kind] += 1

    def summary(self):
        with self.lock:
            by_5xx = collections.Counter()
            n4xx = 0
            for (endpoint, code), n in self.statuses.items():
                if code >= 500:
                    by_5xx["%s %d" % (endpoint, code)] += n
                elif code >= 400:
                    n4xx += n
            return {"http_5xx": sum(by_5xx.values()), "http_5xx_by_endpoint": dict(by_5xx),
                    "http_4xx": n4xx, "conn_refused": self.errors["refused"],
                    "conn_reset": self.errors["reset"], "timeouts": self.errors["timeout"],
                    "conn_other": self.errors["other"]}


def _error_kind(exc):
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    text = repr(exc)
    if "refused" in text.lower():
        return "refused"
    if any(w in text for w in ("reset", "RemoteDisconnected", "aborted", "BrokenPipe",
                               "IncompleteRead", "ProtocolError")):
        return "reset"
    return "other"


def call(stats, endpoint, method, url, token, **kwargs):
    """(status, json body or None, error kind or None)."""
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        answer = requests.request(method, url, headers=headers, timeout=(3, 20), **kwargs)
    except requests.exceptions.RequestException as exc:
        kind = _error_kind(exc)
        stats.error(kind)
        return None, None, kind
    stats.status(endpoint, answer.status_code)
    try:
        body = answer.json()
    except ValueError:
        body = None
    return answer.status_code, body, None


class Target:
    """Where the API answers now (a restart moves it to a new port)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.base = self.token = None

    def set(self, base, token):
        with self.lock:
            self.base, self.token = base, token

    def get(self):
        with self.lock:
            return self.base, self.token


# -- the load ----------------------------------------------------------------------------

WORDS = ("shipping order refund invoice parcel warehouse courier delivery address "
         "customer account password login widget manual battery charger screen cable "
         "warranty repair return label tracking number payment card bank transfer "
         "discount coupon voucher subscription plan upgrade downgrade cancel renew "
         "support ticket agent hours weekend holiday europe norway sweden germany "
         "france spain italy express standard freight customs duty tax receipt "
         "printer scanner router modem firmware update reset settings backup restore "
         "calendar meeting schedule reminder notification email phone message chat "
         "bot answer question guide tutorial install configure network wireless "
         "bluetooth speaker headphone microphone camera lens tripod memory storage").split()


def make_files(n, seed):
    """``n`` distinct deterministic files: (name, bytes, content type)."""
    files = []
    for k in range(n):
        rng = random.Random(seed * 1000003 + k)
        markdown = k % 2 == 0
        count = rng.randint(150, 250) if k % 10 == 9 else rng.randint(4, 16)
        out = ["# Soak document %d" % k if markdown else "Soak document %d" % k, ""]
        for p in range(count):
            if markdown and p % 4 == 0:
                out += ["## Section %d.%d %s" % (k, p, rng.choice(WORDS)), ""]
            sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
                         .capitalize() + "." for _ in range(rng.randint(2, 6))]
            out += [" ".join(sentences) + " (document %d, paragraph %d)" % (k, p), ""]
        files.append(("soak-doc-%03d%s" % (k, ".md" if markdown else ".txt"),
                      "\n".join(out).encode("utf-8"),
                      "text/markdown" if markdown else "text/plain"))
    return files


class Req:
    __slots__ = ("key", "accepted", "task_id", "source_id", "duplicate", "attempts",
                 "gave_up")

    def __init__(self, key):
        self.key, self.accepted, self.task_id, self.source_id = key, False, None, None
        self.duplicate, self.attempts, self.gave_up = False, [], None


class Load:
    """Notifications at ``rate`` per second from a producer, sent by ``senders``
    threads; uploads one after another, ``interval`` s apart (all at once after
    ``stop``). Every request is retried until accepted (see the module doc)."""

    def __init__(self, phase, target, stats, rate, files, interval, max_5xx, senders=8):
        self.phase, self.target, self.stats = phase, target, stats
        self.rate, self.files, self.interval, self.max_5xx = rate, files, interval, max_5xx
        self.notes, self.uploads = [], []
        self.inflight = collections.Counter()  # kind -> requests being sent now
        self.inflight_lock = threading.Lock()
        self.todo = queue.Queue()
        self.stopping = threading.Event()
        self.deadline = float("inf")
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._upload_all, daemon=True)]
        self.senders = [threading.Thread(target=self._send, daemon=True)
                        for _ in range(senders)]

    def start(self):
        self.t0 = time.monotonic()
        for thread in self.threads + self.senders:
            thread.start()

    def stop(self, grace):
        """Stop producing; give unaccepted requests ``grace`` more seconds."""
        self.stopping.set()
        self.threads[0].join()
        self.load_s = time.monotonic() - self.t0
        # Uploads not sent yet go now (no more spacing); queued notifications are
        # still sent; every request not accepted within ``grace`` s is given up.
        self.deadline = time.monotonic() + grace
        for _ in self.senders:
            self.todo.put(None)
        for thread in self.senders + self.threads[1:]:
            thread.join(max(0.0, self.deadline - time.monotonic()) + 30)

    def _produce(self):
        i = 0
        while not self.stopping.is_set() and not ABORT.is_set():
            due = self.t0 + i / self.rate
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                break
            req = Req("soak %s #%05d" % (self.phase, i))
            self.notes.append(req)
            self.todo.put(req)
            i += 1

    def _send(self):
        while not ABORT.is_set():
            req = self.todo.get()
            if req is None:
                return
            kwargs = {"user_id": USER, "title": req.key,
                      "message": "Soak test notification %s, deterministic text." % req.key}
            self._submit(req, "tasks", lambda base, token: call(
                self.stats, "POST /api/tasks", "POST", base + "/api/tasks", token,
                json={"name": "send_notification", "kwargs": kwargs}))

    def _upload_all(self):
        for k, (name, content, content_type) in enumerate(self.files):
            if ABORT.is_set():
                return
            due = self.t0 + k * self.interval
            self.stopping.wait(max(0.0, due - time.monotonic()))
            req = Req(name)
            self.uploads.append(req)
            self._submit(req, "uploads", lambda base, token: call(
                self.stats, "POST /api/chatbots/default/sources", "POST",
                base + "/api/chatbots/default/sources", token,
                files={"file": (name, content, content_type)}))

    def busy(self, kind):
        with self.inflight_lock:
            return self.inflight[kind] > 0

    def _submit(self, req, kind, attempt):
        fivexx = 0
        while not ABORT.is_set():
            if time.monotonic() > self.deadline:
                req.gave_up = "deadline"
                return
            base, token = self.target.get()
            with self.inflight_lock:
                self.inflight[kind] += 1
            try:
                status, body, error = attempt(base, token)
            finally:
                with self.inflight_lock:
                    self.inflight[kind] -= 1
            req.attempts.append(error or status)
            if error:
                time.sleep(0.25)
                continue
            body = body if isinstance(body, dict) else {}
            if status == 202 or (status == 200 and body.get("duplicate")):
                req.accepted = True
                req.task_id = body.get("task_id")
                req.source_id = body.get("source_id")
                req.duplicate = status == 200
                return
            if status >= 500:
                fivexx += 1
                if fivexx >= self.max_5xx:
                    req.gave_up = "http %d" % status
                    return
                time.sleep(min(2.0, 0.25 * 2 ** fivexx))
                continue
            req.gave_up = "http %d" % status  # 4xx: the request itself is refused
            return


# -- checks ------------------------------------------------------------------------------

def sqlite_integrity(data_dir):
    """integrity_check of botlite.db and queue.db, FTS5 integrity-check of chunk_index
    (run while no botlite process uses the files)."""
    result = {}
    for name in ("botlite.db", "queue.db"):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            result[name] = "missing"
            continue
        conn = sqlite3.connect(path, timeout=10)
        try:
            rows = conn.execute("pragma integrity_check").fetchall()
            result[name] = "ok" if rows == [("ok",)] else "; ".join(r[0] for r in rows[:3])
            if name == "botlite.db":
                try:
                    conn.execute("insert into chunk_index(chunk_index) "
                                 "values('integrity-check')")
                    result["chunk_index"] = "ok"
                except sqlite3.DatabaseError as exc:
                    result["chunk_index"] = str(exc)
                conn.rollback()
        except sqlite3.DatabaseError as exc:
            result[name] = str(exc)
        finally:
            conn.close()
    return result


def read_app_db(kind, where):
    """The rows the checks need, from a stopped botlite's app database."""
    queries = {
        "notes": "select id, user_id, title, webhook_status from notification",
        "sources": "select id, filename, status, generation, staging, chunk_count, error "
                   "from source",
        "chunks": "select source_id, generation, position, text from chunk",
    }
    if kind == "sqlite":
        conn = sqlite3.connect("file:%s?mode=ro" % where, uri=True, timeout=10)
        try:
            return {k: conn.execute(q).fetchall() for k, q in queries.items()}
        finally:
            conn.close()
    import psycopg
    with psycopg.connect(where, connect_timeout=10) as conn:
        return {k: conn.execute(q).fetchall() for k, q in queries.items()}


def chunk_sets(rows):
    """{source_id: {generation: [(position, text)]}}."""
    sets = collections.defaultdict(lambda: collections.defaultdict(list))
    for source_id, generation, position, text in rows:
        sets[source_id][generation].append((position, text))
    return sets


def fingerprint(chunks):
    texts = [text for _, text in sorted(chunks)]
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    return len(texts), digest


def task_lists(target, stats):
    """The FAILURE and unfinished task states from the API."""
    base, token = target.get()
    found = {}
    for status in ("FAILURE",) + UNFINISHED:
        code, body, error = call(stats, "GET /api/tasks", "GET", base + "/api/tasks", token,
                                 params={"status": status, "limit": 1000})
        found[status] = body["tasks"] if code == 200 else None
    return found


def drain(target, stats, timeout):
    """Wait until no task is PENDING, STARTED or RETRY. (seconds, drained)."""
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        base, token = target.get()
        busy = 0
        for status in UNFINISHED:
            code, body, error = call(stats, "GET /api/tasks", "GET", base + "/api/tasks",
                                     token, params={"status": status, "limit": 1000})
            busy += len(body["tasks"]) if code == 200 else 1
        if busy == 0:
            return round(elapsed, 1), True
        if elapsed > timeout:
            return round(elapsed, 1), False
        pause(1.0)


def lost_statuses(target, stats, task_ids):
    """How the tasks of lost notifications ended: {status or 'no state': n}."""
    base, token = target.get()
    seen = collections.Counter()
    for task_id in task_ids:
        code, body, _ = call(stats, "GET /api/tasks/{id}", "GET",
                             base + "/api/tasks/" + task_id, token)
        seen[body["status"] if code == 200 else ("no state" if code == 404 else str(code))] += 1
    return dict(seen)


def log_exceptions(paths):
    """Count ERROR lines and the exception lines ending tracebacks in the logs."""
    errors, exceptions = 0, collections.Counter()
    for path in paths:
        try:
            with open(path, errors="replace") as handle:
                in_tb = False
                for line in handle:
                    if " ERROR " in line:
                        errors += 1
                    if line.startswith("Traceback"):
                        in_tb = True
                    elif in_tb and not line.startswith((" ", "\t")) and line.strip():
                        if not line.startswith(("During handling", "The above exception")):
                            exceptions[line.strip()[:140]] += 1
                            in_tb = False
        except OSError:
            pass
    return errors, dict(exceptions.most_common(5))


def evaluate(load, stats, receiver, app_db, lists, lost_by_status, reference):
    notes, sources, chunks = app_db["notes"], app_db["sources"], app_db["chunks"]
    rows_by_title = collections.defaultdict(list)
    for note_id, user_id, title, _ in notes:
        if user_id == USER:
            rows_by_title[title].append(str(note_id))
    accepted = [r for r in load.notes if r.accepted]
    lost = [r for r in accepted if not rows_by_title.get(r.key)]
    not_accepted = [r for r in load.notes if not r.accepted]

    posts = receiver.snapshot()
    by_note = collections.defaultdict(list)
    for delivery, note_id, _ in posts:
        by_note[note_id].append(delivery)
    note_ids = {str(n[0]) for n in notes}
    webhook_status = collections.Counter(str(n[3]) for n in notes)

    failures = lists.get("FAILURE") or []
    unfinished = [t for s in UNFINISHED for t in (lists.get(s) or [])]

    src = {row[0]: row for row in sources}
    sets = chunk_sets(chunks)
    up_accepted = [r for r in load.uploads if r.accepted]
    not_ready, mismatch, multi, status_counts = 0, 0, 0, collections.Counter()
    fingerprints = {}
    for req in up_accepted:
        row = src.get(req.source_id)
        if row is None:
            status_counts["missing"] += 1
            not_ready += 1
            continue
        _, _, status, generation, staging, chunk_count, _ = row
        status_counts[status] += 1
        not_ready += status != "ready"
        generations = sets.get(req.source_id, {})
        multi += len(generations) > 1
        fingerprints[req.key] = fingerprint(generations.get(generation, []))
        if reference is not None and status == "ready":
            mismatch += fingerprints[req.key] != reference.get(req.key)
    accepted_ids = {r.source_id for r in up_accepted}

    result = {
        "requests": len(load.notes), "accepted": len(accepted),
        "not_accepted": len(not_accepted),
        "not_accepted_reasons": dict(collections.Counter(r.gave_up for r in not_accepted)),
        "retried_requests": sum(len(r.attempts) > 1 for r in load.notes),
        "accepted_lost": len(lost), "accepted_lost_task_status": lost_by_status,
        "unaccepted_but_stored": sum(bool(rows_by_title.get(r.key)) for r in not_accepted),
        "stored_duplicates": sum(len(v) - 1 for v in rows_by_title.values() if len(v) > 1),
        "notifications_stored": len(notes),
        "webhook_posts": len(posts),
        "webhook_repeats": sum(len(v) - 1 for k, v in by_note.items() if k in note_ids),
        "webhook_repeated_notifications": sum(len(v) > 1 for k, v in by_note.items()
                                              if k in note_ids),
        "webhook_missing": sum(1 for k in note_ids if k not in by_note),
        "webhook_delivery_id_mismatch": sum(1 for k, v in by_note.items()
                                            if set(v) != {k}),
        "webhook_orphan_posts": sum(len(v) for k, v in by_note.items() if k not in note_ids),
        "webhook_bad_signatures": sum(1 for p in posts if not p[2]),
        "webhook_partial_posts": receiver.partial,
        "webhook_status": dict(webhook_status),
        "dead_letters": len(failures) if lists.get("FAILURE") is not None else None,
        "dead_letters_by_task": dict(collections.Counter(t["name"] for t in failures)),
        "dead_letters_lock": sum(1 for t in failures
                                 if any(w in (t.get("error") or "") for w in LOCK_WORDS)),
        "dead_letters_notification_stored": sum(
            1 for t in failures if t["name"] == "send_notification" and
            rows_by_title.get((t.get("kwargs") or {}).get("title"))),
        "dead_letter_errors": dict(collections.Counter(
            (t.get("error") or "")[:100] for t in failures).most_common(4)),
        "uploads": len(load.uploads), "uploads_accepted": len(up_accepted),
        "uploads_duplicate_answers": sum(r.duplicate for r in up_accepted),
        "uploads_not_accepted_reasons": dict(collections.Counter(
            r.gave_up for r in load.uploads if not r.accepted)),
        "sources_in_db": len(sources),
        "sources_not_accepted_in_db": sum(1 for s in sources if s[0] not in accepted_ids),
        "sources_not_ready": not_ready, "sources_status": dict(status_counts),
        "sources_chunk_mismatch": mismatch if reference is not None else None,
        "sources_multiple_generations": multi,
        "sources_staging_left": sum(1 for s in sources if s[4] is not None),
        "chunks_current": sum(v[0] for v in fingerprints.values()),
        "stuck": len(unfinished),
        "stuck_by_task": dict(collections.Counter("%s %s" % (t["name"], t["status"])
                                                  for t in unfinished)),
    }
    result.update(stats.summary())
    return result, fingerprints


def goals(result, integrity):
    met = {
        "accepted_lost": result["accepted_lost"] == 0,
        "not_accepted": result["not_accepted"] == 0 and not result[
            "uploads_not_accepted_reasons"],
        "stored_duplicates": result["stored_duplicates"] == 0,
        "webhook_missing": result["webhook_missing"] == 0,
        "dead_letters": result["dead_letters"] == 0,
        "http_5xx": result["http_5xx"] == 0,
        "sources_not_ready": result["sources_not_ready"] == 0,
        "sources_chunk_mismatch": not result["sources_chunk_mismatch"],
        "sources_multiple_generations": result["sources_multiple_generations"] == 0,
        "stuck": result["stuck"] == 0,
    }
    if integrity:
        met["integrity"] = result["integrity_failures"] == 0 and all(
            v == "ok" for v in result["integrity_final"].values())
    met["all"] = all(met.values())
    return met


# -- phases ------------------------------------------------------------------------------

def _stats_s(values):
    return (round(statistics.median(values), 2) if values else None,
            round(max(values), 2) if values else None)


def run_phase(name, opts, files, reference, kills):
    """One phase; returns (result dict, chunk fingerprints by file name)."""
    started = time.monotonic()
    scaled = name in ("redis", "postgresql")
    tmp = tempfile.mkdtemp(prefix="botlite-soak-%s-" % name)
    CLEANUP.dirs.append(tmp)
    data_dir = os.path.join(tmp, "data")
    os.makedirs(data_dir)
    secret = "soak-secret-" + secrets.token_hex(12)
    receiver = Receiver(secret)
    extra = {"BOTLITE_DATA_DIR": data_dir, "BOTLITE_WEBHOOK_URL": receiver.url,
             "BOTLITE_WEBHOOK_SECRET": secret, "BOTLITE_ALLOW_PRIVATE_URLS": "1",
             "BOTLITE_WEBHOOK_RETRY_DELAY": "1", "BOTLITE_WEBHOOK_TIMEOUT": "5"}
    app_url = None
    if scaled:
        tag = "botlite_soak_%d_%s" % (os.getpid(), name[:5])
        CLEANUP.pg_dbs.append(tag)
        pg_admin(opts.postgres_url, "create database %s" % tag)
        app_url = with_database(opts.postgres_url, tag)
        if name == "redis":
            import redis
            redis.Redis.from_url(opts.redis_url).flushdb()
            CLEANUP.redis_urls.append(opts.redis_url)
            broker = opts.redis_url
        else:
            CLEANUP.pg_dbs.append(tag + "_q")
            pg_admin(opts.postgres_url, "create database %s_q" % tag)
            broker = with_database(opts.postgres_url, tag + "_q")
        extra.update(BOTLITE_DATABASE_URL=app_url, BOTLITE_BROKER_URL=broker,
                     BOTLITE_ADMIN_TOKEN="soak-" + secrets.token_hex(16))
    env = base_env(extra)
    logs = []

    def log_path(label):
        path = os.path.join(tmp, label + ".log")
        if path not in logs:
            logs.append(path)
        return path

    def start_serve():
        args = ["serve", "--port", "0", "--data-dir", data_dir]
        if scaled:
            args.append("--no-worker")
        last = None
        for _ in range(3):
            proc = Proc("%s serve" % name, args, env, log_path("serve"), READY)
            try:
                match, took = proc.wait_ready()
                return proc, match, took
            except RuntimeError as exc:
                last = exc
                restart_failures.append(str(exc))
                log("%s: %s", name, exc)
                proc.terminate(5)
        raise RuntimeError("%s: serve would not start: %s" % (name, last))

    def start_worker(i):
        for _ in range(3):
            proc = Proc("%s worker%d" % (name, i), ["worker", "--data-dir", data_dir], env,
                        log_path("worker%d" % i), WORKER_READY)
            try:
                return proc, proc.wait_ready()[1]
            except RuntimeError as exc:
                restart_failures.append(str(exc))
                log("%s: %s", name, exc)
                proc.terminate(5)
        raise RuntimeError("%s: worker%d would not start" % (name, i))

    stats, target = Stats(), Target()
    restart_failures, restarts, integrity_log, orphans = [], [], [], 0
    rng = random.Random(opts.seed * 7919 + len(name))
    gaps = [rng.uniform(1.0, 4.0) for _ in range(kills)]
    est = sum(gaps) + kills * (1.0 if scaled else 1.5) if kills else opts.control_seconds
    interval = est / max(1, len(files))
    workers = []
    try:
        serve, match, took = start_serve()
        target.set(match.group(1), match.group(2) or env.get("BOTLITE_ADMIN_TOKEN"))
        if scaled:
            workers = [start_worker(0)[0], start_worker(1)[0]]
        log("%s: running on %s (%d kill(s) planned, load ~%.0fs)", name, match.group(1),
            kills, est)
        load = Load(name, target, stats, opts.rate, files, interval, opts.max_5xx)
        load.start()
        if not kills:
            pause(opts.control_seconds)
        aimed = 0
        for k, gap in enumerate(gaps):
            pause(gap)
            if opts.aim != "none" and not scaled:
                # Kill while such a request is being sent, a seeded 0-30 ms after it
                # is seen in flight (waiting at most 3 s for one).
                deadline = time.monotonic() + 3.0
                while not load.busy(opts.aim) and time.monotonic() < deadline:
                    time.sleep(0.002)
                if load.busy(opts.aim):
                    aimed += 1
                    time.sleep(rng.uniform(0.0, 0.03))
            if scaled:
                i = k % 2
                orphans += workers[i].kill9()
                workers[i], took = start_worker(i)
            else:
                orphans += serve.kill9()
                check = sqlite_integrity(data_dir)
                integrity_log.append(check)
                if any(v != "ok" for v in check.values()):
                    log("%s: integrity after kill %d: %s", name, k + 1, check)
                serve, match, took = start_serve()
                target.set(match.group(1), match.group(2) or env.get("BOTLITE_ADMIN_TOKEN"))
            restarts.append(took)
            if (k + 1) % 5 == 0 or k + 1 == kills:
                done = [r for r in load.notes if r.accepted]
                log("%s: %d/%d kills, %d notifications accepted, %d uploads",
                    name, k + 1, kills, len(done), len(load.uploads))
        load.stop(grace=opts.grace)
        log("%s: load stopped after %.0fs: %d notification requests, %d uploads; draining",
            name, load.load_s, len(load.notes), len(load.uploads))
        drain_s, drained = drain(target, stats, opts.drain_timeout)
        lists = task_lists(target, stats)
        log("%s: drained=%s in %.0fs; reading the results", name, drained, drain_s)
        codes = [w.terminate() for w in workers] + [serve.terminate()]
        workers = []
        app_db_where = app_url or os.path.join(data_dir, "botlite.db")
        app_db = read_app_db("postgresql" if scaled else "sqlite", app_db_where)
        # The lost notifications' tasks: restart the API briefly to ask about them.
        titles = {t for _, u, t, _ in app_db["notes"] if u == USER}
        lost_ids = [r.task_id for r in load.notes if r.accepted and r.key not in titles]
        lost_by_status = {}
        if lost_ids:
            serve, match, _ = start_serve()
            target.set(match.group(1), match.group(2) or env.get("BOTLITE_ADMIN_TOKEN"))
            lost_by_status = lost_statuses(target, stats, lost_ids)
            serve.terminate()
        final = None if scaled else sqlite_integrity(data_dir)
        result, fingerprints = evaluate(load, stats, receiver, app_db, lists,
                                        lost_by_status, reference)
        errors, exceptions = log_exceptions(logs)
        restart_p50, restart_max = _stats_s(restarts)
        head = {"kills": kills, "killed": "worker" if scaled else "serve",
                "load_s": round(load.load_s, 1), "drain_s": drain_s, "drained": drained,
                "restart_s_p50": restart_p50, "restart_s_max": restart_max,
                "restart_failures": len(restart_failures), "orphans_after_kill": orphans}
        if opts.aim != "none" and not scaled and kills:
            head.update(aim=opts.aim, aimed_kills=aimed)
        result = dict(head, **result)
        if not scaled:
            result.update(
                integrity_checks=len(integrity_log),
                integrity_failures=sum(any(v != "ok" for v in c.values())
                                       for c in integrity_log),
                integrity_final=final)
        result.update(stop_exit_codes=codes, server_error_lines=errors,
                      server_exceptions=exceptions,
                      duration_s=round(time.monotonic() - started, 1))
        return result, fingerprints
    finally:
        for w in workers:
            w.kill_group()
        receiver.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a ~2 minute smoke run: 10 serve kills, 4 worker kills, "
                             "20 uploads, shorter waits")
    parser.add_argument("--phases", default="sqlite,redis,postgresql",
                        help="comma-separated: sqlite, redis, postgresql")
    parser.add_argument("--kills", type=int, help="SIGKILLs of serve (sqlite; default 30)")
    parser.add_argument("--worker-kills", type=int,
                        help="SIGKILLs of a worker (redis, postgresql; default 10)")
    parser.add_argument("--uploads", type=int, help="files uploaded per phase (default 70)")
    parser.add_argument("--rate", type=float, default=25.0,
                        help="send_notification requests per second")
    parser.add_argument("--control-seconds", type=float,
                        help="load time of the control phase (default 10)")
    parser.add_argument("--drain-timeout", type=float,
                        help="seconds to wait for the queue to empty (default 180)")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="seconds unaccepted requests keep being retried after the load")
    parser.add_argument("--max-5xx", type=int, default=8,
                        help="5xx answers after which a request is given up")
    parser.add_argument("--aim", choices=("none", "tasks", "uploads"), default="none",
                        help="time each serve kill (sqlite) to land while a POST /api/tasks "
                             "or an upload is in flight, instead of at a random moment")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13",
                        help="a spare Redis database (flushed)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server where databases may be created")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs)")
    opts = parser.parse_args()
    quick = opts.quick
    for field, full, small in (("kills", 30, 10), ("worker_kills", 10, 4), ("uploads", 70, 20),
                               ("control_seconds", 10.0, 5.0), ("drain_timeout", 180.0, 60.0)):
        if getattr(opts, field) is None:
            setattr(opts, field, small if quick else full)
    if quick:
        opts.grace = min(opts.grace, 30.0)
    phases = [p.strip() for p in opts.phases.split(",") if p.strip()]
    unknown = set(phases) - {"sqlite", "redis", "postgresql"}
    if unknown or not phases:
        parser.error("--phases: unknown %s" % ", ".join(sorted(unknown)) if unknown
                     else "--phases: none given")
    if opts.kills < 0 or opts.worker_kills < 0 or opts.uploads < 1 or opts.rate <= 0:
        parser.error("--kills/--worker-kills >= 0, --uploads >= 1, --rate > 0")
    CLEANUP.pg_admin, CLEANUP.keep = opts.postgres_url, opts.keep

    def stop_signal(signum, frame):
        ABORT.set()
        raise KeyboardInterrupt
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_signal)

    started = time.monotonic()
    files = make_files(opts.uploads, opts.seed)
    out = {"bench": "soak", "checkout": ROOT, "quick": quick, "seed": opts.seed,
           "rate": opts.rate, "uploads": opts.uploads, "control": None, "phases": {},
           "goals_met": {}}
    try:
        log("control: no kills, %.0fs of load; its chunks are the reference", opts.control_seconds)
        control, reference = run_phase("control", opts, files, None, 0)
        out["control"] = control
        out["goals_met"]["control"] = goals(control, integrity=True)
        for phase in phases:
            kills = opts.kills if phase == "sqlite" else opts.worker_kills
            result, _ = run_phase(phase, opts, files, reference, kills)
            out["phases"][phase] = result
            out["goals_met"][phase] = goals(result, integrity=phase == "sqlite")
            log("%s: %s", phase, json.dumps(out["goals_met"][phase]))
    except KeyboardInterrupt:
        ABORT.set()
        log("interrupted: cleaning up")
        out["interrupted"] = True
    except Exception as exc:
        ABORT.set()
        log("failed: %r", exc)
        out["error"] = repr(exc)[:300]
    finally:
        ABORT.set()
        CLEANUP.run()
    out["duration_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out), flush=True)
    return 0 if "error" not in out and not out.get("interrupted") else 1


if __name__ == "__main__":
    sys.exit(main())
