"""Guessing the admin token is throttled per address and logged; the server answers
only to its own host names; public feedback is rate limited; the ready line shows
only a token botlite made."""
import logging
import re

import pytest

from conftest import WsgiClient
from test_serve import ServeProcess
from test_web_pages import _cookies

from botlite.settings import load_settings
from botlite.web.app import allowed_hosts, create_app
from botlite.web.throttle import FREE_FAILURES, MAX_LOCKOUT, LoginThrottle

ATTACKER, VISITOR = "203.0.113.9", "198.51.100.7"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def guarded(app, clock):
    return WsgiClient(create_app(app, LoginThrottle(clock=clock)), token=app.token)


def _bearer(client, token, address):
    return client.get("/api/chatbots", auth=False, environ={"REMOTE_ADDR": address},
                      headers={"Authorization": "Bearer " + token})


def _login_form(client, token, address):
    env = {"REMOTE_ADDR": address}
    form = client.get("/login", auth=False, environ=env)
    cookie = re.search(r"botlite_login=([^;]+)", _cookies(form)).group(1)
    return client.request("POST", "/login", auth=False, environ=env,
                          body=("csrf_token=%s&token=%s" % (cookie, token)).encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   "Cookie": "botlite_login=" + cookie})


def _link(client, token, address):
    return client.get("/?token=" + token, auth=False, environ={"REMOTE_ADDR": address})


@pytest.mark.parametrize("attempt", [_bearer, _login_form, _link],
                         ids=["bearer", "login form", "token link"])
def test_fifty_wrong_tokens_are_throttled_and_logged(guarded, app, clock, caplog, attempt):
    caplog.set_level(logging.WARNING, logger="botlite.web.throttle")
    statuses = [attempt(guarded, "guess-%02d-xxxxxxxxxxxx" % n, ATTACKER).status
                for n in range(50)]
    # Only the free failures and the one that starts the lockout were checked.
    assert statuses[:FREE_FAILURES + 1] == [401] * (FREE_FAILURES + 1)
    assert statuses[FREE_FAILURES + 1:] == [429] * (50 - FREE_FAILURES - 1)
    # While locked out, even the right token is refused: guessing cannot go on.
    locked = attempt(guarded, app.token, ATTACKER)
    assert locked.status == 429 and locked.headers["retry-after"] == "1"
    # Another address is not affected.
    assert attempt(guarded, app.token, VISITOR).status in (200, 302, 303)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == FREE_FAILURES + 1, lines  # one per failure, not per attempt
    assert all(("failed login from %s" % ATTACKER) in line for line in lines)
    assert "locked out for 1 s" in lines[-1]
    clock.now += 1.0  # the lockout is over: the right token works and clears the count
    assert attempt(guarded, app.token, ATTACKER).status in (200, 302, 303)
    assert attempt(guarded, "wrong-again-xxxxxxxxxxxx", ATTACKER).status == 401


def test_each_lockout_is_twice_the_last_up_to_the_cap(clock):
    throttle = LoginThrottle(clock=clock)
    for _ in range(FREE_FAILURES):
        throttle.failed(ATTACKER, "test")
        throttle.check(ATTACKER)  # free failures lock nothing
    waits = []
    for _ in range(12):
        throttle.failed(ATTACKER, "test")
        with pytest.raises(Exception) as refused:
            throttle.check(ATTACKER)
        waits.append(refused.value.retry_after)
        clock.now += refused.value.retry_after
        throttle.check(ATTACKER)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert MAX_LOCKOUT == 300
    clock.now += 901  # forgotten after 15 quiet minutes
    throttle.failed(ATTACKER, "test")
    throttle.check(ATTACKER)


def test_an_ipv6_attacker_cannot_reset_the_count_by_changing_its_address(clock):
    throttle = LoginThrottle(clock=clock)
    for n in range(FREE_FAILURES + 1):
        throttle.failed("2001:db8::%x" % n, "test")
    with pytest.raises(Exception):
        throttle.check("2001:db8::ffff")  # same /64


