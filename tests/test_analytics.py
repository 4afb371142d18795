"""Analytics: daily rollups from known messages, period reports and their cache,
feedback on replies."""
import datetime
import json
import uuid

import pytest

from botlite import analytics
from botlite.models import (AnalyticsDaily, AnalyticsReport, Chatbot, Conversation, Message,
                            UserAction)
from botlite.timeutil import utcnow
from conftest import wait_for

TODAY = utcnow().date()
D2 = TODAY - datetime.timedelta(days=2)
D1 = TODAY - datetime.timedelta(days=1)


def _at(day, hour, minute=0):
    return datetime.datetime.combine(day, datetime.time(hour, minute))


def turn(session, question, source, at, latency, intent="question", bot="default"):
    conversation = Conversation.get_or_none((Conversation.chatbot == bot) &
                                            (Conversation.session_id == session))
    if conversation is None:
        conversation = Conversation.create(id=uuid.uuid4().hex, chatbot=bot, session_id=session,
                                           started_at=at, last_message_at=at)
    Message.create(id=uuid.uuid4().hex, conversation=conversation.id, chatbot_id=bot,
                   role="user", text=question, created_at=at)
    reply = Message.create(id=uuid.uuid4().hex, conversation=conversation.id, chatbot_id=bot,
                           role="bot", text="answer", intent=intent, answer_source=source,
                           latency_ms=latency, created_at=at)
    Conversation.update(last_message_at=at, message_count=Conversation.message_count + 2).where(
        Conversation.id == conversation.id).execute()
    return reply.id


@pytest.fixture
def known(app):
    """Day D2: 2 sessions, 4 turns (1 fallback); day D1: 1 new session plus one
    from D2 returning, 3 turns (2 fallbacks)."""
    with app.database.connection_context():
        turn("s1", "hello", "intent", _at(D2, 9), 10.0, intent="greeting")
        turn("s1", "How long is shipping?", "knowledge", _at(D2, 9, 1), 30.0)
        turn("s2", "how long is shipping?", "knowledge", _at(D2, 10), 50.0)
        turn("s2", "Do you sell llamas?", "fallback", _at(D2, 10, 1), 90.0)
        turn("s3", "do you sell llamas?", "fallback", _at(D1, 8), 20.0)
        turn("s3", "Refund policy", "faq", _at(D1, 8, 5), 40.0)
        turn("s1", "Opening hours on Mars", "fallback", _at(D1, 12), 60.0)
        Chatbot.create(id="other", name="Other")
        turn("x1", "other bot", "knowledge", _at(D1, 12), 5.0, bot="other")
    return app


def _row(day, bot="default"):
    return AnalyticsDaily.get((AnalyticsDaily.chatbot_id == bot) & (AnalyticsDaily.day == day))


def test_rollups_have_the_right_numbers(known):
    with known.database.connection_context():
        result = analytics.update_rollups()
        assert result["days_updated"] == 3 and result["since"] is None
        d2, d1 = _row(D2), _row(D1)
        assert (d2.messages, d2.conversations, d2.sessions, d2.fallbacks) == (4, 2, 2, 1)
        assert d2.fallback_rate == 0.25 and d2.avg_latency_ms == 45.0 and d2.p95_latency_ms == 90.0
        assert json.loads(d2.intents) == {"greeting": 1, "question": 3}
        assert json.loads(d2.answer_sources) == {"fallback": 1, "intent": 1, "knowledge": 2}
        assert (d1.messages, d1.conversations, d1.sessions, d1.fallbacks) == (3, 1, 2, 2)
        assert d1.fallback_rate == round(2 / 3, 4) and d1.avg_latency_ms == 40.0
        assert d1.p95_latency_ms == 60.0
        assert _row(D1, "other").messages == 1


