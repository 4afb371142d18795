"""Notifications: the inbox API, and signed webhook deliveries that happen once."""
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from botlite import notifications, webhooks
from botlite.app import Botlite
from botlite.models import Notification
from botlite.settings import load_settings
from botlite.web.app import create_app
from conftest import WsgiClient, wait_for

SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with the given statuses in turn
    (then 200) and records every request."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append({"headers": dict(self.headers), "body": body,
                                              "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self):
        with self.lock:
            return [r for r in self.requests if r["status"] == 200]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    hook = Receiver()
    yield hook
    hook.close()


def _open(data_dir, **flags):
    settings = load_settings(dict({"data_dir": data_dir, "webhook_retry_delay": 0.05}, **flags),
                             environ={})
    return Botlite.open(settings)


@pytest.fixture
def hooked(data_dir, receiver):
    """An app whose global webhook is the receiver."""
    app = _open(data_dir, webhook_url=receiver.url, webhook_secret=SECRET)
    yield app, WsgiClient(create_app(app), token=app.token)
    app.close()


def _signature_ok(request, secret=SECRET):
    """The receiver's side of the scheme, written out independently of botlite."""
    header = request["headers"]["X-Botlite-Signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = fields["t"].encode() + b"." + request["body"]
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(expected, fields["v1"]) and \
        request["headers"]["X-Botlite-Timestamp"] == fields["t"]


def _task(client, task_id, statuses=("SUCCESS", "FAILURE")):
    return wait_for(lambda: (lambda t: t if t["status"] in statuses else None)(
        client.get("/api/tasks/" + task_id).json), message="task %s to finish" % task_id)


def test_a_failed_first_delivery_is_retried_and_arrives_once_signed(hooked, receiver):
    app, client = hooked
    receiver.statuses = [500]
    runtime = app.runtime(2, schedule=False)
    runtime.start()
    try:
        task_id = client.post("/api/tasks", {"name": "send_notification", "args": [
            "alice", "Backup done", "The nightly backup finished.", "backup"]}).json["task_id"]
        done = _task(client, task_id)
    finally:
        runtime.stop()
    assert done["status"] == "SUCCESS" and done["attempts"] == 2, done
    assert done["queue"] == "notifications"
    assert [r["status"] for r in receiver.requests] == [500, 200]
    delivered = receiver.delivered()[0]
    assert _signature_ok(delivered)
    payload = json.loads(delivered["body"])
    assert payload["event"] == "notification" and payload["user_id"] == "alice"
    assert payload["title"] == "Backup done" and payload["notification_type"] == "backup"
    assert delivered["headers"]["X-Botlite-Delivery"] == payload["id"]
    inbox = client.get("/api/notifications?user_id=alice").json["notifications"]
    assert len(inbox) == 1 and inbox[0]["id"] == payload["id"]
    assert inbox[0]["webhook"]["status"] == "delivered" and inbox[0]["webhook"]["attempts"] == 2

    # A retry of the same task after the delivery (a worker that died before
    # recording SUCCESS): the row is found again and nothing is re-sent.
    with app.database.connection_context():
        again = notifications.send("alice", "Backup done", "The nightly backup finished.",
                                   "backup", task_id=task_id, webhook_url=receiver.url,
                                   webhook_secret=SECRET)
        assert Notification.select().count() == 1
    assert again == {"notification_id": payload["id"], "webhook": "delivered"}
    assert len(receiver.requests) == 2


def test_the_same_notification_enqueued_twice_is_stored_and_delivered_once(hooked, receiver):
    app, client = hooked
    body = {"name": "send_notification", "args": ["bob", "Hi", "Hello there", "info"]}
    first = client.post("/api/tasks", body).json["task_id"]
    second = client.post("/api/tasks", body).json["task_id"]
    runtime = app.runtime(2, schedule=False)
    runtime.start()
    try:
        _task(client, first)
        _task(client, second)
        # Later, another identical enqueue while the first is still remembered.
        third = client.post("/api/tasks", body).json["task_id"]
        _task(client, third)
    finally:
        runtime.stop()
    assert len(client.get("/api/notifications?user_id=bob").json["notifications"]) == 1
    assert len(receiver.requests) == 1 and _signature_ok(receiver.requests[0])


def test_identical_content_from_another_task_within_the_hour_is_the_same_row(hooked, receiver):
    app, _ = hooked
    with app.database.connection_context():
        for task_id in ("t-1", "t-2"):  # the runner's dedup memory had expired, say
            notifications.send("carol", "Hi", "Same words", task_id=task_id,
                               webhook_url=receiver.url, webhook_secret=SECRET)
        notifications.send("carol", "Hi", "Other words", task_id="t-3",
                           webhook_url=receiver.url, webhook_secret=SECRET)
        assert [n.message for n in Notification.select().order_by(Notification.id)] == [
            "Same words", "Other words"]
    assert len(receiver.requests) == 2


def test_a_receiver_that_keeps_failing_leaves_a_dead_letter_and_one_inbox_row(hooked, receiver):
    app, client = hooked
    receiver.statuses = [503] * 10
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        task_id = client.post("/api/tasks", {"name": "send_notification", "args": [
            "dave", "Down", "Nobody listens"]}).json["task_id"]
        done = _task(client, task_id)
    finally:
        runtime.stop()
    assert done["status"] == "FAILURE" and done["attempts"] == 4  # 1 + 3 retries
    assert "HTTP 503" in done["error"]
    inbox = client.get("/api/notifications?user_id=dave").json["notifications"]
    assert len(inbox) == 1 and inbox[0]["webhook"]["status"] == "failed"
    assert inbox[0]["webhook"]["error"] == "the receiver answered HTTP 503"


def test_a_bots_own_webhook_gets_its_notifications(client, app, receiver):
    assert client.patch("/api/chatbots/default", {"webhook_url": receiver.url}).status == 400
    assert client.patch("/api/chatbots/default", {"webhook_url": receiver.url,
                                                  "webhook_secret": "short"}).status == 400
    # A private address is refused when it is saved, and nothing is stored...
    refused = client.patch("/api/chatbots/default", {"webhook_url": receiver.url,
                                                     "webhook_secret": SECRET})
    assert refused.status == 400 and refused.json["error"]["code"] == "unsafe_url"
    assert "127.0.0.1 is a private or reserved address" in refused.json["error"]["message"]
    assert "BOTLITE_ALLOW_PRIVATE_URLS" in refused.json["error"]["message"]
    assert client.get("/api/chatbots/default").json["webhook_url"] is None
    # ...unless private addresses are allowed (then delivery checks it again).
    app.settings.allow_private_urls = True
    try:
        bot = client.patch("/api/chatbots/default", {"webhook_url": receiver.url,
                                                     "webhook_secret": SECRET})
    finally:
        app.settings.allow_private_urls = False
    assert bot.status == 200 and bot.json["webhook_url"] == receiver.url
    # Sending the saved URL back unchanged (a form saving every field) is not refused.
    renamed = client.patch("/api/chatbots/default", {"name": "Renamed",
                                                     "webhook_url": receiver.url})
    assert renamed.status == 200 and renamed.json["name"] == "Renamed"
    assert bot.json["webhook_secret_set"] is True and "webhook_secret" not in bot.json
    assert SECRET not in client.get("/api/chatbots").text
    from botlite.tasks import context as task_context
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        # A bot's webhook on a private address is refused, never contacted, not retried.
        refused = app.runner.enqueue("send_notification", ["admin", "Bot says", "first"],
                                     {"chatbot_id": "default"})
        failed = _task(client, refused)
        assert (failed["status"], failed["attempts"]) == ("FAILURE", 1)
        assert "private or reserved address" in failed["error"]
        assert receiver.requests == []
        task_context.configure(app.settings.data_dir, True)  # BOTLITE_ALLOW_PRIVATE_URLS=1
        task_id = app.runner.enqueue("send_notification", ["admin", "Bot says", "hi"],
                                     {"chatbot_id": "default"})
        assert _task(client, task_id)["status"] == "SUCCESS"
    finally:
        task_context.configure(app.settings.data_dir, False)
        runtime.stop()
    assert len(receiver.requests) == 1 and _signature_ok(receiver.requests[0])
    assert json.loads(receiver.requests[0]["body"])["chatbot_id"] == "default"
    assert client.patch("/api/chatbots/default", {"webhook_secret": None}).status == 400
    cleared = client.patch("/api/chatbots/default", {"webhook_url": None, "webhook_secret": ""})
    assert cleared.json["webhook_url"] is None and cleared.json["webhook_secret_set"] is False


def _dns(monkeypatch, errno):
    """The resolver answers every name with ``errno`` (no DNS server in CI)."""
    import socket

    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(errno, "lookup failed")
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_bad_webhook_urls_are_refused(client, monkeypatch):
    import socket
    for url in ("ftp://example.com/x", "not a url", "http://"):
        response = client.patch("/api/chatbots/default", {"webhook_url": url,
                                                          "webhook_secret": SECRET})
        assert response.status == 400 and response.json["error"]["code"] == "invalid_field"
    # User info is refused whatever BOTLITE_ALLOW_PRIVATE_URLS says: no hint to set it.
    userinfo = client.patch("/api/chatbots/default", {
        "webhook_url": "http://user:pw@10.1.2.3/x", "webhook_secret": SECRET})
    assert userinfo.json["error"]["code"] == "unsafe_url"
    assert "BOTLITE_ALLOW_PRIVATE_URLS" not in userinfo.json["error"]["message"]
    # An unknown bot is a 404 before any lookup.
    assert client.patch("/api/chatbots/nobody", {
        "webhook_url": "http://10.1.2.3/x", "webhook_secret": SECRET}).status == 404
    _dns(monkeypatch, socket.EAI_NONAME)
    unknown = client.patch("/api/chatbots/default", {
        "webhook_url": "https://no-such-host.invalid/", "webhook_secret": SECRET})
    assert unknown.status == 400 and unknown.json["error"]["code"] == "invalid_url"
    assert "could not be found" in unknown.json["error"]["message"]
    assert client.get("/api/chatbots/default").json["webhook_url"] is None
    # A lookup that fails for now does not stop the save: delivery checks again.
    _dns(monkeypatch, socket.EAI_AGAIN)
    saved = client.patch("/api/chatbots/default", {
        "webhook_url": "https://hooks.example.com/in", "webhook_secret": SECRET})
    assert saved.status == 200 and saved.json["webhook_url"] == "https://hooks.example.com/in"
    created = client.post("/api/chatbots", {
        "name": "Hooked", "webhook_url": "http://10.1.2.3/x", "webhook_secret": SECRET})
    assert created.status == 400 and created.json["error"]["code"] == "unsafe_url"
    assert "Hooked" not in [b["name"] for b in client.get("/api/chatbots").json["chatbots"]]


def test_a_dns_lookup_failing_for_now_at_delivery_is_retried(monkeypatch):
    import socket

    from botlite.runner.core import PermanentError
    from botlite.webhooks import DeliveryFailed
    _dns(monkeypatch, socket.EAI_AGAIN)
    with pytest.raises(DeliveryFailed) as failed:
        notifications.check_webhook_url("https://hooks.example.com/in", False)
    assert not getattr(failed.value, "permanent", False)
    assert not isinstance(failed.value, (PermanentError, notifications.WebhookRefused))
    _dns(monkeypatch, socket.EAI_NONAME)  # no such host: retrying cannot help
    with pytest.raises(notifications.WebhookRefused) as refused:
        notifications.check_webhook_url("https://hooks.example.com/in", False)
    assert refused.value.permanent


def test_without_a_webhook_only_the_inbox_row_is_made(client, app, worker):
    task_id = app.runner.enqueue("send_notification", ["erin", "Quiet", "No hooks"])
    assert _task(client, task_id)["result"]["webhook"] == "none"
    note = client.get("/api/notifications?user_id=erin").json["notifications"][0]
    assert note["webhook"] is None and note["read"] is False


def test_bad_arguments_fail_at_once_without_retries(client, app, worker):
    task_id = app.runner.enqueue("send_notification", ["", "t", "m"])
    done = _task(client, task_id)
    assert done["status"] == "FAILURE" and done["attempts"] == 1
    assert "user_id must be a non-empty string" in done["error"]


def test_verify_accepts_the_signature_and_refuses_changes_and_old_ones():
    body = b'{"a":1}'
    header = webhooks.sign(SECRET, int(time.time()), body)
    assert webhooks.verify(SECRET, header, body)
    assert not webhooks.verify(SECRET, header, b'{"a":2}')
    assert not webhooks.verify("another-secret-value", header, body)
    assert not webhooks.verify(SECRET, webhooks.sign(SECRET, int(time.time()) - 3600, body), body)
    assert not webhooks.verify(SECRET, "garbage", body)
    for header in ("t=123", "t=x,v1=ab", "t=%d,v1=\u00e9\u00e9" % int(time.time()), "", "v1=ab"):
        assert not webhooks.verify(SECRET, header, body)


def test_the_webhook_setting_needs_a_secret(data_dir):
    from botlite.settings import SettingsError
    with pytest.raises(SettingsError, match="BOTLITE_WEBHOOK_SECRET"):
        load_settings(environ={"BOTLITE_WEBHOOK_URL": "http://127.0.0.1:9/x"})
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings(environ={"BOTLITE_WEBHOOK_URL": "http://127.0.0.1:9/x",
                               "BOTLITE_WEBHOOK_SECRET": "short"})


# -- the inbox API ---------------------------------------------------------------------

def _note(app, user, title):
    with app.database.connection_context():
        return str(Notification.create(user_id=user, title=title, message="m").id)


def test_mark_read_unread_filter_and_mark_all_read(client, app):
    first, second = _note(app, "frank", "one"), _note(app, "frank", "two")
    other = _note(app, "gina", "three")
    read = client.post("/api/notifications/%s/read" % first)
    assert read.status == 200 and read.json["read"] is True and read.json["read_at"]
    unread = client.get("/api/notifications?user_id=frank&unread=true").json["notifications"]
    assert [n["id"] for n in unread] == [second]
    marked = client.post("/api/notifications/read-all", {"user_id": "frank"})
    assert marked.json == {"user_id": "frank", "marked": 1}
    assert client.get("/api/notifications?user_id=frank&unread=1").json["notifications"] == []
    assert client.get("/api/notifications?user_id=gina&unread=1").json["notifications"][0][
        "id"] == other


@pytest.mark.parametrize("method, path, body, status, code", [
    ("POST", "/api/notifications/999/read", None, 404, "not_found"),
    ("POST", "/api/notifications/abc/read", None, 404, "not_found"),
    ("POST", "/api/notifications/read-all", {}, 400, "invalid_field"),
    ("POST", "/api/notifications/read-all", {"user_id": "x", "all": True}, 400, "invalid_field"),
    ("GET", "/api/notifications?unread=maybe", None, 400, "invalid_field"),
])
def test_inbox_errors(client, method, path, body, status, code):
    response = client.request(method, path, json_body=body)
    assert response.status == status and response.json["error"]["code"] == code


def test_inbox_endpoints_need_the_token(client):
    for method, path in (("GET", "/api/notifications"), ("POST", "/api/notifications/1/read"),
                         ("POST", "/api/notifications/read-all")):
        assert client.request(method, path, auth=False).status == 401


def test_a_slow_or_absent_receiver_fails_the_attempt():
    import socket
    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self):
            release.wait(10)  # answers only when the test is over

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/" % server.server_address[1]
        started = time.monotonic()
        with pytest.raises(webhooks.DeliveryFailed, match="did not answer within 0.3s"):
            webhooks.deliver(url, SECRET, {"event": "notification"}, "1", 0.3)
        assert time.monotonic() - started < 3
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d/" % sock.getsockname()[1]
    with pytest.raises(webhooks.DeliveryFailed, match="cannot reach the receiver"):
        webhooks.deliver(closed, SECRET, {"event": "notification"}, "1", 2)


