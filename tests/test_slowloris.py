"""A real `serve` under a slowloris: 500 connections that send a request's header
lines one every 2 seconds and never finish them. Chat keeps answering about as
fast as without them (waitress alone stopped answering at 101 such connections)."""
import selectors
import socket
import statistics
import threading
import time
from urllib.parse import parse_qs, urlsplit

import requests

from conftest import wait_for
from test_serve import ServeProcess

ATTACK_SECONDS = 14.0  # past the 10 s header deadline
ATTACKERS = 500


class Slowloris(threading.Thread):
    """``ATTACKERS`` connections from 127.0.0.2 to the server, each sending one
    header line every 2 s; a connection the server closes is opened again (at
    most once a second each). Bounded by ``ATTACK_SECONDS``."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.opened = self.closed_by_server = self.refused = 0
        self.longest_kept = 0.0
        self.stop = threading.Event()

    def _open(self):
        sock = socket.socket()
        sock.bind(("127.0.0.2", 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        self.opened += 1
        return {"sock": sock, "born": time.monotonic(), "sent": 0}

    def run(self):
        selector = selectors.DefaultSelector()
        slots = [self._open() for _ in range(ATTACKERS)]
        for slot in slots:
            selector.register(slot["sock"], selectors.EVENT_READ, slot)
        deadline = time.monotonic() + ATTACK_SECONDS
        next_line = time.monotonic()
        while time.monotonic() < deadline and not self.stop.is_set():
            for key, _ in selector.select(timeout=0.2):
                slot = key.data
                try:
                    data = slot["sock"].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the server
                    self.closed_by_server += 1
                    self.longest_kept = max(self.longest_kept,
                                            time.monotonic() - slot["born"])
                    selector.unregister(slot["sock"])
                    slot["sock"].close()
                    slot["dead"] = time.monotonic()
            now = time.monotonic()
            for index, slot in enumerate(slots):
                if "dead" in slot and now - slot["dead"] >= 1.0:
                    slots[index] = fresh = self._open()
                    selector.register(fresh["sock"], selectors.EVENT_READ, fresh)
            if now >= next_line:
                next_line = now + 2.0
                for slot in slots:
                    if "dead" in slot:
                        continue
                    line = b"GET / HTTP/1.1\r\nHost: x\r\n" if not slot["sent"] \
                        else b"X-Slow-%d: 1\r\n" % slot["sent"]
                    try:
                        slot["sock"].send(line)
                        slot["sent"] += 1
                    except (BlockingIOError, OSError):
                        pass
        for slot in slots:
            slot["sock"].close()
        selector.close()


def _chat_latencies(base, bot, count, pause=0.1):
    times, failures = [], 0
    for n in range(count):
        started = time.monotonic()
        try:
            reply = requests.post(base + "/chatbot/message/", timeout=10, json={
                "message": "hello there %d" % n, "chatbot_id": bot, "session_id": "probe"})
            if reply.status_code != 200:
                failures += 1
        except requests.RequestException:
            failures += 1
        times.append(time.monotonic() - started)
        time.sleep(pause)  # pacing the probes, not waiting for a condition
    return times, failures


def _p99(times):
    return sorted(times)[max(0, int(len(times) * 0.99) - 1)]


def test_chat_answers_through_a_slowloris_of_500_connections(data_dir):
    server = ServeProcess("--port", "0", "--data-dir", data_dir)
    attack = None
    try:
        url = server.ready_url()
        parts = urlsplit(url)
        base = "%s://%s" % (parts.scheme, parts.netloc)
        token = parse_qs(parts.query)["token"][0]
        made = requests.post(base + "/api/chatbots", timeout=10,
                             headers={"Authorization": "Bearer " + token},
                             json={"name": "Probe", "rate_limit_per_minute": 10000})
        assert made.status_code == 201, made.text
        bot = made.json()["id"]
        before, failed = _chat_latencies(base, bot, 20)
        assert failed == 0
        attack = Slowloris(parts.port)
        attack.start()
        wait_for(lambda: attack.opened >= ATTACKERS, message="the attack's connections")
        during, failed = _chat_latencies(base, bot, 60, pause=0.15)
        attack.join(ATTACK_SECONDS + 10)
        assert failed == 0, "%d of 60 chat requests failed under the attack" % failed
        assert _p99(during) < 10 * _p99(before) + 0.25, (statistics.median(before),
                                                         _p99(before), _p99(during))
        # The header deadline closed the connections it had accepted, and the
        # per-address cap the ones past it.
        assert attack.longest_kept < 13.0 and attack.closed_by_server >= ATTACKERS
    finally:
        if attack is not None:
            attack.stop.set()
        server.stop()


def _limit_in_child(soft, hard):
    import subprocess
    import sys
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d)); "
            "from botlite import cli; print(cli._connection_limit(), "
            "resource.getrlimit(resource.RLIMIT_NOFILE)[0])" % (soft, hard))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return tuple(int(x) for x in done.stdout.split()), done.stderr


def test_the_connection_limit_fits_the_file_descriptor_limit():
    """With a soft limit of 1,024 (systemd's default) 1,000 connections ran accept()
    out of descriptors: a traceback per try, and /healthz stopped answering."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 1200:
        (limit, soft), _ = _limit_in_child(256, min(hard, 4096))
        assert limit == 1000 and soft >= 1200  # the soft limit was raised first
    (limit, soft), log = _limit_in_child(300, 300)  # cannot be raised
    assert (limit, soft) == (100, 300) and "at most 100 connections" in log