def test_rollups_are_incremental_and_idempotent(known):
    with known.database.connection_context():
        analytics.update_rollups()
        before = {(r.chatbot_id, r.day): r.updated_at for r in AnalyticsDaily.select()}
        assert analytics.update_rollups()["days_updated"] == 0  # nothing new
        turn("s9", "a new question today", "knowledge", utcnow(), 12.0)
        result = analytics.update_rollups()
        assert result["days_updated"] == 1 and result["since"]
        today = _row(TODAY)
        assert today.messages == 1 and today.sessions == 1 and today.p95_latency_ms == 12.0
        after = {(r.chatbot_id, r.day): r.updated_at for r in AnalyticsDaily.select()}
        assert all(after[key] == stamp for key, stamp in before.items())  # old days untouched
        numbers = [(r.chatbot_id, str(r.day), r.messages, r.sessions, r.fallback_rate)
                   for r in AnalyticsDaily.select().order_by(AnalyticsDaily.day)]
        analytics.update_rollups()
        assert numbers == [(r.chatbot_id, str(r.day), r.messages, r.sessions, r.fallback_rate)
                           for r in AnalyticsDaily.select().order_by(AnalyticsDaily.day)]


def test_update_analytics_runs_as_a_task_with_no_arguments(known, client, worker):
    task_id = client.post("/api/tasks", {"name": "update_analytics", "args": []}).json["task_id"]
    done = wait_for(lambda: (lambda t: t if t["status"] == "SUCCESS" else None)(
        client.get("/api/tasks/" + task_id).json), message="update_analytics")
    assert done["result"]["days_updated"] == 3
    with known.database.connection_context():
        assert _row(D2).messages == 4


def test_the_report_has_a_daily_series_top_questions_and_unanswered(known, client):
    report = client.get("/api/chatbots/default/analytics?period=7d")
    assert report.status == 200
    body = report.json
    assert body["period"] == "7d" and body["cached"] is False
    assert len(body["daily"]) == 7 and body["daily"][-1]["day"] == TODAY.isoformat()
    by_day = {d["day"]: d for d in body["daily"]}
    assert by_day[D2.isoformat()]["messages"] == 4 and by_day[D1.isoformat()]["messages"] == 3
    assert sum(d["messages"] for d in body["daily"]) == 7
    totals = body["totals"]
    assert totals["messages"] == 7 and totals["fallbacks"] == 3
    assert totals["fallback_rate"] == round(3 / 7, 4) and totals["sessions"] == 3
    assert totals["p95_latency_ms"] == 90.0 and totals["conversations"] == 3
    assert body["answer_sources"] == {"fallback": 3, "knowledge": 2, "intent": 1, "faq": 1}
    top = {q["question"].lower(): q["count"] for q in body["top_questions"]}
    assert top["how long is shipping?"] == 2 and top["do you sell llamas?"] == 2
    assert body["top_questions"][0]["count"] == 2
    unanswered = [(q["question"].lower(), q["count"]) for q in body["top_unanswered"]]
    assert unanswered == [("do you sell llamas?", 2), ("opening hours on mars", 1)]


def test_the_report_is_cached_for_an_hour(known, client):
    first = client.get("/api/chatbots/default/analytics?period=30d").json
    with known.database.connection_context():
        turn("s7", "late question", "knowledge", utcnow(), 5.0)
    again = client.get("/api/chatbots/default/analytics?period=30d").json
    assert again["cached"] is True and again["generated_at"] == first["generated_at"]
    assert again["totals"]["messages"] == first["totals"]["messages"] == 7
    assert client.get("/api/chatbots/default/analytics?period=7d").json["cached"] is False
    with known.database.connection_context():  # an hour and a minute later
        AnalyticsReport.update(generated_at=utcnow() - datetime.timedelta(minutes=61)).execute()
    later = client.get("/api/chatbots/default/analytics?period=30d").json
    assert later["cached"] is False and later["totals"]["messages"] == 8
    refreshed = client.get("/api/chatbots/default/analytics?period=30d&refresh=1").json
    assert refreshed["cached"] is False
    assert client.get("/api/chatbots/default/analytics?refresh=0").json["cached"] is True
    bad = client.get("/api/chatbots/default/analytics?refresh=maybe")  # was ignored
    assert bad.status == 400 and bad.json["error"]["message"] == \
        "refresh must be true or false (1 or 0)"
    with known.database.connection_context():
        assert AnalyticsReport.select().count() == 2  # one row per (bot, period)