def test_once_semantics_and_the_inbox_on_postgresql(tmp_path, postgres_url, receiver):
    app = Botlite.open(load_settings({"data_dir": str(tmp_path), "database_url": postgres_url},
                                     environ={}))
    try:
        with app.database.connection_context():
            for task_id in ("t-1", "t-1", "t-2"):
                notifications.send("pat", "Hi", "Once", task_id=task_id,
                                   webhook_url=receiver.url, webhook_secret=SECRET)
            for _ in range(2):
                notifications.send("pat", "Ready", "Keyed", dedup_key="k-1",
                                   webhook_url=receiver.url, webhook_secret=SECRET)
            assert Notification.select().count() == 2
            assert notifications.list_for("pat", None, "true")[0]["webhook"]["status"] == \
                "delivered"
            assert notifications.mark_all_read({"user_id": "pat"})["marked"] == 2
            assert notifications.list_for("pat", None, "1") == []
    finally:
        app.close()
    assert len(receiver.requests) == 2 and all(_signature_ok(r) for r in receiver.requests)


def test_a_repeat_of_a_read_notification_is_a_new_one(app):
    from botlite import notifications
    with app.database.connection_context():
        first = notifications.store("ops", "Backup failed", "disk full")
        assert notifications.store("ops", "Backup failed", "disk full").id == first.id
        notifications.mark_read(str(first.id))
        again = notifications.store("ops", "Backup failed", "disk full")
        assert again.id != first.id and again.read is False


