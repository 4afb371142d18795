"""The browser session: a cookie derived from the admin token, and its CSRF token.

The session cookie is HttpOnly and SameSite=Strict. Every state-changing request a
page makes carries the CSRF token too: form posts in a hidden ``csrf_token`` field,
the pages' JavaScript in the ``X-CSRF-Token`` header. Both values are HMACs of the
admin token, so changing the token logs every browser out.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

import bottle

from botlite.auth import token_matches

SESSION_COOKIE = "botlite_session"
LOGIN_COOKIE = "botlite_login"
CSRF_HEADER = "HTTP_X_CSRF_TOKEN"
SESSION_MAX_AGE = 14 * 24 * 3600


def _derive(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode(), purpose, hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    """A session id derived from the admin token: it changes when the token does."""
    return _derive(token, b"botlite-session-v1")


def csrf_value(token: str) -> str:
    return _derive(token, b"botlite-csrf-v1")


def has_session(token: str) -> bool:
    return token_matches(bottle.request.get_cookie(SESSION_COOKIE), session_value(token))


def csrf_header_ok(token: str) -> bool:
    return token_matches(bottle.request.environ.get(CSRF_HEADER), csrf_value(token))


def csrf_field_ok(token: str) -> bool:
    return token_matches(bottle.request.forms.getunicode("csrf_token", ""), csrf_value(token))


def _secure() -> bool:
    """Over https (directly, or as a trusted proxy says), cookies are https-only."""
    return bottle.request.urlparts.scheme == "https"


def start(token: str) -> None:
    bottle.response.set_cookie(SESSION_COOKIE, session_value(token), path="/",
                               httponly=True, samesite="strict", max_age=SESSION_MAX_AGE,
                               secure=_secure())


def end() -> None:
    bottle.response.delete_cookie(SESSION_COOKIE, path="/")


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
    return token_matches(bottle.request.forms.getunicode("csrf_token", ""),
                         bottle.request.get_cookie(LOGIN_COOKIE) or "")
