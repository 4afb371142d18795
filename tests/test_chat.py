"""Chat over HTTP (in-process WSGI): intents, FAQ, cited knowledge answers, fallback,
the optional LLM against a real fake server on 127.0.0.1, validation, logging."""
import http.server
import json
import threading
import time
import uuid

import pytest
from playhouse.test_utils import count_queries

from botlite.app import Botlite
from botlite.db import write_transaction
from botlite.knowledge import index
from botlite.knowledge.chunk import Chunk as TextChunk
from botlite.models import Message, Source, UserAction
from botlite.settings import load_settings
from botlite.web.app import create_app
from conftest import WsgiClient, wait_for

PAGES = {
    "https://docs.example/returns": ("Returns policy", [
        "You can return any item within 30 days of delivery for a full refund. The item "
        "must be unused and in its original packaging. Start a return from your account "
        "page, print the label, and drop the parcel at any post office."]),
    "https://docs.example/shipping": ("Shipping times", [
        "Standard shipping takes three to five working days within the EU. Express "
        "shipping arrives the next working day when ordered before 2 pm. We do not ship "
        "to the Canary Islands."]),
    "https://docs.example/install": ("Installing the desktop app", [
        "Download the installer from the downloads page and run it. On Linux, install "
        "the .deb package with apt. The app needs 2 GB of free disk space and a 64-bit "
        "processor."]),
}


def add_pages(app, bot="default"):
    with app.database.connection_context():
        for url, (title, texts) in PAGES.items():
            source = Source.create(id=uuid.uuid4().hex, chatbot=bot, kind="website",
                                   title=title, url=url, status="ready")
            chunks = [TextChunk(text, None, None, i) for i, text in enumerate(texts)]
            with write_transaction():
                index.insert_chunks(index.chunk_rows(source, chunks, url=url, title=title))


def ask(client, message, bot=None, session=None, **extra):
    body = dict({"message": message}, **extra)
    if session:
        body["session_id"] = session
    path = "/chatbot/message/" if bot is None else "/api/chatbots/%s/chat" % bot
    return client.post(path, body, auth=False)


@pytest.fixture
def bot_with_pages(app):
    add_pages(app)
    return app


# --- the pipeline -----------------------------------------------------------------

@pytest.mark.parametrize("message, intent", [
    ("hi", "greeting"), ("Hello!", "greeting"), ("thanks a lot", "thanks"),
    ("bye", "goodbye"), ("who are you?", "bot_identity"), ("what can you do?", "help"),
    ("how are you doing today?", "small_talk"),
])
def test_small_talk_is_answered_by_intents(client, message, intent):
    answer = ask(client, message).json
    assert answer["intent"] == intent and answer["answer_source"] == "intent"
    assert answer["sources"] == [] and answer["confidence"] > 0.5


@pytest.mark.parametrize("message", [
    "hello world program in python", "thank you note templates",
    "what does the help() function print", "which is this",
])
def test_questions_that_contain_greeting_words_are_not_small_talk(client, message):
    answer = ask(client, message).json
    assert answer["answer_source"] != "intent", answer


def test_intent_replies_use_the_bot_name(client):
    client.post("/api/chatbots", {"name": "Aria", "id": "aria"})
    answers = {ask(client, "who are you?", bot="aria", session="s%d" % i).json["reply"]
               for i in range(6)}
    assert any("Aria" in reply for reply in answers)


def test_a_knowledge_answer_cites_the_right_page(client, bot_with_pages):
    answer = ask(client, "How long does standard shipping take?").json
    assert answer["answer_source"] == "knowledge" and answer["intent"] == "question"
    assert "three to five working days" in answer["reply"]
    assert answer["sources"][0]["url"] == "https://docs.example/shipping"
    assert answer["sources"][0]["title"] == "Shipping times"
    assert {"source_id", "title", "url", "snippet", "score"} <= set(answer["sources"][0])
    assert len({s["url"] for s in answer["sources"]}) == len(answer["sources"])


