"""DNS rebinding: the crawler and webhook deliveries connect only to the address
their check approved (botlite/pinned.py).

``socket.getaddrinfo`` is replaced by a resolver that answers the test's names from
a script: a rebinding DNS server answers a "public" address for the check and
127.0.0.1, where a real server on a free port records every request, afterwards.
The "public" address is 127.0.0.2, which the check is told to count as public:
nothing listens there, so a connection pinned to it is refused on this machine
and no test sends a packet anywhere but the loopback interface.
"""
import datetime
import functools
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from botlite import notifications, pinned, webhooks
from botlite.knowledge import crawl as crawl_module
from botlite.knowledge.crawl import UnsafeURL, crawl

PUBLIC = "127.0.0.2"
"""Counted as public by the check in these tests; nothing listens on it."""
LOOPBACK = "127.0.0.1"
SECRET = "s3cret-s3cret-s3cret"
HTML = "<html><head><title>%s</title></head><body><main><h1>%s</h1><p>The text of %s.</p>" \
       "%s</main></body></html>"


def page(title, *links):
    anchors = "".join('<a href="%s">link</a>' % href for href in links)
    return (HTML % (title, title, title, anchors)).encode()


class Server:
    """HTTP(S) on 127.0.0.1 at a free port. GET answers ``pages`` (path -> HTML or
    ("redirect", location)), POST answers 200; each request is recorded with its
    Host header and client port, and each TLS handshake with its SNI name."""

    def __init__(self, pages=None, tls=None):
        self.pages = dict(pages or {})
        self.requests = []
        self.server_names = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.record(self)
                body = server.pages.get(self.path)
                if isinstance(body, tuple):
                    self.send_response(302)
                    self.send_header("Location", body[1])
                    body = b""
                else:
                    self.send_response(200 if body is not None else 404)
                    body = body if body is not None else b"not found"
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.record(self)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # refused handshakes, closed clients
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def record(self, handler):
        self.requests.append({"method": handler.command, "path": handler.path,
                              "host": handler.headers.get("Host"),
                              "client_port": handler.client_address[1]})

    def url(self, host, path="/", scheme="http"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    servers = []

    def start(pages=None, tls=None):
        servers.append(Server(pages, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


class Resolver:
    """Answers for the test's host names: ``script(name, first, second, ...)``
    gives the answers of successive lookups, the last one repeating."""

    def __init__(self):
        self.scripts = {}
        self.lookups = []

    def script(self, name, *answers):
        self.scripts[name] = list(answers)

    def getaddrinfo(self, host, port, *args, **kwargs):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        if host not in self.scripts:  # no test asks a real DNS server anything
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        self.lookups.append(host)
        answers = self.scripts[host]
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture
def resolver(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    fake = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    real = crawl_module._is_public
    monkeypatch.setattr(crawl_module, "_is_public",
                        lambda address: str(address) == PUBLIC or real(address))
    return fake


@pytest.fixture
def connects(monkeypatch):
    """The address of every outgoing TCP connection attempt."""
    made = []
    real = socket.socket.connect

    def connect(sock, address):
        made.append(address[0])
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return made


# --- the crawler --------------------------------------------------------------------

def test_a_start_url_whose_host_rebinds_to_loopback_is_never_fetched(serve, resolver, connects):
    # TTL 0, alternating: what the previous code checked it did not connect to.
    inside = serve({"/": page("Internal admin"), "/robots.txt": b""})
    resolver.script("rebind.example", PUBLIC, LOOPBACK, PUBLIC, LOOPBACK, PUBLIC, LOOPBACK)
    with pytest.raises(UnsafeURL) as refused:
        crawl(inside.url("rebind.example"), delay=0, timeout=2, retries=0)
    assert inside.requests == []
    assert str(refused.value) == (
        "can't crawl %s: rebind.example (127.0.0.1) is a private or reserved address; only "
        "public addresses are allowed" % inside.url("rebind.example"))
    assert refused.value.permanent
    assert set(connects) <= {PUBLIC}  # robots.txt went to the address it was checked for


def test_a_redirect_to_a_host_that_rebinds_is_never_followed_to_loopback(
        serve, resolver, connects):
    inside = serve({"/": page("Internal admin")})
    start = serve({"/": ("redirect", inside.url("rebind.example"))})
    resolver.script("rebind.example", PUBLIC, LOOPBACK)  # checked once, then rebound
    with pytest.raises(UnsafeURL) as refused:
        crawl(start.url(LOOPBACK), allowed_hosts={LOOPBACK}, delay=0, timeout=2,
              retries=1, backoff=0)
    assert inside.requests == []
    assert refused.value.reason == (
        "redirects to %s, which is refused: rebind.example (127.0.0.1) is a private or "
        "reserved address; only public addresses are allowed" % inside.url("rebind.example"))
    # The first attempt was pinned to the checked address; the second was refused.
    assert [address for address in connects if address != LOOPBACK] == [PUBLIC]


def test_pinned_requests_keep_the_host_name(serve, resolver):
    site = serve({"/": page("Home", "/a.html"), "/a.html": page("A")})
    resolver.script("docs.pinned.example", LOOPBACK)
    result = crawl(site.url("docs.pinned.example"), allow_private=True, delay=0, timeout=2,
                   retries=0)
    assert [p.title for p in result.pages] == ["Home", "A"]
    assert {r["host"] for r in site.requests} == {"docs.pinned.example:%d" % site.port}
    assert result.pages[0].url == site.url("docs.pinned.example")
    assert len(resolver.lookups) == len({r["client_port"] for r in site.requests})


def test_a_kept_alive_connection_serves_only_the_name_it_was_made_for(serve, resolver):
    site = serve({"/": page("Home")})
    resolver.script("a.pinned.example", LOOPBACK)
    resolver.script("b.pinned.example", LOOPBACK)
    resolve = functools.partial(crawl_module.addresses_to_connect, allow_private=True)
    with requests.Session() as session:
        pinned.mount(session, resolve)
        for host in ("a.pinned.example", "a.pinned.example", "b.pinned.example"):
            assert session.get(site.url(host), timeout=2).status_code == 200
    first, again, other = site.requests
    assert first["client_port"] == again["client_port"]  # kept alive for the same name
    assert other["client_port"] != first["client_port"]  # never lent to another name
    assert other["host"] == "b.pinned.example:%d" % site.port
    assert resolver.lookups == ["a.pinned.example", "b.pinned.example"]


def test_https_verifies_the_certificate_and_sends_sni_for_the_name(serve, resolver, tmp_path):
    ca_file, tls = _tls_for("tls.pinned.example", tmp_path)
    site = serve({"/": page("Secure")}, tls=tls)
    resolver.script("tls.pinned.example", LOOPBACK)
    resolver.script("other.pinned.example", LOOPBACK)
    resolve = functools.partial(crawl_module.addresses_to_connect, allow_private=True)
    with requests.Session() as session:
        pinned.mount(session, resolve)
        answer = session.get(site.url("tls.pinned.example", scheme="https"), timeout=2,
                             verify=ca_file)
        assert answer.status_code == 200 and b"Secure" in answer.content
        with pytest.raises(requests.exceptions.SSLError,  # the certificate is for another name
                           match="Hostname mismatch"):
            session.get(site.url("other.pinned.example", scheme="https"), timeout=2,
                        verify=ca_file)
    assert site.server_names[0] == "tls.pinned.example"
    assert site.requests[0]["host"] == "tls.pinned.example:%d" % site.port


def _tls_for(name, folder):
    """A CA file and a server context whose certificate (signed by that CA) is for ``name``."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, key, issuer, issuer_key, ca):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "botlite test CA")])
    ca = certificate(ca_name, ca_key, ca_name, ca_key, True)
    leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key,
                       ca_name, ca_key, False)
    ca_file, cert_file, key_file = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return str(ca_file), context


def test_through_a_proxy_the_host_is_still_checked(serve, resolver, monkeypatch):
    proxy = serve({})
    monkeypatch.setenv("HTTP_PROXY", proxy.url(LOOPBACK, ""))
    resolver.script("rebind.example", LOOPBACK)
    with pytest.raises(UnsafeURL, match=r"rebind\.example \(127\.0\.0\.1\) is a private"):
        crawl("http://rebind.example/", delay=0, timeout=2, retries=0)
    assert proxy.requests == []


# --- webhooks -------------------------------------------------------------------------

def test_a_webhook_whose_host_rebinds_to_loopback_is_never_posted(serve, resolver):
    receiver = serve()
    url = receiver.url("hooks.rebind.example", "/hook")
    resolver.script("hooks.rebind.example", PUBLIC, LOOPBACK)
    notifications.check_webhook_url(url, False)  # passes: the first answer is "public"
    with pytest.raises(webhooks.DeliveryRefused) as refused:
        webhooks.deliver(url, SECRET, {"event": "notification"}, "1", 2, allow_private=False)
    assert receiver.requests == []
    assert str(refused.value) == ("webhook refused: hooks.rebind.example (127.0.0.1) is a "
                                  "private or reserved address; only public addresses are "
                                  "allowed")
    assert refused.value.permanent


def test_a_webhook_delivery_connects_to_the_address_it_checked(serve, resolver, connects):
    receiver = serve()
    url = receiver.url("hooks.rebind.example", "/hook")
    resolver.script("hooks.rebind.example", PUBLIC, LOOPBACK)
    with pytest.raises(webhooks.DeliveryFailed, match="cannot reach the receiver"):
        webhooks.deliver(url, SECRET, {"event": "notification"}, "1", 2, allow_private=False)
    assert connects == [PUBLIC] and receiver.requests == []


def test_a_bots_webhook_that_rebinds_is_never_posted(app, serve, resolver):
    from botlite.models import Notification
    receiver = serve()
    url = receiver.url("hooks.rebind.example", "/hook")
    resolver.script("hooks.rebind.example", PUBLIC, LOOPBACK)
    with app.database.connection_context():
        note = notifications.store("ops", "Title", "Body", webhook=True)
        with pytest.raises(webhooks.DeliveryFailed):
            notifications.deliver_once(note.id, (url, SECRET, True), 2.0, allow_private=False)
        assert Notification.get_by_id(note.id).webhook_status == "failed"
    assert receiver.requests == []


def test_a_pinned_webhook_keeps_the_host_name(serve, resolver):
    receiver = serve()
    resolver.script("hooks.pinned.example", LOOPBACK)
    url = receiver.url("hooks.pinned.example", "/hook")
    assert webhooks.deliver(url, SECRET, {"event": "notification"}, "1", 2) == 200
    assert webhooks.deliver(url, SECRET, {"event": "notification"}, "2", 2,
                            allow_private=True) == 200
    assert [(r["method"], r["path"], r["host"]) for r in receiver.requests] == [
        ("POST", "/hook", "hooks.pinned.example:%d" % receiver.port)] * 2
    assert resolver.lookups == ["hooks.pinned.example"] * 2