def test_generate_analytics_report_task(known, client, worker):
    good = known.runner.enqueue("generate_analytics_report", ["default", "90d"])
    bad = known.runner.enqueue("generate_analytics_report", ["default", "14d"])
    missing = known.runner.enqueue("generate_analytics_report", ["nobody"])
    states = {}
    for task_id in (good, bad, missing):
        states[task_id] = wait_for(lambda: (lambda t: t if t["status"] in (
            "SUCCESS", "FAILURE") else None)(client.get("/api/tasks/" + task_id).json),
            message="report task")
    assert states[good]["status"] == "SUCCESS"
    assert len(states[good]["result"]["daily"]) == 90
    assert states[bad]["status"] == "FAILURE" and states[bad]["attempts"] == 1
    assert "period must be one of 7d, 30d, 90d" in states[bad]["error"]
    assert states[missing]["status"] == "FAILURE" and "no chatbot" in states[missing]["error"]
    cached = client.get("/api/chatbots/default/analytics?period=90d").json
    assert cached["cached"] is True


@pytest.mark.parametrize("path, status, code", [
    ("/api/chatbots/default/analytics?period=14d", 400, "invalid_field"),
    ("/api/chatbots/default/analytics?period=", 200, None),
    ("/api/chatbots/nobody/analytics", 404, "not_found"),
])
def test_report_request_errors(client, path, status, code):
    response = client.get(path)
    assert response.status == status
    if code:
        assert response.json["error"]["code"] == code


def test_reports_need_the_token(client):
    assert client.get("/api/chatbots/default/analytics", auth=False).status == 401


# -- feedback ------------------------------------------------------------------------------

def test_feedback_on_a_reply_is_recorded_and_counted(client, app, worker):
    answer = client.post("/chatbot/message/", {"message": "hello"}, auth=False).json
    path = "/api/messages/%s/feedback" % answer["message_id"]
    mine = {"session_id": answer["session_id"]}
    given = client.post(path, dict(mine, helpful=False), auth=False)
    assert given.status == 202 and given.json == {"message_id": answer["message_id"],
                                                  "helpful": False}
    stranger = client.post(path, {"helpful": True, "session_id": "someone-else"}, auth=False)
    assert stranger.status == 404

    def value():
        with app.database.connection_context():
            row = UserAction.get_or_none((UserAction.message_id == answer["message_id"]) &
                                         (UserAction.action == "feedback"))
            return row and row.value
    assert wait_for(value, message="feedback row") == "not_helpful"
    client.post(path, dict(mine, helpful=True), auth=False)  # changed their mind
    wait_for(lambda: value() == "helpful", message="feedback changed")
    with app.database.connection_context():
        analytics.update_rollups()
        row = _row(TODAY)
        assert (row.helpful, row.not_helpful) == (1, 0)
        assert UserAction.select().where(UserAction.action == "feedback").count() == 1
    before = len(app.runner.states(name="process_user_action", limit=1000))
    for _ in range(5):  # the same feedback again and again queues nothing
        assert client.post(path, dict(mine, helpful=True), auth=False).status == 202
    assert len(app.runner.states(name="process_user_action", limit=1000)) == before


def test_feedback_errors(client, app):
    answer = client.post("/chatbot/message/", {"message": "hello"}, auth=False).json
    assert app.turn_log.flush()
    with app.database.connection_context():
        question = Message.get((Message.role == "user")).id
    s = {"session_id": answer["session_id"]}
    cases = [
        ("/api/messages/%s/feedback" % answer["message_id"], dict(s, helpful="yes"), 400),
        ("/api/messages/%s/feedback" % answer["message_id"], dict(s, helpful=True, x=1), 400),
        ("/api/messages/%s/feedback" % answer["message_id"], {}, 400),
        ("/api/messages/%s/feedback" % answer["message_id"], {"helpful": True}, 400),
        ("/api/messages/nope/feedback", dict(s, helpful=True), 404),
        ("/api/messages/%s/feedback" % question, dict(s, helpful=True), 404),
    ]
    for path, body, status in cases:
        response = client.post(path, body, auth=False)
        assert response.status == status, (path, body, response.json)
        assert set(response.json["error"]) == {"code", "message"}


