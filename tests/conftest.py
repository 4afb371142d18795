import io
import json
import os
import socket
import uuid
from urllib.parse import urlsplit
from wsgiref.util import setup_testing_defaults

import pytest

from botlite.app import Botlite
from botlite.settings import SETTINGS_BY_NAME, load_settings

SERVICES_REQUIRED = os.environ.get("BOTLITE_TEST_SERVICES") == "required"

# The suite runs with BM25 only (the behaviour without the `semantic` extra), in
# this process and in the serve/worker processes it starts; tests of hybrid
# retrieval ask for it ({"semantic": "on"}, tests/test_semantic.py).
os.environ["BOTLITE_SEMANTIC"] = "off"
object.__setattr__(SETTINGS_BY_NAME["semantic"], "default", "off")
REDIS_URL = os.environ.get("BOTLITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("BOTLITE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def _require_service(url: str, what: str) -> None:
    if _reachable(url):
        return
    message = "%s is not reachable at %s" % (what, url)
    if SERVICES_REQUIRED:
        pytest.fail(message + " (BOTLITE_TEST_SERVICES=required)")
    pytest.skip(message)


@pytest.fixture
def redis_url():
    """Tests isolate themselves by queue name (never FLUSHDB: runs may share the server)."""
    _require_service(REDIS_URL, "Redis")
    return REDIS_URL


@pytest.fixture
def postgres_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    _require_service(POSTGRES_URL, "PostgreSQL")
    import psycopg
    schema = "botlite_test_%s" % uuid.uuid4().hex[:12]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute('create schema "%s"' % schema)
    yield "%s?options=-csearch_path%%3D%s" % (POSTGRES_URL, schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute('drop schema "%s" cascade' % schema)


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return str(path)


@pytest.fixture
def settings(data_dir):
    return load_settings({"data_dir": data_dir}, environ={})


@pytest.fixture
def app(settings):
    botlite = Botlite.open(settings)
    yield botlite
    botlite.close()


class Response:
    def __init__(self, status, headers, body):
        self.status_line = status
        self.status = int(status.split()[0])
        self.headers = {name.lower(): value for name, value in headers}
        self.header_list = list(headers)  # repeated ones (Set-Cookie) too
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8")


class WsgiClient:
    """Calls the WSGI app in-process, the way a server would."""

    def __init__(self, wsgi, token=None):
        self.wsgi = wsgi
        self.token = token

    def request(self, method, path, json_body=None, body=None, headers=None, auth=True,
                environ=None):
        environ = dict(environ or {})
        setup_testing_defaults(environ)
        path, _, query = path.partition("?")
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        if auth and self.token:
            headers.setdefault("Authorization", "Bearer " + self.token)
        body = body or b""
        environ.update({"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)})
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            else:
                environ["HTTP_" + key] = value
        captured = {}

        def start_response(status, response_headers, exc_info=None):
            captured["status"], captured["headers"] = status, response_headers

        chunks = self.wsgi(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return Response(captured["status"], captured["headers"], data)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        return self.request("POST", path, json_body=json_body, **kw)

    def patch(self, path, json_body=None, **kw):
        return self.request("PATCH", path, json_body=json_body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture
def client(app):
    from botlite.web.app import create_app
    return WsgiClient(create_app(app), token=app.token)


def wait_for(condition, timeout=10.0, interval=0.02, message="condition"):
    """Poll ``condition`` until it returns a truthy value or ``timeout`` passes."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, message))
        time.sleep(interval)


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def broker_url(request, tmp_path):
    """Each queue storage in turn: a SQLite file, this machine's Redis, its PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "queue.db")
    return request.getfixturevalue({"redis": "redis_url", "postgresql": "postgres_url"}
                                   [request.param])


@pytest.fixture
def worker(app):
    """Two task worker threads of the app, running for the test."""
    runtime = app.runtime(2, schedule=False)
    runtime.start()
    yield runtime
    runtime.stop()
