"""The public chat from other sites: CORS for the bot's allowed domains, and the
per-visitor rate limit (HTTP 429 with Retry-After)."""
import pytest

from botlite.errors import TooManyRequests
from botlite.web.session import SESSION_COOKIE, create, csrf_value
from botlite.widget import RateLimiter, origin_allowed

SITE = "https://shop.example.com"


@pytest.mark.parametrize("origin, domains, allowed", [
    ("https://example.com", ["example.com"], True),
    ("http://example.com:8080", ["example.com"], True),
    ("https://evil-example.com", ["example.com"], False),
    ("https://example.com.evil.io", ["example.com"], False),
    ("https://shop.example.com", ["*.example.com"], True),
    ("https://example.com", ["*.example.com"], False),
    ("https://example.com", ["https://example.com"], True),
    ("http://example.com", ["https://example.com"], False),
    ("https://example.com:8443", ["https://example.com"], False),
    ("https://example.com:8443", ["https://example.com:8443"], True),
    ("http://127.0.0.1:5001", ["127.0.0.1:5001"], True),
    ("http://127.0.0.1:5002", ["127.0.0.1:5001"], False),
    ("null", ["example.com"], False),
    ("https://example.com", [], False),
])
def test_origin_matching(origin, domains, allowed):
    assert origin_allowed(origin, domains) is allowed


@pytest.fixture
def shop_bot(client):
    return client.post("/api/chatbots", {"name": "Shop", "allowed_domains": ["*.example.com"],
                                         "rate_limit_per_minute": 2}).json


def _chat(client, bot_id, origin=None, address="203.0.113.7", path=None, **extra):
    headers = {"Origin": origin} if origin else {}
    headers.update(extra.pop("headers", {}))
    return client.post(path or "/api/chatbots/%s/chat" % bot_id,
                       {"message": "hello", **extra}, auth=False, headers=headers,
                       environ={"REMOTE_ADDR": address})


