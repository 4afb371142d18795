"""The browser session: a server-side login behind a random cookie, and its CSRF token.

Logging in stores a row (`WebSession`) and gives the browser a random secret in
an HttpOnly, SameSite=Strict cookie; the row's id is an HMAC of that secret keyed
by the admin token, so the table holds no usable cookie and a new admin token
logs every browser out. Logging out deletes the row: a copy of the cookie is
then worth nothing. Sessions end after `SESSION_MAX_AGE` in any case.

Every state-changing request a page makes carries the session's CSRF token too
(an HMAC of the session): form posts in a hidden ``csrf_token`` field, the pages'
JavaScript in the ``X-CSRF-Token`` header.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

import bottle

from botlite.auth import token_matches
from botlite.db import database
from botlite.models import WebSession
from botlite.timeutil import utcnow

SESSION_COOKIE = "botlite_session"
LOGIN_COOKIE = "botlite_login"
CSRF_HEADER = "HTTP_X_CSRF_TOKEN"
SESSION_MAX_AGE = 14 * 24 * 3600
_MAX_COOKIE_CHARS = 200
_REQUEST_KEY = "botlite.session"


def _derive(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode(), purpose, hashlib.sha256).hexdigest()


def _session_id(token: str, secret: str) -> str:
    return _derive(token, b"botlite-session-v2:" + secret.encode())


def create(token: str) -> str:
    """Store a new session and return the secret for its cookie (expired ones go)."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    with database.connection_context():
        WebSession.delete().where(WebSession.expires_at <= now).execute()
        WebSession.create(id=_session_id(token, secret), created_at=now,
                          expires_at=now + datetime.timedelta(seconds=SESSION_MAX_AGE))
    return secret


def _valid(token: str, secret: str | None) -> str | None:
    """The session id of a cookie's secret when that session exists and is current."""
    if not secret or len(secret) > _MAX_COOKIE_CHARS:
        return None
    session_id = _session_id(token, secret)
    with database.connection_context():
        row = WebSession.select(WebSession.expires_at).where(
            WebSession.id == session_id).first()
    return session_id if row is not None and row.expires_at > utcnow() else None


def _current(token: str) -> str | None:
    """This request's session id, or None (looked up once per request)."""
    environ = bottle.request.environ
    if _REQUEST_KEY not in environ:
        environ[_REQUEST_KEY] = _valid(token, bottle.request.get_cookie(SESSION_COOKIE))
    return environ[_REQUEST_KEY]


def has_session(token: str) -> bool:
    return _current(token) is not None


def csrf_value(token: str, secret: str | None = None) -> str | None:
    """The CSRF token of the session whose cookie holds ``secret`` (default: this
    request's session), or None without a session."""
    session_id = _current(token) if secret is None else _session_id(token, secret)
    return _derive(token, b"botlite-csrf-v2:" + session_id.encode()) if session_id else None


def csrf_header_ok(token: str) -> bool:
    expected = csrf_value(token)
    return expected is not None and token_matches(
        bottle.request.environ.get(CSRF_HEADER), expected)


def csrf_field_ok(token: str) -> bool:
    expected = csrf_value(token)
    return expected is not None and token_matches(
        form_field("csrf_token"), expected)


def _secure() -> bool:
    """Over https (directly, or as a trusted proxy says), cookies are https-only."""
    return bottle.request.urlparts.scheme == "https"


def start(token: str) -> None:
    """Log this browser in: a new session and its cookie (a session this browser
    already had is deleted, so a copy of its old cookie stops working too)."""
    _delete(_current(token))
    secret = create(token)
    bottle.request.environ[_REQUEST_KEY] = _session_id(token, secret)
    bottle.response.set_cookie(SESSION_COOKIE, secret, path="/",
                               httponly=True, samesite="strict", max_age=SESSION_MAX_AGE,
                               secure=_secure())


def end(token: str) -> None:
    """Log out: the session is deleted (a copy of its cookie is worth nothing) and
    the browser's cookie dropped."""
    _delete(_current(token))
    bottle.request.environ[_REQUEST_KEY] = None
    bottle.response.delete_cookie(SESSION_COOKIE, path="/")


def _delete(session_id: str | None) -> None:
    if session_id is not None:
        with database.connection_context():
            WebSession.delete().where(WebSession.id == session_id).execute()


def login_form_token() -> str:
    """A fresh double-submit token for the login form (there is no session yet)."""
    value = secrets.token_urlsafe(24)
    bottle.response.set_cookie(LOGIN_COOKIE, value, path="/login", httponly=True,
                               samesite="strict", max_age=3600, secure=_secure())
    return value


def drop_login_form_token() -> None:
    """After a successful login the form's token is used up."""
    bottle.response.delete_cookie(LOGIN_COOKIE, path="/login")


def login_form_token_ok() -> bool:
    return token_matches(form_field("csrf_token"),
                         bottle.request.get_cookie(LOGIN_COOKIE) or "")


def form_field(name: str) -> str:
    """A field of the posted form, "" when absent or not readable text (bottle
    raises UnicodeDecodeError for invalid UTF-8 in a multipart part: it was a 500).
    A form that cannot be read is then refused like one without the field."""
    try:
        return bottle.request.forms.getunicode(name, "") or ""
    except (UnicodeDecodeError, ValueError):
        return ""
