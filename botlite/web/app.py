"""The WSGI app: bottle routes behind one plugin that does auth, connections, errors."""
from __future__ import annotations

import json
import logging
import time

import bottle

from botlite import errors, health
from botlite.web.throttle import LoginThrottle
from botlite.web import session
from botlite.widget import Caller, cors_headers, visitor_key

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 1024 * 1024

SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]


def json_response(payload: dict, status: int = 200) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(payload), status=status,
                               headers={"Content-Type": "application/json"})


def error_response(error: errors.BotliteError) -> bottle.HTTPResponse:
    response = json_response(error.to_dict(), error.status)
    for name, value in error.headers().items():
        response.set_header(name, value)
    return response


def bearer_token() -> str | None:
    # Raw environ value: bottle's decoding raises on non-ASCII bytes.
    header = bottle.request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def client_address() -> str:
    """The client's address (the proxy's, unless waitress trusts its headers)."""
    return bottle.request.environ.get("REMOTE_ADDR") or "unknown"


def current_caller() -> Caller:
    """The caller of a public chat route (``cors=True``): origin, address, admin."""
    return bottle.request.environ["botlite.caller"]


MAX_NEXT_CHARS = 2000
"""The longest page address kept for after the login (longer: its path alone)."""


class ApiPlugin:
    """Around every route: auth, a database connection for the request (unless
    db=False), client errors as JSON, and CORS headers on the public chat routes.

    Route options: ``public=True`` needs no auth; ``page=True`` is an HTML page that
    needs the browser session (else a redirect to /login); anything else is the admin
    API, which takes the bearer token, or the session cookie together with the
    X-CSRF-Token header (that is how the pages' JavaScript calls it). ``cors=True``
    routes get a ``Caller`` (see ``current_caller``). A disk that is full or takes no
    writes is answered 507 / 503 (errors.storage_error) and logged in one line;
    other unexpected exceptions are logged with their traceback and answered with a
    bare 500.
    """
    name = "botlite-api"
    api = 2

    def __init__(self, app, page_error=None, throttle: LoginThrottle | None = None) -> None:
        self.app = app
        self.page_error = page_error
        self.throttle = throttle or LoginThrottle()

    def _admin(self) -> bool:
        """Whether a public route's caller is the admin (no rate limit, any origin).
        A bearer token counts as a login attempt here too (`LoginThrottle`): the
        public routes answered a wrong one and the right one differently (403 for
        a foreign origin, 200), an unthrottled oracle. Locked out, even the right
        token is not the admin."""
        token = self.app.token
        presented = bearer_token()
        if presented:
            try:
                if self.throttle.verify(client_address(), presented, token,
                                        "a bearer token on a public route"):
                    return True
            except errors.TooManyRequests:
                return False
        return session.has_session(token) and session.csrf_header_ok(token)

    def _authorize(self, public: bool, page: bool) -> None:
        token = self.app.token
        if public:
            return
        if page:
            if not session.has_session(token):
                target = bottle.request.fullpath
                if bottle.request.query_string:
                    target += "?" + bottle.request.query_string
                if len(target) > MAX_NEXT_CHARS:  # a Location clients refuse to read
                    target = bottle.request.fullpath[:MAX_NEXT_CHARS] \
                        if len(bottle.request.fullpath) <= MAX_NEXT_CHARS else "/"
                bottle.redirect("/login?" + bottle.urlencode({"next": target}))
            return
        presented = bearer_token()
        if presented and self.throttle.verify(client_address(), presented, token,
                                              "a bearer token"):
            return
        if session.has_session(token):
            if session.csrf_header_ok(token):
                return
            raise errors.Forbidden("requests made with the dashboard session need the "
                                   "X-CSRF-Token header from the page", code="csrf_failed")
        raise errors.Unauthorized(
            "this endpoint needs the header Authorization: Bearer <admin token> "
            "(`python -m botlite token --data-dir DIR`, with the server's data "
            "dir, prints it)")

    def _caller(self) -> Caller:
        environ = bottle.request.environ
        # Not bottle's urlparts: it believes X-Forwarded-Host and -Proto.
        own = "%s://%s" % (environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", ""))
        caller = Caller(origin=environ.get("HTTP_ORIGIN") or None, own_origin=own,
                        address=client_address(),
                        admin=self._admin())
        environ["botlite.caller"] = caller
        return caller

    def _error(self, exc: errors.BotliteError, page: bool) -> bottle.HTTPResponse:
        if page and self.page_error is not None:
            return bottle.HTTPResponse(self.page_error(exc), status=exc.status,
                                       headers={"Content-Type": "text/html; charset=utf-8"})
        return error_response(exc)

    def _unexpected(self, exc: Exception, public: bool) -> errors.BotliteError:
        """A full or unwritable disk is the operator's to fix (507 / 503, one
        WARNING line); anything else is a bug (500, logged with its traceback)."""
        data_dir = self.app.settings.data_dir
        failure = errors.storage_failure(exc, data_dir)
        if failure is None:
            logger.exception("unhandled error in %s %s", bottle.request.method,
                             bottle.request.path)
            return errors.InternalError("internal error; the server log has the details")
        problem, cause = failure
        health.note_storage_failure(data_dir, problem)
        logger.warning("%s %s: %s (%s)", bottle.request.method, bottle.request.path,
                       errors.storage_error(problem, data_dir).message, errors.describe(cause))
        return errors.storage_error(problem, data_dir, public)

    def apply(self, callback, route):
        public = route.config.get("public", False)
        page = route.config.get("page", False)
        cors = route.config.get("cors", False)
        database = self.app.database if route.config.get("db", True) else None

        def handle(*args, **kwargs):
            try:
                self._authorize(public, page)
                if database is None:
                    return callback(*args, **kwargs)
                with database.connection_context():
                    return callback(*args, **kwargs)
            except errors.BotliteError as exc:
                return self._error(exc, page)
            except bottle.HTTPResponse:
                raise
            except Exception as exc:
                return self._error(self._unexpected(exc, public), page)

        if not cors:
            return handle

        def with_cors(*args, **kwargs):
            caller = self._caller()
            result = handle(*args, **kwargs)
            target = result if isinstance(result, bottle.HTTPResponse) else bottle.response
            target.add_header("Vary", "Origin")
            if caller.allow_origin:
                preflight = bottle.request.method == "OPTIONS"
                for name, value in cors_headers(caller.allow_origin, preflight).items():
                    target.set_header(name, value)
            return result
        return with_cors


def default_error_handler(res: bottle.HTTPError) -> str:
    """Errors bottle raises itself (no route, wrong method, bad body)."""
    if res.status_code >= 500 and res.exception is not None:
        logger.error("unhandled error: %s", res.traceback or res.exception)
    code = errors.STATUS_CODES.get(res.status_code, "error")
    if res.status_code == 404:
        message = "no such endpoint: %s %s" % (bottle.request.method, bottle.request.path)
    elif res.status_code == 405:
        message = "method %s is not allowed here (allowed: %s)" % (
            bottle.request.method, res.get_header("Allow", ""))
    elif res.status_code >= 500:
        message = "internal error; the server log has the details"
    else:
        message = str(res.body) or res.status_line
    bottle.response.content_type = "application/json"
    return json.dumps({"error": {"code": code, "message": message}})


def json_body() -> dict:
    """The request body as a JSON object, or a 400/413 saying what is wrong."""
    length = bottle.request.content_length
    if length > MAX_JSON_BYTES:
        raise errors.PayloadTooLarge("request body is larger than %d bytes" % MAX_JSON_BYTES)
    raw = bottle.request.body.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise errors.PayloadTooLarge("request body is larger than %d bytes" % MAX_JSON_BYTES)
    if not raw.strip():
        raise errors.BadRequest("request body must be a JSON object", code="invalid_json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadRequest("request body is not valid JSON: %s" % exc,
                                code="invalid_json") from None
    except RecursionError:
        raise errors.BadRequest("request body is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise errors.BadRequest("request body must be a JSON object", code="invalid_json")
    try:  # a lone surrogate ("\ud800") is valid JSON but no text: no database stores it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise errors.BadRequest("field %r holds a lone UTF-16 surrogate (such as \\ud800), "
                                "which is not text" % _field_with_surrogate(data)[:100],
                                code="invalid_field") from None
    return data


def _field_with_surrogate(data: dict) -> str:
    for key, value in data.items():
        try:
            json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return key.encode("utf-8", "backslashreplace").decode("utf-8")
    return "?"


class SecurityHeaders:
    """WSGI middleware adding the security headers to every response."""

    def __init__(self, wsgi) -> None:
        self.wsgi = wsgi

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            extra = [(n, v) for n, v in SECURITY_HEADERS if n.lower() not in present]
            return start_response(status, headers + extra, exc_info)
        return self.wsgi(environ, start)


LOOPBACK_NAMES = ("localhost", ".localhost", "127.0.0.1", "[::1]")
"""The allowed hosts when botlite is bound to a loopback address and none are set."""


def allowed_hosts(settings) -> tuple[str, ...] | None:
    """The Host names to answer (see BOTLITE_ALLOWED_HOSTS), or None for any.
    Behind a trusted proxy the default is any: the proxy passes the public name
    (Host or X-Forwarded-Host) while botlite listens on loopback."""
    if settings.allowed_hosts:
        return None if "*" in settings.allowed_hosts else settings.allowed_hosts
    if settings.trusted_proxy:
        return None
    import ipaddress
    host = settings.host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return LOOPBACK_NAMES if loopback else None


def host_allowed(header: str, hosts: tuple[str, ...]) -> bool:
    """Whether a Host header (name, or name:port, or [v6]:port) is in ``hosts``."""
    name = header.strip().lower()
    if name.startswith("["):
        name = name[:name.find("]") + 1] if "]" in name else name
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    return any(name == host or host.startswith(".") and
               (name.endswith(host) or name == host[1:]) for host in hosts)


class HostCheck:
    """WSGI middleware answering 400 ``invalid_host`` to a request whose Host is not
    an allowed one: a page on another name that DNS points at this server (DNS
    rebinding) reaches it with its own name as Host. A request without Host
    (HTTP/1.0, a probe) is let through: a browser always sends one."""

    def __init__(self, wsgi, hosts: tuple[str, ...] | None) -> None:
        self.wsgi = wsgi
        self.hosts = hosts

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_HOST")
        if self.hosts is None or not header or host_allowed(header, self.hosts):
            return self.wsgi(environ, start_response)
        error = errors.BadRequest(
            "this server does not answer to the host %r (allowed: %s); set "
            "BOTLITE_ALLOWED_HOSTS to add it" % (header[:100], ", ".join(self.hosts)),
            code="invalid_host")
        body = json.dumps(error.to_dict()).encode("utf-8")
        start_response("400 Bad Request", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(body)))])
        return [body]