def test_the_verifier_in_the_docs_agrees_with_the_code():
    import os
    import re
    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "operations.md")).read()
    snippet = re.search(r"\n(    import hashlib, hmac, time\n.*?)\n\n\(", docs, re.S).group(1)
    namespace = {}
    exec(re.sub(r"(?m)^    ", "", snippet), namespace)
    body, now = b'{"a":1}', int(time.time())
    for header in (webhooks.sign(SECRET, now, body), webhooks.sign(SECRET, now - 3600, body),
                   webhooks.sign("another-secret-value", now, body), "garbage", "t=123",
                   "t=x,v1=ab", "t=%d,v1=\u00e9" % now, ""):
        assert namespace["verify"](SECRET, header, body) == webhooks.verify(SECRET, header, body)


def test_an_unexpected_error_while_posting_frees_the_delivery_claim(app, monkeypatch):
    from botlite import notifications
    from botlite.models import Notification

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the middle of the POST")

    monkeypatch.setattr(notifications, "deliver", broken)
    with app.database.connection_context():
        note = notifications.store("ops", "Title", "Body", webhook=True)
        with pytest.raises(RuntimeError):
            notifications.deliver_once(note.id, ("http://203.0.113.9/hook", SECRET, False), 1.0)
        assert Notification.get_by_id(note.id).delivery_claimed_until is None
