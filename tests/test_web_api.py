import pytest
from conftest import wait_for

from botlite.web.app import MAX_JSON_BYTES


# --- auth -------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
    {"Authorization": "Bearer "},
])
def test_admin_endpoints_need_the_token(client, headers):
    response = client.get("/api/chatbots", headers=headers, auth=False)
    assert response.status == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in response.json["error"]["message"]


def test_the_right_token_is_accepted(client, app):
    response = client.get("/api/chatbots", headers={"Authorization": "Bearer " + app.token},
                          auth=False)
    assert response.status == 200


def test_health_is_public(client):
    assert client.get("/healthz", auth=False).status in (200, 503)


# --- errors -----------------------------------------------------------------

def _is_error(response, status, code):
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json) == {"error"}
    assert set(response.json["error"]) == {"code", "message"}
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    return response.json["error"]["message"]


def test_unknown_path_is_a_json_404(client):
    assert "/api/nothing" in _is_error(client.get("/api/nothing"), 404, "not_found")


def test_wrong_method_is_a_json_405(client):
    response = client.request("PUT", "/api/chatbots")
    _is_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_json_is_a_400(client, body):
    response = client.post("/api/chatbots", body=body,
                           headers={"Content-Type": "application/json"})
    _is_error(response, 400, "invalid_json")


@pytest.mark.parametrize("body, field", [
    ({"name": 42}, "name"), ({}, "name"), ({"name": "  "}, "name"),
    ({"name": "ok", "rate_limit_per_minute": "10"}, "rate_limit_per_minute"),
    ({"name": "ok", "rate_limit_per_minute": True}, "rate_limit_per_minute"),
    ({"name": "ok", "allowed_domains": "example.com"}, "allowed_domains"),
    ({"name": "ok", "id": "Not A Slug"}, "id"),
    ({"name": "ok", "nmae": "typo"}, "nmae"),
    ({"name": "x" * 201}, "name"),
])
def test_wrong_types_and_values_are_a_400_naming_the_field(client, body, field):
    message = _is_error(client.post("/api/chatbots", body), 400,
                        "invalid_field")
    assert field in message


def test_an_oversized_body_is_a_413_and_nothing_is_stored(client):
    big = {"name": "big", "description": "x" * MAX_JSON_BYTES}
    _is_error(client.post("/api/chatbots", big), 413, "payload_too_large")
    assert [b["id"] for b in client.get("/api/chatbots").json["chatbots"]] == ["default"]


def test_a_crash_is_a_json_500_without_traceback(client, app, monkeypatch, caplog):
    from botlite import chatbots

    def explode():
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(chatbots, "list_bots", explode)
    response = client.get("/api/chatbots")
    message = _is_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "server log" in message
    assert "secret internal detail" in caplog.text  # logged for the operator


