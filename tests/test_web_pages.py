"""The dashboard pages, the session and its CSRF protection, in-process."""
import datetime
import re

import pytest
from bs4 import BeautifulSoup

from botlite.web.session import SESSION_COOKIE, create, csrf_value
from conftest import wait_for

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


class Browser:
    """The WSGI client with the dashboard's session cookie (and, for the API, its
    CSRF header), the way the pages' JavaScript calls it."""

    def __init__(self, client, token):
        self.client = client
        self.token = token
        self.secret = create(token)
        self.cookie = "%s=%s" % (SESSION_COOKIE, self.secret)
        self.csrf = csrf_value(token, self.secret)

    def get(self, path):
        return self.client.get(path, auth=False, headers={"Cookie": self.cookie})

    def api(self, method, path, json_body=None, csrf=True):
        headers = {"Cookie": self.cookie}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return self.client.request(method, path, json_body=json_body, auth=False,
                                   headers=headers)


@pytest.fixture
def browser(client, app):
    return Browser(client, app.token)


def _cookies(response):
    return "\n".join(value for name, value in response.header_list
                     if name.lower() == "set-cookie")


def test_pages_need_the_session_and_send_you_back_after_login(client, app):
    response = client.get("/tasks?status=FAILURE", auth=False)
    assert response.status in (302, 303)
    assert response.headers["location"].endswith("/login?next=%2Ftasks%3Fstatus%3DFAILURE")

    form = client.get("/login?next=/tasks", auth=False)
    login_cookie = re.search(r"botlite_login=([^;]+)", _cookies(form)).group(1)
    field = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert field == login_cookie
    body = ("csrf_token=%s&next=%%2Ftasks&token=%s" % (field, app.token)).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Cookie": "botlite_login=" + login_cookie}
    done = client.request("POST", "/login", body=body, headers=headers, auth=False)
    assert done.status in (302, 303) and done.headers["location"].endswith("/tasks")
    cookie = _cookies(done).lower()
    assert "botlite_session=" in cookie and "httponly" in cookie
    assert "samesite=strict" in cookie
    assert 'botlite_login=""' in cookie  # the login form's token is used up


