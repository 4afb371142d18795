"""A real `python -m botlite serve` process on a free port."""
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import wait_for


class ServeProcess:
    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "botlite", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})))
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def ready_url(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError("serve exited: %s" % self.proc.stderr.read())
                continue
            match = re.search(r"is ready: (http://\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError("serve printed no URL within %ss" % timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def test_serve_answers_healthz_and_stops_cleanly_on_sigterm(data_dir):
    server = ServeProcess("--port", "0", "--data-dir", data_dir)
    try:
        url = server.ready_url()
        base, token = re.match(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)$", url).groups()
        assert token == open(os.path.join(data_dir, "admin_token")).read().strip()

        health = wait_for(lambda: _get(base + "/healthz"), message="/healthz 200")
        assert health.json()["workers"]["alive"] == 1
        bots = requests.get(base + "/api/chatbots", timeout=5,
                            headers={"Authorization": "Bearer " + token}).json()
        assert [b["id"] for b in bots["chatbots"]] == ["default"]
        # The printed URL logs a browser in and lands on the dashboard.
        session = requests.Session()
        assert "Default bot" in session.get(url, timeout=5).text

        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_serve_no_worker_serves_http_only(data_dir):
    server = ServeProcess("--port", "0", "--data-dir", data_dir, "--no-worker")
    try:
        base = server.ready_url().split("/?")[0]
        health = requests.get(base + "/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["workers"]["alive"] == 0
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=5) == 0
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_and_exit_2(data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "botlite", "serve", "--port", str(port),
                               "--data-dir", data_dir], capture_output=True, text=True,
                              timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "botlite: error: port %d on 127.0.0.1 is already in use: stop the other program "
        "or pick another port with --port" % port)


def test_worker_runs_tasks_for_a_web_only_server(data_dir):
    server = ServeProcess("--port", "0", "--data-dir", data_dir, "--no-worker")
    worker = subprocess.Popen([sys.executable, "-m", "botlite", "worker", "--data-dir",
                               data_dir, "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = server.ready_url().split("/?")[0]
        wait_for(lambda: _get(base + "/healthz"), timeout=15,
                 message="the worker's heartbeat to make /healthz 200")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=5) == 0
        health = requests.get(base + "/healthz", timeout=5)
        assert health.status_code == 503
    finally:
        worker.kill() if worker.poll() is None else None
        server.stop()


def _get(url):
    try:
        response = requests.get(url, timeout=2)
    except requests.ConnectionError:
        return None
    return response if response.status_code == 200 else None


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_serve_with_two_web_processes_shares_the_port_and_stops_both(data_dir):
    import sqlite3
    server = ServeProcess("--port", "0", "--data-dir", data_dir, "--web-processes", "2")
    try:
        base = server.ready_url().split("/?")[0]
        children = wait_for(lambda: _children(server.proc.pid), message="the second process")
        assert len(children) == 1
        ids = []
        for i in range(30):  # a new connection each: either process may answer
            reply = requests.post(base + "/chatbot/message/", timeout=10,
                                  json={"message": "hello", "session_id": "s%d" % (i % 3)})
            assert reply.status_code == 200
            ids.append(reply.json()["message_id"])
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
        assert not os.path.exists("/proc/%d" % children[0]) or \
            open("/proc/%d/stat" % children[0]).read().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        server.stop()
    db = sqlite3.connect(os.path.join(data_dir, "botlite.db"))
    try:
        rows = db.execute("select count(*) from message where id in (%s)" % ",".join(
            "?" * len(ids)), ids).fetchone()[0]
    finally:
        db.close()
    assert rows == 30


def _raw_request(base, raw):
    """Send ``raw`` bytes on a new connection; the status, headers and body read back."""
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        try:
            conn.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed before reading it all (headers too large)
        data = b""
        while True:
            part = conn.recv(65536)
            if not part:
                break
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("raw, status, code, fragment", [
    (b"POST /chatbot/message/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_request", "chunk"),
    (b"POST /chatbot/message/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
     400, "bad_request", "content-length"),
    (b"POST /api/chatbots/default/sources HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 99999999\r\n\r\n", 413, "payload_too_large", "too large"),
    # Just over waitress's 256 KiB of headers: all of it is read before the answer, so
    # closing does not reset the connection (and drop the answer) over unread bytes.
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 262144 + b"\r\n\r\n",
     431, "headers_too_large", "header"),
    (b"POST /chatbot/message/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
     501, "not_implemented", "transfer-encoding"),
])
def test_a_request_the_server_cannot_read_gets_a_json_error(data_dir, raw, status, code,
                                                            fragment):
    server = ServeProcess("--port", "0", "--data-dir", data_dir, "--web-processes", "2",
                          env={"BOTLITE_MAX_UPLOAD_MB": "1"})
    try:
        base = server.ready_url().split("/?")[0]
        wait_for(lambda: _children(server.proc.pid), message="the second process")
        for _ in range(4):  # new connections: either process may answer
            got, headers, body = _raw_request(base, raw)
            assert got == status, body
            assert headers["content-type"] == "application/json"
            assert headers["x-content-type-options"] == "nosniff"
            error = json.loads(body)["error"]
            assert error["code"] == code and fragment in error["message"].lower(), error
    finally:
        server.stop()


def test_web_processes_must_be_at_least_one(data_dir):
    done = subprocess.run([sys.executable, "-m", "botlite", "serve", "--port", "0",
                           "--data-dir", data_dir, "--web-processes", "0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "botlite: error: --web-processes: '0' must be 1 or more")


def test_behind_a_trusted_tls_proxy_the_session_cookie_is_secure(data_dir):
    """--trusted-proxy: waitress believes X-Forwarded-Proto from that address only."""
    for trusted, expect_secure in (("127.0.0.1", True), (None, False)):
        extra = ["--trusted-proxy", trusted] if trusted else []
        server = ServeProcess("--port", "0", "--data-dir", data_dir, "--no-worker", *extra)
        try:
            url = server.ready_url()
            login = requests.get(url, headers={"X-Forwarded-Proto": "https"},
                                 allow_redirects=False, timeout=5)
            assert login.status_code in (302, 303)
            cookie = login.headers["Set-Cookie"].lower()
            assert "botlite_session=" in cookie
            assert ("; secure" in cookie) is expect_secure, (trusted, cookie)
        finally:
            server.stop()