def test_a_greeting_before_a_question_still_gets_the_answer(client, bot_with_pages):
    answer = ask(client, "Hi! how much disk space does the desktop app need?").json
    assert answer["answer_source"] == "knowledge"
    assert answer["sources"][0]["url"] == "https://docs.example/install"


def test_nothing_relevant_is_the_fallback_citing_nothing(client, bot_with_pages):
    answer = ask(client, "What is the airspeed velocity of an unladen swallow?").json
    assert answer["answer_source"] == "fallback" and answer["sources"] == []
    assert "don't know" in answer["reply"]


def test_the_fallback_message_is_per_bot(client):
    client.post("/api/chatbots", {"name": "Support", "fallback_message": "Ask a human at desk 3."})
    answer = ask(client, "zebra crossing regulations", bot="support").json
    assert answer["reply"] == "Ask a human at desk 3."


# --- FAQ ------------------------------------------------------------------------------

@pytest.fixture
def faqs(client):
    for question, answer in [
            ("How do I reset my password?", "Use 'Forgot password' on the sign-in page."),
            ("What are your opening hours?", "Monday to Friday, 9:00 to 17:00."),
            ("Can I cancel my subscription?", "Yes, any time under Settings > Billing.")]:
        assert client.post("/api/chatbots/default/faqs",
                           {"question": question, "answer": answer}).status == 201


@pytest.mark.parametrize("paraphrase, expected", [
    ("I forgot my password, how can I reset it?", "Forgot password"),
    ("when are you open?", "Monday to Friday"),
    ("what are the opening hours", "Monday to Friday"),
    ("how to cancel subscription", "Settings > Billing"),
])
def test_faq_paraphrases_get_the_answer_verbatim(client, faqs, paraphrase, expected):
    answer = ask(client, paraphrase).json
    assert answer["answer_source"] == "faq", answer
    assert expected in answer["reply"]


def test_faq_does_not_answer_unrelated_questions(client, faqs):
    assert ask(client, "do you sell garden furniture?").json["answer_source"] != "faq"


def test_faq_crud(client):
    created = client.post("/api/chatbots/default/faqs", {"question": "Q?", "answer": "A."}).json
    assert client.get("/api/chatbots/default/faqs").json["faqs"] == [created]
    patched = client.patch("/api/faqs/%s" % created["id"], {"answer": "B."}).json
    assert patched["answer"] == "B." and patched["question"] == "Q?"
    assert client.delete("/api/faqs/%s" % created["id"]).status == 200
    assert client.get("/api/chatbots/default/faqs").json["faqs"] == []
    assert client.delete("/api/faqs/%s" % created["id"]).status == 404
    assert client.post("/api/chatbots/default/faqs", {"question": "Q?"}).status == 400


def test_custom_intents_are_matched_and_beat_the_knowledge_base(client, bot_with_pages):
    created = client.post("/api/chatbots/default/intents", {
        "name": "order_status", "examples": ["where is my order", "track my parcel"],
        "responses": ["Track it at example.com/track, {bot_name} can't see orders."]})
    assert created.status == 201
    answer = ask(client, "Where is my order?").json
    assert answer["answer_source"] == "intent" and answer["intent"] == "order_status"
    assert "Default bot can't see orders" in answer["reply"]
    assert client.post("/api/chatbots/default/intents", {
        "name": "order_status", "examples": ["x"], "responses": ["y"]}).status == 409
    assert client.post("/api/chatbots/default/intents", {
        "name": "empty", "examples": [], "responses": ["y"]}).status == 400


# --- validation -------------------------------------------------------------------

@pytest.mark.parametrize("body, status", [
    ({}, 400), ({"message": ""}, 400), ({"message": "   "}, 400), ({"message": 42}, 400),
    ({"message": None}, 400), ({"message": "hi", "session_id": "bad id!"}, 400),
    ({"message": "hi", "chatbot_id": 7}, 400), ({"message": "x" * 4001}, 413),
    ({"message": "hi", "chatbot_id": "ghost"}, 404),
])
def test_bad_chat_requests(client, body, status):
    response = client.post("/chatbot/message/", body, auth=False)
    assert response.status == status and set(response.json["error"]) == {"code", "message"}