def test_rollups_reports_and_cleanup_on_postgresql(tmp_path, postgres_url):
    from botlite import operations
    from botlite.app import Botlite
    from botlite.settings import load_settings
    app = Botlite.open(load_settings({"data_dir": str(tmp_path), "database_url": postgres_url},
                                     environ={}))
    try:
        with app.database.connection_context():
            turn("s1", "Do you sell llamas?", "fallback", _at(D2, 10), 90.0)
            turn("s1", "do you sell llamas?", "fallback", _at(D1, 10), 10.0)
            turn("s2", "Shipping?", "knowledge", _at(D1, 11), 20.0)
            assert analytics.update_rollups()["days_updated"] == 2
            assert analytics.update_rollups()["days_updated"] == 0
            d1 = _row(D1)
            assert (d1.messages, d1.sessions, d1.fallback_rate, d1.p95_latency_ms) == (
                2, 2, 0.5, 20.0)
            report = analytics.report("default", "7d")
            assert report["totals"]["messages"] == 3 and report["totals"]["sessions"] == 2
            assert report["top_unanswered"] == [{"question": "Do you sell llamas?", "count": 2}]
            assert analytics.report("default", "7d")["cached"] is True
            turn("s0", "ancient", "knowledge", utcnow() - datetime.timedelta(days=100), 1.0)
            counts = operations.cleanup_old_data(app.runner, 90)
            assert counts["messages"] == 2 and counts["conversations"] == 1
            assert Message.select().count() == 6
    finally:
        app.close()


def test_a_changed_feedback_rebuilds_the_day_it_was_given(known):
    from botlite.tasks.analytics import process_user_action
    with known.database.connection_context():
        reply = Message.get((Message.role == "bot") & (Message.created_at == _at(D1, 8)))
        UserAction.create(chatbot_id="default", session_id="s3", message_id=reply.id,
                          action="feedback", value="not_helpful", created_at=_at(D1, 8, 1),
                          updated_at=_at(D1, 8, 1))
        analytics.update_rollups()
        assert (_row(D1).helpful, _row(D1).not_helpful) == (0, 1)
        process_user_action("default", "s3", reply.id, "feedback", "helpful")
        assert analytics.update_rollups()["days_updated"] == 1
        assert (_row(D1).helpful, _row(D1).not_helpful) == (1, 0)
        assert AnalyticsDaily.get_or_none(AnalyticsDaily.day == TODAY) is None


def test_process_user_action_refuses_unknown_actions_and_values(app):
    from botlite.runner import PermanentError
    from botlite.tasks.analytics import process_user_action
    with app.database.connection_context():
        with pytest.raises(PermanentError, match="action must be one of"):
            process_user_action("default", "s", "m", "click")
        with pytest.raises(PermanentError, match="feedback must be one of"):
            process_user_action("default", "s", "m", "feedback", "meh")
        assert UserAction.select().count() == 0


def test_a_turn_logged_long_after_its_time_is_still_counted(app):
    """The chat turn log may write a turn minutes late (a database outage): its day
    is marked when it is written, so the next update counts it."""
    import uuid
    from botlite.analytics import update_rollups
    from botlite.chat.turnlog import Turn
    from botlite.models import AnalyticsDaily
    with app.database.connection_context():
        update_rollups()  # the watermark is now
    at = datetime.datetime.utcnow() - datetime.timedelta(hours=2)
    app.turn_log.submit(Turn(bot_id="default", session_id="late", user_message_id=uuid.uuid4().hex,
                             reply_id=uuid.uuid4().hex, text="hello", reply="Hi!",
                             intent="greeting", answer_source="intent", confidence=1.0,
                             sources=[], latency_ms=3.0, at=at))
    assert app.turn_log.flush()
    with app.database.connection_context():
        assert update_rollups()["days_updated"] == 1
        row = AnalyticsDaily.get((AnalyticsDaily.chatbot_id == "default") &
                                 (AnalyticsDaily.day == at.date()))
        assert row.messages == 1 and json.loads(row.intents) == {"greeting": 1}
        assert update_rollups()["days_updated"] == 0  # marked once, rebuilt once
