"""HTML pages: log in with the admin token, then bots, knowledge, chat, tasks.

Pages are rendered on the server; their small script (static/app.js) calls the
JSON API with the session cookie and the page's CSRF token (see web/session.py).
A route parses, calls one function of botlite.dashboard, renders.
"""
from __future__ import annotations

import os

from urllib.parse import urlsplit

import bottle

from botlite import __version__, dashboard
from botlite.errors import BotliteError, TooManyRequests
from botlite.web import session
from botlite.web.app import client_address
from botlite.web.throttle import LoginThrottle

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
STATIC = os.path.join(os.path.dirname(__file__), "static")


def render(template: str, **context) -> str:
    context.setdefault("csrf", None)
    context.setdefault("section", None)
    return bottle.template(template, template_lookup=[TEMPLATES], version=__version__, **context)


def error_page(error: BotliteError) -> str:
    return render("error.tpl", error=error)


def _locked_out(exc: TooManyRequests, target: str) -> str:
    """The login form again, 429, saying how long to wait."""
    bottle.response.status = 429
    bottle.response.set_header("Retry-After", str(exc.retry_after))
    return render("login.tpl", error="Too many wrong tokens from your address. Try again "
                  "in %d seconds." % exc.retry_after,
                  login_csrf=session.login_form_token(), next=target)


def _next_target(value: str | None) -> str:
    """Where to go after logging in: a path on this site only. Control characters
    are refused outright: URL parsers drop tabs and newlines, which would turn
    "/<tab>/evil.example" into "//evil.example", another site."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(ch) <= 0x20 or ord(ch) == 0x7f for ch in value)):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") \
            or parts.path.startswith("//"):
        return "/"
    return value


def install(web: bottle.Bottle, app, throttle: LoginThrottle) -> None:
    def page(template: str, **context) -> str:
        return render(template, csrf=session.csrf_value(app.token), **context)

    @web.get("/", public=True)
    def home():
        token = bottle.request.query.get("token")
        if token is not None:
            try:
                matches = throttle.verify(client_address(), token, app.token, "the ?token= link")
            except TooManyRequests as exc:
                return _locked_out(exc, "/")
            if matches:
                session.start(app.token)
                bottle.redirect("/")
            bottle.response.status = 401
            return render("login.tpl", error="That token is not valid.",
                          login_csrf=session.login_form_token(), next="/")
        if not session.has_session(app.token):
            bottle.redirect("/login")
        return page("home.tpl", section="bots", **dashboard.home())

    @web.get("/login", public=True, db=False)
    def login_form():
        target = _next_target(bottle.request.query.get("next"))
        if session.has_session(app.token):
            bottle.redirect(target)
        return render("login.tpl", error=None, login_csrf=session.login_form_token(),
                      next=target)

    @web.post("/login", public=True, db=False)
    def login():
        target = _next_target(session.form_field("next"))
        if not session.login_form_token_ok():
            bottle.response.status = 403
            error = "The login form expired. Please enter the token again."
        else:
            try:
                matches = throttle.verify(client_address(), session.form_field("token"),
                                          app.token, "the login form")
            except TooManyRequests as exc:
                return _locked_out(exc, target)
            if matches:
                session.start(app.token)
                session.drop_login_form_token()
                bottle.redirect(target)
            bottle.response.status = 401
            error = "That token is not valid."
        return render("login.tpl", error=error, login_csrf=session.login_form_token(),
                      next=target)

    @web.post("/logout", public=True, db=False)
    def logout():
        if session.has_session(app.token) and not session.csrf_field_ok(app.token):
            bottle.response.status = 403
            return render("error.tpl", error=BotliteError(
                "The logout form expired. Reload the page and try again."))
        session.end(app.token)
        bottle.redirect("/login")

    @web.get("/static/<filename:path>", public=True, db=False)
    def static(filename):
        return bottle.static_file(filename, root=STATIC)

    @web.get("/widget.js", public=True, db=False)
    def widget_script():
        served = bottle.static_file("widget.js", root=STATIC,
                                    mimetype="text/javascript", charset="utf-8")
        served.set_header("Cache-Control", "public, max-age=300")
        served.set_header("Cross-Origin-Resource-Policy", "cross-origin")
        return served

    # -- bots ---------------------------------------------------------------------------

    @web.get("/bots/<bot_id>", page=True)
    def bot_sources(bot_id):
        return page("bot_sources.tpl", section="bots", tab="sources",
                    **dashboard.bot_sources(bot_id))

    @web.get("/bots/<bot_id>/fragments/sources", page=True)
    def bot_sources_fragment(bot_id):
        return page("sources_table.tpl", **dashboard.bot_sources(bot_id))

    @web.get("/bots/<bot_id>/sources/<source_id>", page=True)
    def source_detail(bot_id, source_id):
        return page("source.tpl", section="bots", tab="sources",
                    **dashboard.source_detail(bot_id, source_id))

    @web.get("/bots/<bot_id>/playground", page=True)
    def playground(bot_id):
        return page("playground.tpl", section="bots", tab="playground", **dashboard.bot(bot_id))

    @web.get("/bots/<bot_id>/faqs", page=True)
    def faqs(bot_id):
        return page("faqs.tpl", section="bots", tab="faqs",
                    **dashboard.bot_knowledge_extras(bot_id))

    @web.get("/bots/<bot_id>/conversations", page=True)
    def conversations(bot_id):
        return page("conversations.tpl", section="bots", tab="conversations",
                    **dashboard.conversations(app, bot_id, bottle.request.query.get("limit")))

    @web.get("/bots/<bot_id>/conversations/<conversation_id>", page=True)
    def transcript(bot_id, conversation_id):
        return page("transcript.tpl", section="bots", tab="conversations",
                    **dashboard.transcript(app, bot_id, conversation_id))

    @web.get("/bots/<bot_id>/analytics", page=True)
    def bot_analytics(bot_id):
        return page("analytics.tpl", section="bots", tab="analytics",
                    **dashboard.analytics_report(app, bot_id, bottle.request.query.get("period"),
                                                 bottle.request.query.get("refresh")))

    @web.get("/bots/<bot_id>/settings", page=True)
    def bot_settings(bot_id):
        origin = "%s://%s" % bottle.request.urlparts[:2]
        return page("settings.tpl", section="bots", tab="settings", origin=origin,
                    **dashboard.bot(bot_id))

    # -- tasks --------------------------------------------------------------------------

    @web.get("/tasks", page=True)
    def tasks():
        query = bottle.request.query
        return page("tasks.tpl", section="tasks", **dashboard.tasks(
            app.runner, query.get("status"), query.get("name"), query.get("limit")))

    @web.get("/tasks/fragments/live", page=True)
    def tasks_live():
        return page("tasks_live.tpl", **dashboard.tasks_live(app.runner))

    @web.get("/tasks/<task_id>", page=True)
    def task(task_id):
        return page("task.tpl", section="tasks", **dashboard.task(app.runner, task_id))

    # -- schedule, notifications, system ------------------------------------------------

    @web.get("/schedule", page=True)
    def schedule_page():
        return page("schedule.tpl", section="schedule", **dashboard.schedule_jobs(app.runner))

    @web.get("/notifications", page=True)
    def notifications():
        return page("notifications.tpl", section="notifications",
                    **dashboard.notifications_inbox(bottle.request.query.get("unread"),
                                                    bottle.request.query.get("limit")))

    @web.get("/system", page=True)
    def system():
        return page("system.tpl", section="system", **dashboard.system(app))
