"""A real `serve`, stopped in the middle of delivering a notification's webhook
(kill -9, or SIGTERM with the delivery outlasting --shutdown-timeout), then started
again: the notification is stored once and its webhook answered once, by the
re-run of the same task (not refused by that task's own locks and claims)."""
import http.server
import signal
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import wait_for
from test_serve import ServeProcess


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on loopback that holds the first delivery open (a slow
    receiver) and answers the later ones at once."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received, self.answered = [], []
        self.hold_first = threading.Event()  # set: answer the held one too
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        delivery = self.headers["X-Botlite-Delivery"]
        server.received.append(delivery)
        if len(server.received) == 1:
            server.hold_first.wait(60)
            if self._sender_gone():
                return
        try:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")
            self.wfile.flush()
        except OSError:
            return  # the sender is gone
        server.answered.append(delivery)

    def _sender_gone(self):
        """The sender closed the connection (its process ended) while we held it."""
        import socket
        self.connection.setblocking(False)
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.connection.setblocking(True)

    def log_message(self, *args):
        pass


def _api(url):
    parts = urlsplit(url)
    token = parse_qs(parts.query)["token"][0]
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token
    return "%s://%s" % (parts.scheme, parts.netloc), session


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_a_notification_cut_off_mid_delivery_is_delivered_once_after_a_restart(
        data_dir, stop):
    receiver = Receiver()
    env = {"BOTLITE_WEBHOOK_URL": receiver.url, "BOTLITE_WEBHOOK_SECRET": "s" * 24,
           "BOTLITE_ALLOW_PRIVATE_URLS": "1", "BOTLITE_WEBHOOK_RETRY_DELAY": "1",
           "BOTLITE_WEBHOOK_TIMEOUT": "30"}
    args = ("--port", "0", "--data-dir", data_dir, "--shutdown-timeout", "0.5")
    first = ServeProcess(*args, env=env)
    second = None
    try:
        base, api = _api(first.ready_url())
        sent = api.post(base + "/api/tasks", json={
            "name": "send_notification", "args": ["ops", "Disk", "The disk is 90 % full"]})
        assert sent.status_code == 202, sent.text
        task_id = sent.json()["task_id"]
        wait_for(lambda: receiver.received, timeout=30, message="the first delivery")
        first.proc.send_signal(getattr(signal, stop))
        assert first.proc.wait(15) == (0 if stop == "SIGTERM" else -signal.SIGKILL)
        receiver.hold_first.set()

        second = ServeProcess(*args, env=env)
        base, api = _api(second.ready_url())
        task = wait_for(lambda: (lambda t: t if t["status"] in ("SUCCESS", "FAILURE") else
                                 None)(api.get(base + "/api/tasks/" + task_id).json()),
                        timeout=60, message="the re-run to end")
        assert task["status"] == "SUCCESS", task
        assert (task["attempts"], task["reruns"], task["retries"]) == (2, 1, 0), task
        notes = api.get(base + "/api/notifications", params={"user_id": "ops"}).json()
        notes = notes["notifications"]
        assert len(notes) == 1 and notes[0]["webhook"]["status"] == "delivered", notes
        # At least once on the wire, with one delivery id; answered once.
        assert set(receiver.received) == {notes[0]["id"]} and len(receiver.received) == 2
        assert receiver.answered == [notes[0]["id"]]
        dead = api.get(base + "/api/tasks", params={"status": "FAILURE"}).json()["tasks"]
        assert dead == []
    finally:
        receiver.hold_first.set()
        for server in (first, second):
            if server is not None:
                server.stop()
        receiver.shutdown()
        receiver.server_close()