# What waitress answers itself, before a request reaches the app (a body or headers
# it cannot read), as the API's other errors are.
_SERVER_ERROR_CODES = {431: "headers_too_large", 501: "not_implemented"}


def _json_error_channel():
    """A waitress channel class whose own error responses (400 for a malformed
    chunked body or Content-Length, 413 for a body over the limit, 431, 501)
    are the API's JSON error with the security headers, not plain text."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self):
            error = self.request.error
            code = errors.STATUS_CODES.get(error.code) or _SERVER_ERROR_CODES.get(
                error.code, "error")
            message = "%s: %s" % (error.reason.lower(), error.body) if error.body \
                else error.reason.lower()
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self.status = "%d %s" % (error.code, error.reason)
            self.response_headers.extend(
                [("Content-Type", "application/json")] + SECURITY_HEADERS)
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class GuardedChannel(HTTPChannel):
        """Also: a request's headers must arrive within `HEADER_TIMEOUT` of its first
        byte (of the connection, before any), and one address holds at most
        `PER_ADDRESS_CONNECTIONS` connections (see `guard_connections`)."""
        error_task_class = JsonErrorTask

        def __init__(self, server, sock, addr, adj, map=None):
            super().__init__(server, sock, addr, adj, map)
            self.request_began = self.creation_time
            limit = getattr(server, "per_address_limit", None)
            # One visitor per IPv4 address and IPv6 /64, worked out once per connection.
            self.visitor = visitor_key(addr[0]) if limit and addr else None
            if self.visitor and sum(
                    1 for other in server.active_channels.values()
                    if getattr(other, "visitor", None) == self.visitor) > limit:
                self.will_close = True
                # Once a minute per address: a flood of refusals is not a flood of lines.
                warned = server.__dict__.setdefault("refusals_warned", {})
                if time.monotonic() - warned.get(addr[0], -REFUSAL_LOG_INTERVAL) \
                        >= REFUSAL_LOG_INTERVAL:
                    warned[addr[0]] = time.monotonic()
                    logger.warning("refusing connections from %s: it has %d open "
                                   "already (logged once a minute)", addr[0], limit)

        def received(self, data):
            if self.request is None and data:
                self.request_began = time.time()
            return super().received(data)

        def headers_overdue(self, cutoff: float) -> bool:
            waiting = self.request is not None and not self.request.headers_finished
            idle_new = self.request is None and not self.requests and \
                self.last_activity == self.creation_time
            return (waiting or idle_new) and self.request_began < cutoff

    return GuardedChannel


HEADER_TIMEOUT = 10.0
"""Seconds a client gets to send a request's line and headers (slowloris: one
header line every few seconds kept a connection, and 100 of them the server)."""
PER_ADDRESS_CONNECTIONS = 64
"""Open connections one client address may hold (not behind a trusted proxy,
where every connection comes from the proxy's address)."""
MAINTENANCE_INTERVAL = 1.0
"""Seconds between the server's sweeps for overdue and idle connections."""
REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between two warnings about the same address's refused connections."""


def json_server_errors(server) -> None:
    """Make the waitress ``server`` (from waitress.create_server) answer the
    requests it cannot read with the API's JSON errors (see `_json_error_channel`)."""
    channel = _json_error_channel()
    for each in _servers(server):
        each.channel_class = channel


def _servers(server) -> list:
    from waitress.server import BaseWSGIServer
    return [server] if isinstance(server, BaseWSGIServer) else [
        each for each in server.map.values() if isinstance(each, BaseWSGIServer)]


def guard_connections(server, per_address: bool = True) -> None:
    """Keep the waitress ``server`` answering when clients hold connections open:
    a connection whose request headers are not complete `HEADER_TIMEOUT` seconds
    after they began is closed (checked every `MAINTENANCE_INTERVAL`), and with
    ``per_address``, an address past `PER_ADDRESS_CONNECTIONS` connections has its
    new ones closed at once. Needs the channel of `json_server_errors`."""
    for each in _servers(server):
        each.per_address_limit = PER_ADDRESS_CONNECTIONS if per_address else None
        idle_sweep = each.maintenance

        def maintenance(now, each=each, idle_sweep=idle_sweep):
            idle_sweep(now)
            cutoff = now - HEADER_TIMEOUT
            for channel in list(each.active_channels.values()):
                overdue = getattr(channel, "headers_overdue", None)
                if overdue is not None and overdue(cutoff):
                    channel.will_close = True
        each.maintenance = maintenance


def create_app(app, throttle: LoginThrottle | None = None):
    """The WSGI application for a ``botlite.app.Botlite`` (``throttle``: the failed
    logins' counter, one per web process by default)."""
    from botlite.web import api, pages

    bottle.BaseRequest.MEMFILE_MAX = MAX_JSON_BYTES
    web = bottle.Bottle(catchall=True)
    web.default_error_handler = default_error_handler
    throttle = throttle or LoginThrottle()
    web.install(ApiPlugin(app, page_error=pages.error_page, throttle=throttle))
    api.install(web, app)
    pages.install(web, app, throttle)
    return SecurityHeaders(HostCheck(web, allowed_hosts(app.settings)))