def test_an_allowed_site_gets_cors_headers_and_a_preflight(client, shop_bot):
    preflight = client.request("OPTIONS", "/api/chatbots/shop/chat", auth=False, headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status == 204 and preflight.body == b""
    assert preflight.headers["access-control-allow-origin"] == SITE
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Content-Type" in preflight.headers["access-control-allow-headers"]
    answer = _chat(client, "shop", SITE)
    assert answer.status == 200 and answer.json["reply"]
    assert answer.headers["access-control-allow-origin"] == SITE
    assert answer.headers["vary"] == "Origin"
    info = client.get("/api/chatbots/shop/widget", auth=False, headers={"Origin": SITE})
    assert info.json == {"id": "shop", "name": "Shop", "greeting": ""}
    assert info.headers["access-control-allow-origin"] == SITE


def test_another_site_gets_no_cors_headers_and_no_answer(client, shop_bot):
    evil = "https://evil.test"
    preflight = client.request("OPTIONS", "/api/chatbots/shop/chat", auth=False,
                               headers={"Origin": evil,
                                        "Access-Control-Request-Method": "POST"})
    assert preflight.status == 403
    assert "access-control-allow-origin" not in preflight.headers
    refused = _chat(client, "shop", evil)
    assert refused.status == 403 and refused.json["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    info = client.get("/api/chatbots/shop/widget", auth=False, headers={"Origin": evil})
    assert info.status == 403 and "access-control-allow-origin" not in info.headers
    conversations = client.get("/api/chatbots/shop/conversations").json["conversations"]
    assert conversations == []


def test_no_origin_or_the_same_origin_needs_no_cors(client, shop_bot):
    plain = _chat(client, "shop")
    same = _chat(client, "shop", "http://127.0.0.1", address="203.0.113.8")
    for answer in (plain, same):
        assert answer.status == 200 and "access-control-allow-origin" not in answer.headers


def test_the_legacy_endpoint_checks_the_bot_named_in_the_body(client, shop_bot):
    preflight = client.request("OPTIONS", "/chatbot/message/", auth=False,
                               headers={"Origin": SITE, "Access-Control-Request-Method": "POST"})
    assert preflight.headers["access-control-allow-origin"] == SITE
    allowed = _chat(client, None, SITE, path="/chatbot/message/", chatbot_id="shop")
    assert allowed.status == 200 and allowed.headers["access-control-allow-origin"] == SITE
    default = _chat(client, None, SITE, path="/chatbot/message/")
    assert default.status == 403 and "access-control-allow-origin" not in default.headers


def test_the_rate_limit_is_per_visitor_with_retry_after(client, shop_bot):
    assert [_chat(client, "shop", SITE).status for _ in range(2)] == [200, 200]
    limited = _chat(client, "shop", SITE)
    assert limited.status == 429
    assert limited.json["error"]["code"] == "rate_limited"
    assert "2 messages per minute" in limited.json["error"]["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # The widget must be able to read the 429 and its Retry-After.
    assert limited.headers["access-control-allow-origin"] == SITE
    assert "Retry-After" in limited.headers["access-control-expose-headers"]
    assert _chat(client, "shop", SITE, address="198.51.100.1").status == 200
    legacy = _chat(client, None, SITE, path="/chatbot/message/", chatbot_id="shop")
    assert legacy.status == 429
    conversations = client.get("/api/chatbots/shop/conversations").json["conversations"]
    assert sum(c["message_count"] for c in conversations) == 6  # 3 answered turns


def test_the_admin_is_not_rate_limited(client, shop_bot, app):
    secret = create(app.token)
    session = {"Cookie": "%s=%s" % (SESSION_COOKIE, secret),
               "X-CSRF-Token": csrf_value(app.token, secret)}
    bearer = {"Authorization": "Bearer " + app.token}
    statuses = [_chat(client, "shop", headers=h).status for h in [session, bearer] * 3]
    assert statuses == [200] * 6
    cookie_only = {"Cookie": session["Cookie"]}
    assert [_chat(client, "shop", headers=cookie_only).status for _ in range(3)] == \
        [200, 200, 429]


def test_zero_means_no_limit(client):
    client.post("/api/chatbots", {"name": "Open", "rate_limit_per_minute": 0})
    assert {_chat(client, "open").status for _ in range(12)} == {200}


def test_the_window_slides():
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limiter.hit("bot", "v", 2)
    now[0] += 30
    limiter.hit("bot", "v", 2)
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("bot", "v", 2)
    assert refused.value.retry_after == 30
    now[0] += 30.5
    limiter.hit("bot", "v", 2)  # the first hit left the window
    limiter.hit("other-bot", "v", 2)


def test_the_least_recently_seen_visitors_are_forgotten_when_full():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0], max_keys=10)
    for visitor in range(10):
        limiter.hit("bot", "10.0.0.%d" % visitor, 5)
    limiter.hit("bot", "10.0.0.0", 5)  # seen again: now the most recent
    limiter.hit("bot", "10.0.0.99", 5)
    assert len(limiter.hits) == 10
    assert ("bot", "10.0.0.1") not in limiter.hits and ("bot", "10.0.0.0") in limiter.hits


def test_one_ipv6_host_is_one_visitor_whatever_address_of_its_64_it_uses():
    limiter = RateLimiter(clock=lambda: 0.0)
    limiter.hit("bot", "2001:db8:1:2::1", 2)
    limiter.hit("bot", "2001:db8:1:2:ffff::9", 2)
    with pytest.raises(TooManyRequests):
        limiter.hit("bot", "2001:db8:1:2:abcd::7", 2)
    limiter.hit("bot", "2001:db8:1:3::1", 2)  # another /64: another visitor


def test_forwarded_headers_do_not_make_another_site_look_like_ours(client, shop_bot):
    refused = _chat(client, "shop", "https://evil.test", headers={
        "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"})
    assert refused.status == 403


def test_the_dashboard_behind_a_tls_proxy_may_use_the_playground(client, shop_bot, app):
    secret = create(app.token)
    session = {"Cookie": "%s=%s" % (SESSION_COOKIE, secret),
               "X-CSRF-Token": csrf_value(app.token, secret)}
    answer = _chat(client, "shop", "https://127.0.0.1", headers=session)
    assert answer.status == 200 and "access-control-allow-origin" not in answer.headers