def test_invalid_json_is_a_400(client):
    response = client.request("POST", "/chatbot/message/", body=b"{message: hi}",
                              headers={"Content-Type": "application/json"}, auth=False)
    assert response.status == 400 and response.json["error"]["code"] == "invalid_json"


def test_an_unknown_bot_is_404_on_the_per_bot_endpoint(client):
    assert ask(client, "hi", bot="ghost").status == 404


def test_chat_is_public_but_conversations_are_not(client):
    assert ask(client, "hi").status == 200
    assert client.get("/api/chatbots/default/conversations", auth=False).status == 401


# --- sessions, logs, analytics --------------------------------------------------------

def test_turns_are_logged_in_one_conversation_per_session(client, app, bot_with_pages):
    first = ask(client, "hello").json
    session = first["session_id"]
    assert len(session) >= 16
    second = ask(client, "How long does standard shipping take?", session=session).json
    assert second["session_id"] == session
    conversations = client.get("/api/chatbots/default/conversations").json["conversations"]
    assert len(conversations) == 1 and conversations[0]["message_count"] == 4
    transcript = client.get("/api/conversations/%s" % conversations[0]["id"]).json
    roles = [(m["role"], m["answer_source"]) for m in transcript["messages"]]
    assert roles == [("user", None), ("bot", "intent"), ("user", None), ("bot", "knowledge")]
    bot_reply = transcript["messages"][3]
    assert bot_reply["id"] == second["message_id"] and bot_reply["latency_ms"] >= 0
    assert bot_reply["sources"][0]["url"] == "https://docs.example/shipping"
    assert client.get("/api/conversations/nope").status == 404


def test_each_turn_queues_process_user_action(client, app):
    """Off the request path: the turn log queues the task once the turn is written."""
    answer = ask(client, "hi").json
    assert app.turn_log.flush()
    queued = wait_for(lambda: app.runner.states(name="process_user_action"),
                      message="a process_user_action task")
    assert queued[0]["args"][2] == answer["message_id"]
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        wait_for(lambda: _actions(app, answer["message_id"]) == 1, message="the user action row")
    finally:
        runtime.stop()


def _actions(app, message_id):
    with app.database.connection_context():
        return UserAction.select().where(UserAction.message_id == message_id).count()


def test_one_chat_turn_costs_a_bounded_number_of_queries(client, app, bot_with_pages):
    ask(client, "warm up")
    assert app.turn_log.flush()
    with count_queries() as counter:  # the public endpoint, in this thread
        answer = ask(client, "How long does standard shipping take?").json
    # On the request thread: the bot (read once for the origin and rate-limit check
    # and the turn), custom intents, FAQs, then the search: the term counts and the
    # BM25 candidates; the turn is logged by the turn log's thread.
    mine = [q for q in counter.get_queries() if q.thread == threading.get_ident()]
    assert answer["answer_source"] == "knowledge"
    assert len(mine) <= 5, [q.msg for q in mine]
    assert app.turn_log.flush()
    with app.database.connection_context():
        assert Message.select().count() == 4
        assert Message.get_by_id(answer["message_id"]).role == "bot"


# --- the optional LLM, against a real fake OpenAI-compatible server -----------------