def test_security_headers_on_every_response(client):
    for response in (client.get("/healthz"), client.get("/nope"), client.get("/login")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


# --- health -----------------------------------------------------------------

def test_healthz_is_503_with_a_reason_when_no_worker_runs(client):
    response = client.get("/healthz")
    assert response.status == 503
    body = response.json
    assert body["status"] == "unavailable"
    assert body["database"]["status"] == "ok"
    assert body["queue"] == {"pending": 0, "scheduled": 0, "status": "ok"}
    assert body["workers"]["alive"] == 0
    assert any("no worker heartbeat" in reason for reason in body["reasons"])


def test_healthz_is_200_while_a_worker_beats(client, app):
    runtime = app.runtime(1, schedule=False)
    runtime.start()
    try:
        body = client.get("/healthz").json
        assert body["status"] == "ok", body
        assert body["workers"]["alive"] == 1 and body["workers"]["threads"] == 1
        assert body["workers"]["heartbeat_age_s"] < 5
        app.runner.enqueue("health_check", delay=3600)
        wait_for(lambda: client.get("/healthz").json["queue"]["scheduled"] == 1,
                 message="the delayed task to show as scheduled")
    finally:
        runtime.stop()
    assert client.get("/healthz").status == 503  # a stopped worker leaves the ledger


def test_healthz_is_503_when_the_database_is_gone(client, app, tmp_path):
    app.database.init(str(tmp_path / "missing-dir" / "db.sqlite"))  # cannot be opened
    app.database.close_all()  # and the pool's open connections are gone
    body = client.get("/healthz")
    assert body.status == 503
    assert body.json["database"]["status"] == "error"
    assert any(r.startswith("database unreachable") for r in body.json["reasons"])


# --- chatbots ---------------------------------------------------------------

def test_the_default_bot_exists_after_first_start(client):
    bots = client.get("/api/chatbots").json["chatbots"]
    assert [b["id"] for b in bots] == ["default"]


def test_create_read_update_delete_a_bot(client):
    created = client.post("/api/chatbots", {"name": "Help Desk", "greeting": "Hello!",
                                            "allowed_domains": ["example.com"]})
    assert created.status == 201
    bot = created.json
    assert bot["id"] == "help-desk" and bot["greeting"] == "Hello!"
    assert bot["allowed_domains"] == ["example.com"] and bot["created_at"].endswith("Z")

    assert client.get("/api/chatbots/help-desk").json == bot
    patched = client.patch("/api/chatbots/help-desk", {"fallback_message": "Ask a human.",
                                                       "rate_limit_per_minute": 5})
    assert patched.status == 200
    assert patched.json["fallback_message"] == "Ask a human."
    assert patched.json["name"] == "Help Desk" and patched.json["rate_limit_per_minute"] == 5

    assert client.delete("/api/chatbots/help-desk").json["id"] == "help-desk"
    _is_error(client.get("/api/chatbots/help-desk"), 404, "not_found")


def test_same_name_gets_a_distinct_id_and_explicit_ids_must_be_free(client):
    assert client.post("/api/chatbots", {"name": "Sales"}).json["id"] == "sales"
    assert client.post("/api/chatbots", {"name": "Sales"}).json["id"] == "sales-2"
    assert client.post("/api/chatbots", {"name": "Other", "id": "mine"}).json["id"] == "mine"
    _is_error(client.post("/api/chatbots", {"name": "Other", "id": "mine"}), 409, "conflict")


def test_a_rejected_patch_changes_nothing(client):
    client.post("/api/chatbots", {"name": "Keep", "greeting": "Hi"})
    _is_error(client.patch("/api/chatbots/keep", {"greeting": "Yo", "rate_limit_per_minute": -1}),
              400, "invalid_field")
    assert client.get("/api/chatbots/keep").json["greeting"] == "Hi"


def test_null_empties_an_optional_field_and_is_refused_for_name_and_rate_limit(client):
    client.post("/api/chatbots", {"name": "Nulls", "description": "About", "greeting": "Hi",
                                  "fallback_message": "Ask Sam.", "allowed_domains": ["a.com"],
                                  "rate_limit_per_minute": 5})
    for field in ("name", "rate_limit_per_minute"):
        message = _is_error(client.patch("/api/chatbots/nulls", {field: None, "greeting": "Yo"}),
                            400, "invalid_field")
        assert message == "field %r cannot be null" % field
    patched = client.patch("/api/chatbots/nulls", {
        "description": None, "greeting": None, "fallback_message": None,
        "allowed_domains": None}).json
    created = client.post("/api/chatbots", {"name": "Defaults", "rate_limit_per_minute": None,
                                            "description": None})
    assert created.status == 201 and created.json["rate_limit_per_minute"] == 30
    assert created.json["description"] == ""
    assert {k: patched[k] for k in ("description", "greeting", "fallback_message",
                                    "allowed_domains", "name", "rate_limit_per_minute")} == {
        "description": "", "greeting": "", "fallback_message": "", "allowed_domains": [],
        "name": "Nulls", "rate_limit_per_minute": 5}


def test_unknown_bot_is_404_everywhere(client):
    for response in (client.get("/api/chatbots/ghost"),
                     client.patch("/api/chatbots/ghost", {"name": "x"}),
                     client.delete("/api/chatbots/ghost")):
        _is_error(response, 404, "not_found")


def test_the_default_bot_cannot_be_deleted(client):
    _is_error(client.delete("/api/chatbots/default"), 409, "conflict")
    assert client.get("/api/chatbots/default").status == 200


# --- pages ------------------------------------------------------------------

def test_home_redirects_to_login_without_a_session(client):
    response = client.get("/", auth=False)
    assert response.status in (302, 303) and response.headers["location"].endswith("/login")


def test_token_url_logs_in_and_names_are_escaped(client, app):
    client.post("/api/chatbots", {"name": "<script>alert(1)</script>"})
    response = client.get("/?token=" + app.token, auth=False)
    assert response.status in (302, 303)
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    session = cookie.split(";")[0]
    home = client.get("/", headers={"Cookie": session}, auth=False)
    assert home.status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in home.text
    assert "<script>alert(1)" not in home.text


def test_a_wrong_token_url_does_not_log_in(client):
    response = client.get("/?token=wrong", auth=False)
    assert response.status == 401
    assert "botlite_session" not in response.headers.get("set-cookie", "")


def test_names_become_readable_ascii_ids(client):
    assert client.post("/api/chatbots", {"name": "Ünïcødé Bot"}).json["id"] == "unicode-bot"
    assert client.post("/api/chatbots", {"name": "!!!"}).json["id"] == "bot"


@pytest.mark.parametrize("domain, ok", [
    ("example.com", True), ("*.example.com", True), ("https://shop.example.com:8443", True),
    ("localhost:3000", True), ("not a domain!", False), ("http://x.com/path", False),
])
def test_allowed_domains_must_be_hosts(client, domain, ok):
    response = client.post("/api/chatbots", {"name": "w", "allowed_domains": [domain]})
    assert response.status == (201 if ok else 400), response.body


@pytest.mark.parametrize("body", [
    {"name": "nul\u0000byte"}, {"name": "lone \ud800 surrogate"},
])
def test_text_that_cannot_be_stored_is_a_400(client, body):
    import json
    raw = json.dumps(body).encode()
    response = client.post("/api/chatbots", body=raw, headers={"Content-Type": "application/json"})
    _is_error(response, 400, "invalid_field")


def test_deeply_nested_json_is_a_400(client):
    raw = b"[" * 100000 + b"]" * 100000
    _is_error(client.post("/api/chatbots", body=raw, headers={"Content-Type": "application/json"}),
              400, "invalid_json")


def test_a_non_ascii_authorization_header_is_a_401(client):
    response = client.get("/api/chatbots", headers={"Authorization": "Bearer \u00e9\u00e9"},
                          auth=False)
    assert response.status == 401


@pytest.mark.parametrize("path", ["/api/faqs/%s", "/api/intents/%s",
                                  "/api/notifications/%s/read"])
@pytest.mark.parametrize("value", ["99999999999999999999", "9223372036854775808", "0",
                                   "-1", "1e3", "12a"])
def test_an_id_out_of_range_names_no_row(client, path, value):
    """A huge id overflowed the database driver into a 500."""
    method = {"/api/faqs/%s": "PATCH", "/api/intents/%s": "DELETE"}.get(path, "POST")
    answer = client.request(method, path % value, json_body={"answer": "x"})
    assert answer.status == 404, answer.text
    assert answer.json["error"]["code"] == "not_found"


def test_a_non_ascii_digit_is_no_id():
    from botlite.errors import NotFound
    from botlite.validate import row_id
    assert row_id("42", "FAQ") == 42
    with pytest.raises(NotFound):
        row_id("\u0661", "FAQ")  # int() reads ARABIC-INDIC DIGIT ONE as 1


def test_a_lone_surrogate_in_a_json_body_is_a_400(client):
    """Valid JSON ("\\ud800"), but no text: the database driver raised a 500."""
    body = b'{"message": "hi", "chatbot_id": "\\ud800"}'
    answer = client.request("POST", "/chatbot/message/", body=body, auth=False,
                            headers={"Content-Type": "application/json"})
    assert answer.status == 400 and answer.json["error"]["code"] == "invalid_field"
    assert "chatbot_id" in answer.json["error"]["message"]
    made = client.request("POST", "/api/chatbots", body=b'{"name": "x\\udc00y"}',
                          headers={"Content-Type": "application/json"})
    assert made.status == 400
    assert [b["name"] for b in client.get("/api/chatbots").json["chatbots"]] == ["Default bot"]
