"""The chat turn log written behind the reply: valid ids, bounded delay, nothing
lost on close or on a graceful stop of a real `serve`, retries while the
database is locked, a turn whose bot is gone dropped alone."""
import os
import signal
import sqlite3
import threading

import pytest
import requests

from botlite.app import Botlite
from botlite.chat import service
from botlite.models import Conversation, Message
from botlite.settings import load_settings
from conftest import wait_for
from test_serve import ServeProcess


def _chat(app, message, session=None, bot_id=None):
    data = {"message": message}
    if session:
        data["session_id"] = session
    with app.database.connection_context():
        return service.chat(app, data, bot_id=bot_id)


def _message(app, message_id):
    with app.database.connection_context():
        return Message.get_or_none(Message.id == message_id)


def test_a_turn_is_written_shortly_after_the_reply_without_flushing(app):
    answer = _chat(app, "hello there")
    row = wait_for(lambda: _message(app, answer["message_id"]), timeout=2,
                   message="the bot's message row")
    assert row.role == "bot" and row.answer_source == "intent" and row.text == answer["reply"]
    assert app.turn_log.pending == 0


def test_turns_from_many_threads_are_all_written_with_their_counts(app):
    answers = []

    def client(n):
        for i in range(10):
            answers.append(_chat(app, "thanks %d" % i, session="s%d" % n))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert app.turn_log.flush()
    with app.database.connection_context():
        assert Message.select().count() == 80
        assert {c.session_id: c.message_count for c in Conversation.select()} == {
            "s0": 20, "s1": 20, "s2": 20, "s3": 20}
        ids = {a["message_id"] for a in answers}
        assert {m.id for m in Message.select().where(Message.role == "bot")} == ids
    queued = app.runner.states(name="process_user_action", limit=1000)
    assert {state["args"][2] for state in queued} == ids  # one analytics task per turn


def test_close_writes_every_queued_turn(settings):
    app = Botlite.open(settings)
    ids = [_chat(app, "hi %d" % i, session="close")["message_id"] for i in range(200)]
    app.close()
    app = Botlite.open(settings)
    try:
        with app.database.connection_context():
            assert Message.select().where(Message.id.in_(ids)).count() == 200
            assert Conversation.get(Conversation.session_id == "close").message_count == 400
    finally:
        app.close()


def test_a_locked_database_delays_the_log_but_loses_nothing(app, settings):
    blocker = sqlite3.connect(os.path.join(settings.data_dir, "botlite.db"),
                              isolation_level=None)
    try:
        blocker.execute("begin immediate")  # another process holding the write lock
        answer = _chat(app, "hello")
        assert app.turn_log.pending == 1 and _message(app, answer["message_id"]) is None
        # The reader endpoints wait for the log: bounded by flush's timeout.
        assert not app.turn_log.flush(timeout=0.2)
    finally:
        blocker.execute("rollback")
        blocker.close()
    assert app.turn_log.flush()
    assert _message(app, answer["message_id"]).role == "bot"


def test_a_turn_whose_bot_was_deleted_is_dropped_alone(app, client):
    client.post("/api/chatbots", {"name": "Gone", "id": "gone"})
    with app.database.connection_context():
        bot = service.chat_bot("gone")
    from botlite.chat.turnlog import Turn
    from botlite.timeutil import utcnow
    client.delete("/api/chatbots/gone")
    app.turn_log.submit(Turn("gone", "s", "u1", "r1", "hi", "hello", "greeting", "intent",
                             1.0, [], 0.5, utcnow()))
    kept = _chat(app, "hi")
    assert bot.name == "Gone" and app.turn_log.flush()
    assert _message(app, "r1") is None
    assert _message(app, kept["message_id"]) is not None


def test_a_graceful_stop_of_serve_loses_no_turn(data_dir):
    server = ServeProcess("--port", "0", "--data-dir", data_dir, "--no-worker")
    try:
        base, token = server.ready_url().split("/?token=")
        # 50 messages from one visitor: over the default bot's 30 per minute.
        requests.patch(base + "/api/chatbots/default", json={"rate_limit_per_minute": 0},
                       headers={"Authorization": "Bearer " + token}, timeout=10)
        ids = []
        with requests.Session() as session:
            for i in range(50):
                reply = session.post(base + "/chatbot/message/", timeout=10,
                                     json={"message": "hello %d" % i, "session_id": "stop"})
                ids.append(reply.json()["message_id"])
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0
    finally:
        server.stop()
    db = sqlite3.connect(os.path.join(data_dir, "botlite.db"))
    try:
        found = db.execute("select count(*) from message where id in (%s)" % ",".join(
            "?" * len(ids)), ids).fetchone()[0]
        count = db.execute("select message_count from conversation where session_id = 'stop'"
                           ).fetchone()[0]
    finally:
        db.close()
    assert found == 50 and count == 100


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request, tmp_path):
    values = {"data_dir": str(tmp_path)}
    if request.param == "postgresql":
        values["database_url"] = request.getfixturevalue("postgres_url")
    app = Botlite.open(load_settings(values, environ={}))
    yield app
    app.close()


def test_the_log_writes_the_same_rows_on_each_database(any_db_app):
    app = any_db_app
    first = _chat(app, "hello", session="one")
    second = _chat(app, "thanks", session="one")
    assert app.turn_log.flush()
    with app.database.connection_context():
        conversation = Conversation.get(Conversation.session_id == "one")
        messages = list(Message.select().where(Message.conversation == conversation.id)
                        .order_by(Message.created_at, Message.role.desc()))
    actions = [s for s in app.runner.states(name="process_user_action", limit=1000)
               if s["args"][1] == "one"]
    assert conversation.message_count == 4 and len(actions) == 2
    assert [(m.role, m.intent) for m in messages] == [
        ("user", None), ("bot", "greeting"), ("user", None), ("bot", "thanks")]
    assert [messages[1].id, messages[3].id] == [first["message_id"], second["message_id"]]
    assert messages[3].sources == "[]" and messages[3].latency_ms >= 0
