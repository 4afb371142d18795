"""HTML pages: login with the admin token, the dashboard home."""
from __future__ import annotations

import hashlib
import hmac
import os

import bottle

from botlite import __version__, chatbots
from botlite.auth import token_matches

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
STATIC = os.path.join(os.path.dirname(__file__), "static")
SESSION_COOKIE = "botlite_session"


def session_value(token: str) -> str:
    """A session id derived from the admin token: it changes when the token does."""
    return hmac.new(token.encode(), b"botlite-session-v1", hashlib.sha256).hexdigest()


def render(name: str, **context) -> str:
    return bottle.template(name, template_lookup=[TEMPLATES], version=__version__, **context)


def install(web: bottle.Bottle, app) -> None:
    expected_session = session_value(app.token)

    def logged_in() -> bool:
        return token_matches(bottle.request.get_cookie(SESSION_COOKIE), expected_session)

    def log_in():
        bottle.response.set_cookie(SESSION_COOKIE, expected_session, path="/",
                                   httponly=True, samesite="strict",
                                   max_age=14 * 24 * 3600)

    @web.get("/", public=True)
    def home():
        token = bottle.request.query.get("token")
        if token is not None:
            if token_matches(token, app.token):
                log_in()
                bottle.redirect("/")
            bottle.response.status = 401
            return render("login.tpl", error="That token is not valid.")
        if not logged_in():
            bottle.redirect("/login")
        return render("home.tpl", bots=chatbots.list_bots())

    @web.get("/login", public=True, db=False)
    def login_form():
        return render("login.tpl", error=None)

    @web.post("/login", public=True, db=False)
    def login():
        if token_matches(bottle.request.forms.getunicode("token", ""), app.token):
            log_in()
            bottle.redirect("/")
        bottle.response.status = 401
        return render("login.tpl", error="That token is not valid.")

    @web.post("/logout", public=True, db=False)
    def logout():
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        bottle.redirect("/login")

    @web.get("/static/<filename:path>", public=True, db=False)
    def static(filename):
        return bottle.static_file(filename, root=STATIC)