def test_a_foreign_host_name_is_refused_when_bound_to_loopback(client, app):
    """A page on evil.example whose DNS answers 127.0.0.1 sends Host: evil.example."""
    refused = client.get("/api/chatbots", headers={"Host": "evil.example:8000"})
    assert refused.status == 400 and refused.json["error"]["code"] == "invalid_host"
    chat = client.post("/chatbot/message/", {"message": "hi", "chatbot_id": "default"},
                       headers={"Host": "rebind.evil.example"})
    assert chat.status == 400
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000",
                 "app.localhost"):
        assert client.get("/api/chatbots", headers={"Host": host}).status == 200, host


def test_allowed_hosts_default_and_setting(tmp_path):
    def hosts(**flags):
        return allowed_hosts(load_settings(dict(data_dir=str(tmp_path), **flags), {}))
    assert "localhost" in hosts() and "127.0.0.1" in hosts()
    assert hosts(host="0.0.0.0") is None  # reachable by other names: any, unless set
    assert hosts(host="0.0.0.0", allowed_hosts="bot.example.com, .example.org") == (
        "bot.example.com", ".example.org")
    assert hosts(allowed_hosts="*") is None


def test_allowed_hosts_setting_is_used(app, settings):
    settings.allowed_hosts = ("bot.example.com", ".example.org")
    client = WsgiClient(create_app(app), token=app.token)
    assert client.get("/api/chatbots", headers={"Host": "bot.example.com"}).status == 200
    assert client.get("/api/chatbots", headers={"Host": "a.example.org:443"}).status == 200
    assert client.get("/api/chatbots", headers={"Host": "localhost"}).status == 400
    assert client.get("/api/chatbots", headers={"Host": "example.com"}).status == 400


def test_a_bad_allowed_hosts_value_is_a_settings_error(tmp_path):
    from botlite.settings import SettingsError
    with pytest.raises(SettingsError, match="BOTLITE_ALLOWED_HOSTS: 'bot.example.com:80' "
                                            "is not a host name"):
        load_settings({"data_dir": str(tmp_path)},
                      {"BOTLITE_ALLOWED_HOSTS": "bot.example.com:80"})


def test_feedback_is_rate_limited_per_visitor(client):
    """2,000 feedback POSTs in 6 s queued 1,000 tasks."""
    def feedback(address):
        return client.post("/api/messages/12345/feedback", auth=False,
                           json_body={"helpful": True, "session_id": "s"},
                           environ={"REMOTE_ADDR": address})
    statuses = [feedback(ATTACKER).status for _ in range(40)]
    assert statuses[:30] == [404] * 30 and set(statuses[30:]) == {429}
    assert feedback(VISITOR).status == 404


def test_the_ready_line_shows_only_a_token_botlite_generated(data_dir):
    token = "the-operators-own-token-1234"
    server = ServeProcess("--port", "0", "--data-dir", data_dir,
                          env={"BOTLITE_ADMIN_TOKEN": token})
    try:
        url = server.ready_url()
        assert token not in url and "token=" not in url
    finally:
        server.stop()
    server = ServeProcess("--port", "0", "--data-dir", data_dir)
    try:
        assert "?token=" in server.ready_url()
    finally:
        server.stop()


def test_guessing_through_a_public_route_is_throttled_too(guarded, app, caplog):
    """A public route answered a wrong bearer token (403 for a foreign origin) and the
    right one (200) differently: a yes/no test for guesses, unthrottled."""
    caplog.set_level(logging.WARNING, logger="botlite.web.throttle")

    def widget(token):
        return guarded.get("/api/chatbots/default/widget", auth=False,
                           environ={"REMOTE_ADDR": ATTACKER},
                           headers={"Authorization": "Bearer " + token,
                                    "Origin": "https://evil.example"}).status
    assert [widget("guess-%02d-xxxxxxxxxxxx" % n) for n in range(10)] == [403] * 10
    assert widget(app.token) == 403  # locked out: the right token tells nothing
    assert any("a bearer token on a public route" in r.getMessage() for r in caplog.records)
    assert _bearer(guarded, app.token, ATTACKER).status == 429  # and the API knows it


def test_behind_a_trusted_proxy_any_host_is_answered_by_default(tmp_path):
    settings = load_settings({"data_dir": str(tmp_path), "trusted_proxy": "127.0.0.1"}, {})
    assert allowed_hosts(settings) is None
