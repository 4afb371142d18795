"""The operations journey on a real `python -m botlite serve` process: a chat turn
with feedback, a signed webhook, a health check shown by /healthz, an analytics
report, a backup; then, with the server stopped, `restore`."""
import os
import re
import signal
import subprocess
import sys

import requests

from botlite.app import Botlite
from botlite.models import Chatbot, Message
from botlite.settings import load_settings
from conftest import wait_for
from test_notifications import SECRET, Receiver, _signature_ok
from test_serve import ServeProcess


def test_operations_on_a_real_server(data_dir):
    receiver = Receiver(statuses=[500])
    server = ServeProcess("--port", "0", "--data-dir", data_dir, env={
        "BOTLITE_WEBHOOK_URL": receiver.url, "BOTLITE_WEBHOOK_SECRET": SECRET,
        "BOTLITE_WEBHOOK_RETRY_DELAY": "0.1"})
    try:
        base, token = re.match(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)$",
                               server.ready_url()).groups()
        admin = {"Authorization": "Bearer " + token}

        def task(name, args=()):
            task_id = requests.post(base + "/api/tasks", json={"name": name, "args": list(args)},
                                    headers=admin, timeout=5).json()["task_id"]
            return wait_for(lambda: (lambda t: t if t["status"] in ("SUCCESS", "FAILURE")
                                     else None)(requests.get(base + "/api/tasks/" + task_id,
                                                             headers=admin, timeout=5).json()),
                            timeout=20, message=name)

        answer = requests.post(base + "/chatbot/message/", json={"message": "hello"},
                               timeout=5).json()
        feedback = requests.post(base + "/api/messages/%s/feedback" % answer["message_id"],
                                 json={"helpful": True, "session_id": answer["session_id"]},
                                 timeout=5)
        assert feedback.status_code == 202

        sent = task("send_notification", ["ops", "Hello", "From a real server"])
        assert sent["status"] == "SUCCESS" and sent["attempts"] == 2
        assert [r["status"] for r in receiver.requests] == [500, 200]
        assert _signature_ok(receiver.requests[1])

        checked = task("health_check")
        health = requests.get(base + "/healthz", timeout=5).json()
        assert health["status"] == "ok"
        assert health["last_check"]["checked_at"] == checked["result"]["checked_at"]

        report = requests.get(base + "/api/chatbots/default/analytics?period=7d",
                              headers=admin, timeout=5).json()
        assert report["totals"]["messages"] == 1
        wait_for(lambda: requests.get(base + "/api/chatbots/default/analytics?period=30d",
                                      headers=admin, timeout=5).json()["totals"]["helpful"] == 1,
                 message="the feedback in the report")

        made = task("backup_data")["result"]
        assert os.path.exists(made["app"]["file"]) and os.path.exists(made["queue"]["file"])

        refused = subprocess.run([sys.executable, "-m", "botlite", "restore", made["app"]["file"],
                                  "--data-dir", data_dir], capture_output=True, text=True)
        assert refused.returncode == 2 and "botlite is running" in refused.stderr

        requests.post(base + "/api/chatbots", json={"name": "After the backup"}, headers=admin,
                      timeout=5)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
    finally:
        server.stop()
        receiver.close()

    restored = subprocess.run([sys.executable, "-m", "botlite", "restore", made["app"]["file"],
                               "--data-dir", data_dir], capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    assert "restored the app database" in restored.stdout
    app = Botlite.open(load_settings({"data_dir": data_dir}, environ={}))
    try:
        with app.database.connection_context():
            assert [b.id for b in Chatbot.select()] == ["default"]  # the new bot is gone
            assert Message.select().count() == 2  # the chat turn made before the backup
    finally:
        app.close()