class FakeLLM:
    def __init__(self):
        self.mode, self.calls = "ok", []
        self.content = "Standard delivery takes 3-5 working days [1]."
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):
                body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
                outer.calls.append((handler.path, handler.headers.get("Authorization"), body))
                if outer.mode == "slow":
                    time.sleep(1.5)  # the server side being slow (the test's timeout is 0.5 s)
                if outer.mode == "error":
                    handler.send_response(500)
                    handler.end_headers()
                    return
                reply = json.dumps({"choices": [{"message": {
                    "role": "assistant", "content": outer.content}}]}).encode()
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                if outer.mode == "gzip":
                    import gzip
                    reply = gzip.compress(reply)
                    handler.send_header("Content-Encoding", "gzip")
                handler.send_header("Content-Length", str(len(reply)))
                handler.end_headers()
                if outer.mode == "trickle":  # every read is quick, the whole is not
                    for i in range(len(reply)):
                        handler.wfile.write(reply[i:i + 1])
                        handler.wfile.flush()
                        time.sleep(0.02)
                    return
                handler.wfile.write(reply)

            def log_message(handler, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm(data_dir):
    fake = FakeLLM()
    app = Botlite.open(load_settings({"data_dir": data_dir}, environ={
        "BOTLITE_LLM_URL": fake.url, "BOTLITE_LLM_MODEL": "tiny", "BOTLITE_LLM_API_KEY": "k1",
        "BOTLITE_LLM_TIMEOUT": "0.5"}))
    add_pages(app)
    yield fake, app, WsgiClient(create_app(app), token=app.token)
    app.close()
    fake.close()


def test_the_llm_answers_with_numbered_context_and_citations(llm):
    fake, app, client = llm
    answer = ask(client, "How long does standard shipping take?").json
    assert answer["answer_source"] == "llm"
    assert answer["reply"] == "Standard delivery takes 3-5 working days [1]."
    assert answer["sources"][0]["url"] == "https://docs.example/shipping"
    path, auth, body = fake.calls[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k1" and body["model"] == "tiny"
    assert "[1] Standard shipping takes three to five" in body["messages"][1]["content"]


def test_the_llm_is_not_asked_without_relevant_knowledge(llm):
    fake, app, client = llm
    assert ask(client, "hi").json["answer_source"] == "intent"
    assert ask(client, "unladen swallow airspeed").json["answer_source"] == "fallback"
    assert fake.calls == []


def test_an_llm_timeout_falls_back_to_the_extractive_answer(llm):
    fake, app, client = llm
    fake.mode = "slow"
    started = time.monotonic()
    answer = ask(client, "How long does standard shipping take?").json
    assert answer["answer_source"] == "knowledge" and "three to five" in answer["reply"]
    assert time.monotonic() - started < 1.4


def test_the_breaker_opens_after_failures_and_closes_after_the_cool_down(llm):
    fake, app, client = llm
    breaker = app.chat_engine.llm.breaker
    breaker.cool_down = 0.3
    fake.mode = "error"
    for _ in range(3):
        assert ask(client, "How long does standard shipping take?").json[
            "answer_source"] == "knowledge"
    assert breaker.state == "open" and len(fake.calls) == 3
    ask(client, "How long does standard shipping take?")
    assert len(fake.calls) == 3  # skipped while open
    fake.mode = "ok"
    wait_for(lambda: breaker.state == "half-open", timeout=5, message="the cool-down")
    answer = ask(client, "How long does standard shipping take?").json
    assert answer["answer_source"] == "llm" and breaker.state == "closed"


def test_llm_citations_are_renumbered_to_the_sources(llm):
    fake, app, client = llm
    fake.content = "Shipping [2] and returns [1] apply; see also [7]."
    answer = ask(client, "How long does standard shipping take, and can I return it?").json
    assert answer["answer_source"] == "llm"
    assert "[7]" not in answer["reply"]
    numbers = sorted({int(n) for n in __import__("re").findall(r"\[(\d+)\]", answer["reply"])})
    assert numbers == list(range(1, len(answer["sources"]) + 1))


def test_a_trickling_llm_is_cut_off_at_the_timeout(llm):
    fake, app, client = llm
    fake.mode = "trickle"
    started = time.monotonic()
    answer = ask(client, "How long does standard shipping take?").json
    assert answer["answer_source"] == "knowledge"
    assert time.monotonic() - started < 1.5


def test_half_open_lets_exactly_one_probe_through():
    from botlite.chat.llm import CircuitBreaker
    breaker = CircuitBreaker(failures_to_open=1, cool_down=0.0)
    breaker.failure()
    assert breaker.allow() is True      # the probe
    assert breaker.allow() is False     # everyone else waits for its outcome
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() is True


def test_a_compressed_llm_answer_is_read(llm):
    fake, app, client = llm
    fake.mode = "gzip"
    answer = ask(client, "How long does standard shipping take?").json
    assert answer["answer_source"] == "llm" and "3-5 working days" in answer["reply"]