@pytest.mark.parametrize("target", [
    "//evil.example/", "/%09/evil.example", "/%0a/evil.example", "/%0d/evil.example",
    "/%5c/evil.example", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"])
def test_login_never_sends_you_to_another_site(client, app, target):
    cookie = {"Cookie": "%s=%s" % (SESSION_COOKIE, create(app.token))}
    response = client.get("/login?next=" + target, auth=False, headers=cookie)
    assert response.status in (302, 303)
    location = response.headers["location"]
    assert location.rstrip("/").endswith("localhost") or location.endswith("/"), location
    assert "evil" not in location and "javascript" not in location


def test_the_login_form_refuses_a_post_without_its_csrf_token(client, app):
    body = ("token=%s" % app.token).encode()
    done = client.request("POST", "/login", body=body, auth=False,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 403 and "botlite_session" not in _cookies(done)
    assert "expired" in done.text


def test_a_wrong_token_in_the_login_form_is_refused(client):
    form = client.get("/login", auth=False)
    login_cookie = re.search(r"botlite_login=([^;]+)", _cookies(form)).group(1)
    body = ("csrf_token=%s&token=nope" % login_cookie).encode()
    done = client.request("POST", "/login", body=body, auth=False, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "botlite_login=" + login_cookie})
    assert done.status == 401 and "That token is not valid" in done.text
    assert "botlite_session" not in _cookies(done)


def test_logout_needs_the_csrf_field(client, browser):
    headers = {"Cookie": browser.cookie, "Content-Type": "application/x-www-form-urlencoded"}
    refused = client.request("POST", "/logout", body=b"", headers=headers, auth=False)
    assert refused.status == 403 and "botlite_session" not in _cookies(refused)
    done = client.request("POST", "/logout", body=("csrf_token=" + browser.csrf).encode(),
                          headers=headers, auth=False)
    assert done.status in (302, 303) and "botlite_session=" in _cookies(done)
    assert "max-age=-1" in _cookies(done).lower() or "expires=thu, 01 jan 1970" in \
        _cookies(done).lower()


def test_a_copy_of_the_cookie_is_worthless_after_logout(client, app, browser):
    other = Browser(client, app.token)  # a second browser stays logged in
    assert browser.get("/tasks").status == 200
    assert browser.api("GET", "/api/chatbots").status == 200
    done = client.request("POST", "/logout", body=("csrf_token=" + browser.csrf).encode(),
                          auth=False, headers={"Cookie": browser.cookie, "Content-Type":
                                               "application/x-www-form-urlencoded"})
    assert done.status in (302, 303)
    # The same cookie sent again (copied before the logout) opens nothing.
    again = browser.get("/tasks")
    assert again.status in (302, 303) and "/login" in again.headers["location"]
    refused = browser.api("GET", "/api/chatbots")
    assert refused.status == 401 and refused.json["error"]["code"] == "unauthorized"
    assert other.get("/tasks").status == 200


def test_logging_in_again_ends_the_browsers_previous_session(client, app, browser):
    again = client.get("/?token=" + app.token, auth=False, headers={"Cookie": browser.cookie})
    assert again.status in (302, 303)
    fresh = re.search(r"botlite_session=([^;]+)", _cookies(again)).group(1)
    assert fresh != browser.secret
    assert client.get("/tasks", auth=False, headers={
        "Cookie": "%s=%s" % (SESSION_COOKIE, fresh)}).status == 200
    old = browser.get("/tasks")  # a copy of the earlier cookie opens nothing now
    assert old.status in (302, 303) and "/login" in old.headers["location"]


def test_a_new_admin_token_logs_every_browser_out(client, app, browser):
    assert browser.get("/tasks").status == 200
    token = app.token
    app.token = "another-admin-token-after-a-restart"
    try:
        out = browser.get("/tasks")
        assert out.status in (302, 303) and "/login" in out.headers["location"]
        assert browser.api("GET", "/api/chatbots").status == 401
    finally:
        app.token = token
    assert browser.get("/tasks").status == 200


def test_sessions_expire_and_the_table_holds_no_cookie(client, app, browser):
    from botlite.models import WebSession
    with app.database.connection_context():
        ids = [row.id for row in WebSession.select()]
        assert ids and browser.secret not in ids
        WebSession.update(expires_at=datetime.datetime(2000, 1, 1)).execute()
    expired = browser.get("/tasks")
    assert expired.status in (302, 303) and "/login" in expired.headers["location"]
    Browser(client, app.token)  # a new login clears the expired rows
    with app.database.connection_context():
        assert not [row for row in WebSession.select() if row.id in ids]


def test_the_api_takes_the_session_only_with_the_csrf_header(browser):
    refused = browser.api("POST", "/api/chatbots", {"name": "Sneaky"}, csrf=False)
    assert refused.status == 403 and refused.json["error"]["code"] == "csrf_failed"
    assert browser.api("GET", "/api/chatbots", csrf=False).status == 403
    made = browser.api("POST", "/api/chatbots", {"name": "Helpful"})
    assert made.status == 201
    wrong = browser.client.request("GET", "/api/chatbots", auth=False, headers={
        "Cookie": browser.cookie, "X-CSRF-Token": "0" * 64})
    assert wrong.status == 403
    other = Browser(browser.client, browser.token)  # another session's CSRF token
    assert other.csrf != browser.csrf
    borrowed = browser.client.request("GET", "/api/chatbots", auth=False, headers={
        "Cookie": browser.cookie, "X-CSRF-Token": other.csrf})
    assert borrowed.status == 403


def test_every_page_renders_without_inline_script(browser, app, worker):
    bot = browser.api("POST", "/api/chatbots", {"name": "Docs"}).json
    source = browser.client.request(
        "POST", "/api/chatbots/%s/sources" % bot["id"],
        body=_multipart("guide.txt", b"The office opens at nine. Parking is free."),
        headers={"Content-Type": "multipart/form-data; boundary=XX"}).json
    wait_for(lambda: browser.api("GET", "/api/sources/" + source["source_id"])
             .json["status"] == "ready", message="the source to be ready")
    reply = browser.api("POST", "/api/chatbots/%s/chat" % bot["id"],
                        {"message": "when does the office open?"}).json
    conversation = browser.api("GET", "/api/chatbots/%s/conversations" % bot["id"]) \
        .json["conversations"][0]["id"]
    browser.api("POST", "/api/chatbots/%s/faqs" % bot["id"],
                {"question": "Is parking free?", "answer": "Yes."})
    pages = ["/", "/bots/" + bot["id"], "/bots/%s/fragments/sources" % bot["id"],
             "/bots/%s/sources/%s" % (bot["id"], source["source_id"]),
             "/bots/%s/playground" % bot["id"], "/bots/%s/faqs" % bot["id"],
             "/bots/%s/conversations" % bot["id"],
             "/bots/%s/conversations/%s" % (bot["id"], conversation),
             "/bots/%s/settings" % bot["id"], "/tasks", "/tasks/fragments/live",
             "/tasks/" + source["task_id"], "/tasks?status=SUCCESS&name=process_document",
             "/notifications", "/notifications?unread=1", "/system", "/schedule",
             "/bots/%s/analytics" % bot["id"], "/bots/%s/analytics?period=7d" % bot["id"]]
    for path in pages:
        page = browser.get(path)
        assert page.status == 200, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert not INLINE_SCRIPT.search(page.text), path
        assert not EVENT_ATTRIBUTE.search(page.text), path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        _assert_controls_are_labelled(page.text, path)
    assert reply["reply"] in browser.get(
        "/bots/%s/conversations/%s" % (bot["id"], conversation)).text
    assert "process_document" in browser.get("/tasks").text


def _assert_controls_are_labelled(html, path):
    """Every form control has a label (or aria-label); every button says what it does."""
    soup = BeautifulSoup(html, "html.parser")
    labelled = {label.get("for") for label in soup.find_all("label")}
    for control in soup.find_all(["input", "select", "textarea"]):
        if control.get("type") == "hidden":
            continue
        assert control.get("id") in labelled or control.get("aria-label"), (path, control)
    for button in soup.find_all("button"):
        assert button.get_text(strip=True) or button.get("aria-label"), (path, button)
    for link in soup.find_all("a"):
        assert link.get_text(strip=True), (path, link)


def test_user_text_is_escaped_everywhere_it_is_shown(browser, worker):
    evil = '<script>alert("x")</script>'
    bot = browser.api("POST", "/api/chatbots", {"name": evil, "greeting": evil}).json
    html = b"<html><head><title>&lt;script&gt;alert(&quot;doc&quot;)&lt;/script&gt;</title>" \
        b"</head><body><p>Refunds take five days.</p></body></html>"
    source = browser.client.request(
        "POST", "/api/chatbots/%s/sources" % bot["id"], body=_multipart("r.html", html),
        headers={"Content-Type": "multipart/form-data; boundary=XX"}).json
    wait_for(lambda: browser.api("GET", "/api/sources/" + source["source_id"])
             .json["status"] == "ready", message="the source to be ready")
    assert browser.api("GET", "/api/sources/" + source["source_id"]).json["title"] == \
        '<script>alert("doc")</script>'
    browser.api("POST", "/api/chatbots/%s/chat" % bot["id"],
                {"message": evil + " how long do refunds take?"})
    conversation = browser.api("GET", "/api/chatbots/%s/conversations" % bot["id"]) \
        .json["conversations"][0]["id"]
    for path in ["/", "/bots/" + bot["id"], "/bots/%s/playground" % bot["id"],
                 "/bots/%s/settings" % bot["id"],
                 "/bots/%s/sources/%s" % (bot["id"], source["source_id"]),
                 "/bots/%s/conversations/%s" % (bot["id"], conversation)]:
        text = browser.get(path).text
        assert "<script>alert" not in text, path
        assert "&lt;script&gt;alert(" in text, path


def test_an_unknown_bot_page_is_an_html_404(browser):
    page = browser.get("/bots/nope")
    assert page.status == 404 and "no chatbot with id" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_the_widget_script_is_served_to_any_site(client):
    script = client.get("/widget.js", auth=False)
    assert script.status == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "data-bot" in script.text


def _multipart(filename, content):
    return (b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
            filename.encode() + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" +
            content + b"\r\n--XX--\r\n")


def test_charts_escape_their_labels():
    from botlite.web import charts
    bars = charts.bar_chart("<b>title</b>", [("<i>x</i>", 3), ("y", 0)])
    line = charts.line_chart("t", [("<script>", 1.5), ("gap", None), ("z", 2)], unit=" ms")
    for svg in (bars, line):
        assert svg.startswith("<svg") and "<script>" not in svg
        assert "<i>" not in svg and "<b>" not in svg
    assert "&lt;i&gt;x&lt;/i&gt;" in bars and "&lt;script&gt;" in line
    assert line.count("<circle") == 2  # no point for the gap


def test_throughput_counts_tasks_by_the_minute_they_finished():
    from botlite.dashboard import throughput_chart
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    tasks = [{"status": "SUCCESS", "finished_at": "2023-11-14T22:13:05Z"},
             {"status": "SUCCESS", "finished_at": "2023-11-14T22:13:10Z"},
             {"status": "FAILURE", "finished_at": "2023-11-14T22:12:59Z"},
             {"status": "SUCCESS", "finished_at": "2023-11-14T20:00:00Z"},  # too old
             {"status": "STARTED", "finished_at": None}]
    svg = throughput_chart(tasks, now)
    assert "22:13 succeeded: 2</title>" in svg
    assert "22:12 failed or revoked: 1</title>" in svg
    assert svg.count("<rect") == 2


@pytest.mark.parametrize("path", ["/login", "/logout"])
def test_a_form_with_invalid_utf8_is_refused_not_a_500(client, app, path):
    boundary = "b0undary"
    body = b"".join(b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (
        boundary.encode(), name, value) for name, value in [
            (b"csrf_token", b"\xed\xb2\x80"), (b"token", app.token.encode()),
            (b"next", b"/x\xed\xb2\x80")]) + b"--%s--\r\n" % boundary.encode()
    answer = client.request("POST", path, body=body, auth=False, headers={
        "Content-Type": "multipart/form-data; boundary=" + boundary})
    assert answer.status in (302, 303, 403), answer.text
    assert "botlite_session=" not in _cookies(answer) or path == "/logout"


def test_a_huge_page_address_is_not_carried_into_the_login_redirect(client):
    answer = client.get("/tasks?x=" + "x" * 100_000, auth=False)
    assert answer.status in (302, 303)
    assert len(answer.headers["location"]) < 4000
    assert answer.headers["location"].endswith("/login?next=%2Ftasks")
