"""The crawler against a real HTTP server on 127.0.0.1, serving a small site
defined in each test; the server logs every request path it receives."""
import hashlib
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from botlite.knowledge import crawl as crawl_module
from botlite.knowledge.crawl import (
    USER_AGENT,
    CrawlError,
    UnsafeURL,
    canonical_url,
    check_url,
    crawl,
)

HTML = {"Content-Type": "text/html; charset=utf-8"}


def page(title, *links, head=""):
    anchors = "".join('<li><a href="%s">link</a></li>' % href for href in links)
    return (200, HTML, (
        "<html><head><title>%s</title>%s</head><body><main><h1>%s</h1>"
        "<p>This is the text of %s.</p><ul>%s</ul></main></body></html>"
        % (title, head, title, title, anchors)).encode())


def redirect(location, status=302):
    return (status, {"Location": location}, b"")


class Site:
    """``routes`` maps a request path (with its query) to (status, headers, body)
    or to a function of the site returning one. A header set to None is left
    out; without Content-Length the body ends with the connection."""

    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.requests = []
        self.clients = []
        """The client port of each request: one per connection."""
        self.user_agents = []
        self.times = []
        self.release = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.origin = "http://127.0.0.1:%d" % self.server.server_address[1]
        # A short poll interval only makes shutdown() quick.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def url(self, path="/"):
        return self.origin + path

    def count(self, path):
        return self.requests.count(path)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the client gave up on a slow answer: expected


def _handler(site):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # headers and body in one write (no Nagle/delayed-ACK stalls)

        def do_GET(self):
            site.times.append(time.monotonic())
            site.requests.append(self.path)
            site.clients.append(self.client_address[1])
            site.user_agents.append(self.headers.get("User-Agent"))
            route = site.routes.get(self.path, (404, HTML, b"<p>not found</p>"))
            status, headers, body = route(site) if callable(route) else route
            self.send_response(status)
            headers = dict(headers)
            if "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            if headers["Content-Length"] is None:
                headers["Connection"] = "close"
                self.close_connection = True
            for name, value in headers.items():
                if value is not None:
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def serve():
    sites = []

    def start(routes=None):
        site = Site(routes)
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.close()


def crawl_site(site, path="/", **options):
    options = {"allow_private": True, "delay": 0, "timeout": 2, "retries": 0, "backoff": 0,
               **options}
    return crawl(site.url(path), **options)


def urls(result, site):
    return [p.url.replace(site.origin, "") for p in result.pages]


def skipped(result, site):
    return {s.url.replace(site.origin, ""): s.reason for s in result.skipped}


class RecordingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, request, **kwargs):
        self.sent.append(request.url)
        return super().send(request, **kwargs)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- scope, depth, limits ---------------------------------------------------------

CHAIN = {
    "/": page("Home", "a.html", "b.html"),
    "/a.html": page("A", "c.html"),
    "/b.html": page("B", "a.html"),
    "/c.html": page("C", "d.html"),
    "/d.html": page("D"),
}


def test_reads_breadth_first_and_not_beyond_max_depth(serve):
    site = serve(CHAIN)
    progress = []
    result = crawl_site(site, max_depth=2, on_progress=lambda *call: progress.append(call))

    assert urls(result, site) == ["/", "/a.html", "/b.html", "/c.html"]
    assert [p.depth for p in result.pages] == [0, 1, 1, 2]
    assert "/d.html" not in site.requests
    assert skipped(result, site)["/d.html"] == "beyond max depth"
    assert progress[-1] == (4, 4)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert set(site.user_agents) == {USER_AGENT}
    home = result.pages[0]
    assert (home.title, home.url) == ("Home", site.url("/"))
    assert "This is the text of Home." in home.document.text
    assert home.content_hash == hashlib.sha256(
        " ".join(home.document.text.split()).encode()).hexdigest()
    assert urls(crawl_site(site, max_depth=2), site) == urls(result, site)  # deterministic


def test_stops_at_max_pages(serve):
    site = serve(CHAIN)
    progress = []
    result = crawl_site(site, max_pages=2, on_progress=lambda *call: progress.append(call))

    assert urls(result, site) == ["/", "/a.html"]
    assert "/b.html" not in site.requests and "/c.html" not in site.requests
    assert progress[-1] == (2, 2)


def test_max_depth_zero_reads_the_start_page_only(serve):
    site = serve(CHAIN)
    result = crawl_site(site, max_depth=0)
    assert urls(result, site) == ["/"]
    assert site.requests == ["/robots.txt", "/"]


def test_stays_under_the_start_urls_directory(serve):
    site = serve({
        "/docs/intro.html": page("Intro", "/blog/post.html", "guide/setup.html",
                                 "http://example.com/elsewhere", "mailto:a@example.com"),
        "/docs/guide/setup.html": page("Setup"),
        "/blog/post.html": page("Post"),
    })
    result = crawl_site(site, "/docs/intro.html")

    assert urls(result, site) == ["/docs/intro.html", "/docs/guide/setup.html"]
    assert "/blog/post.html" not in site.requests
    assert skipped(result, site) == {"/blog/post.html": "outside the start URL's path"}


def test_loops_fragments_duplicates_and_canonical_links_read_each_page_once(serve):
    site = serve()
    site.routes.update({
        "/": page("Home", "a.html", "a.html#part", "./a.html", "//%s/a.html" % site.origin[7:],
                  "b.html?y=2&x=1", "/b.html?x=1&y=2", "article.html?utm=mail", "article.html",
                  "HTTP://127.0.0.1:%s//a.html" % site.origin.rsplit(":", 1)[1]),
        "/a.html": page("A", "/", "b.html?x=1&y=2#top"),
        "/b.html?x=1&y=2": page("B", "a.html"),
        "/article.html?utm=mail": page(
            "Article", head='<link rel="canonical" href="/article.html">'),
        "/article.html": page("Article"),
    })
    result = crawl_site(site)

    assert urls(result, site) == ["/", "/a.html", "/b.html?x=1&y=2", "/article.html"]
    counts = Counter(site.requests)
    assert counts["/"] == counts["/a.html"] == counts["/b.html?x=1&y=2"] == 1
    assert counts["/article.html?utm=mail"] == 1 and "/article.html" not in counts
    assert result.skipped == []


def test_same_text_under_two_urls_is_kept_once(serve):
    site = serve({
        "/": page("Home", "one.html", "two.html"),
        "/one.html": page("Twin"),
        "/two.html": page("Twin"),
    })
    result = crawl_site(site)
    assert urls(result, site) == ["/", "/one.html"]
    assert skipped(result, site) == {"/two.html": "same text as %s" % site.url("/one.html")}


def test_redirect_inside_scope_records_the_final_url(serve):
    site = serve({
        "/": page("Home", "old.html", "new.html"),
        "/old.html": redirect("/new.html", 301),
        "/new.html": page("New"),
    })
    result = crawl_site(site)
    assert urls(result, site) == ["/", "/new.html"]
    assert site.count("/new.html") == 1


def test_a_redirect_loop_ends(serve):
    site = serve({"/": page("Home", "r1"), "/r1": redirect("/r2"), "/r2": redirect("/r1")})
    result = crawl_site(site)
    assert skipped(result, site) == {"/r1": "too many redirects (more than 5)"}
    assert site.count("/r1") + site.count("/r2") == 6


def test_page_without_text_is_skipped_but_its_links_are_followed(serve):
    site = serve({
        "/": page("Home", "menu.html"),
        "/menu.html": (200, HTML, b'<html><body><nav><a href="deep.html">Deep</a></nav></body>'
                                  b'</html>'),
        "/deep.html": page("Deep"),
    })
    result = crawl_site(site)
    assert urls(result, site) == ["/", "/deep.html"]
    assert skipped(result, site) == {"/menu.html": "no text"}


def test_charset_from_the_http_header(serve):
    site = serve({"/": (200, {"Content-Type": "text/html; charset=iso-8859-1"},
                        b"<html><body><p>Caf\xe9 cr\xe8me</p></body></html>")})
    assert crawl_site(site).pages[0].document.text == "Café crème"


# --- robots.txt and sitemaps ---------------------------------------------------------

def test_robots_txt_disallow_for_our_agent_is_respected(serve):
    site = serve({
        "/robots.txt": (200, {"Content-Type": "text/plain"},
                        b"User-agent: *\nDisallow:\n\nUser-agent: botlite\nDisallow: /private/\n"),
        "/": page("Home", "private/secret.html", "public.html"),
        "/private/secret.html": page("Secret"),
        "/public.html": page("Public"),
    })
    result = crawl_site(site)

    assert urls(result, site) == ["/", "/public.html"]
    assert "/private/secret.html" not in site.requests
    assert skipped(result, site)["/private/secret.html"] == "robots.txt disallows it"
    assert site.count("/robots.txt") == 1


def test_start_url_disallowed_by_robots_txt_fails_permanently(serve):
    site = serve({"/robots.txt": (200, {}, b"User-agent: *\nDisallow: /\n"), "/": page("Home")})
    with pytest.raises(CrawlError) as raised:
        crawl_site(site)
    assert raised.value.permanent
    assert "robots.txt disallows it" in str(raised.value)
    assert site.requests == ["/robots.txt"]


def test_robots_txt_failure_is_noted_and_the_crawl_proceeds(serve):
    site = serve({"/robots.txt": (503, {}, b"busy"), "/": page("Home", "a.html"),
                  "/a.html": page("A")})
    result = crawl_site(site)
    assert urls(result, site) == ["/", "/a.html"]
    note = skipped(result, site)["/robots.txt"]
    assert note.startswith("robots.txt could not be read (HTTP 503)")


def test_robots_txt_crawl_delay_slows_the_crawl(serve):
    site = serve({"/robots.txt": (200, {}, b"User-agent: *\nCrawl-delay: 1\n"),
                  "/": page("Home")})
    started = time.monotonic()
    crawl_site(site, max_depth=0)
    assert time.monotonic() - started >= 1.0
    assert site.requests == ["/robots.txt", "/"]


def test_sitemap_surfaces_an_unlinked_page(serve):
    site = serve()
    site.routes.update({
        "/": page("Home"),
        "/hidden.html": page("Hidden"),
        "/sitemap.xml": (200, {"Content-Type": "application/xml"}, (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<url><loc>%s/</loc></url><url><loc> %s/hidden.html </loc></url>"
            "<url><loc>http://example.com/other.html</loc></url></urlset>"
            % (site.origin, site.origin)).encode()),
    })
    result = crawl_site(site)

    assert urls(result, site) == ["/", "/hidden.html"]
    assert result.pages[1].depth == 1
    assert result.used_sitemap
    assert site.requests == ["/robots.txt", "/", "/sitemap.xml", "/hidden.html"]


def test_sitemap_index_listed_in_robots_txt_is_followed_one_level(serve):
    site = serve()
    site.routes.update({
        "/robots.txt": (200, {}, ("Sitemap: %s/maps/index.xml\n" % site.origin).encode()),
        "/": page("Home"),
        "/maps/index.xml": (200, {}, (
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<sitemap><loc>%s/maps/pages.xml</loc></sitemap></sitemapindex>"
            % site.origin).encode()),
        "/maps/pages.xml": (200, {}, (
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<url><loc>%s/hidden.html</loc></url></urlset>" % site.origin).encode()),
        "/hidden.html": page("Hidden"),
    })
    result = crawl_site(site)
    assert urls(result, site) == ["/", "/hidden.html"]
    assert result.used_sitemap
    assert "/sitemap.xml" not in site.requests


def test_no_sitemap_is_fine(serve):
    site = serve({"/": page("Home")})
    result = crawl_site(site)
    assert not result.used_sitemap and result.skipped == []


def test_sitemap_with_a_dtd_is_ignored(serve):
    site = serve({
        "/": page("Home"),
        "/hidden.html": page("Hidden"),
        "/sitemap.xml": (200, {}, b'<!DOCTYPE urlset [<!ENTITY x "/hidden.html">]>'
                                  b"<urlset><url><loc>&x;</loc></url></urlset>"),
    })
    result = crawl_site(site)
    assert urls(result, site) == ["/"] and not result.used_sitemap


# --- failures ------------------------------------------------------------------------

def test_slow_page_times_out_and_the_crawl_continues(serve):
    def slow(site):
        site.release.wait(5)
        return page("Slow")

    site = serve({"/": page("Home", "slow.html", "fast.html"), "/slow.html": slow,
                  "/fast.html": page("Fast")})
    started = time.monotonic()
    result = crawl_site(site, timeout=0.3)

    assert urls(result, site) == ["/", "/fast.html"]
    assert skipped(result, site)["/slow.html"] == "timed out after 0.3 s"
    assert time.monotonic() - started < 2


def test_a_500_that_recovers_is_retried(serve):
    def flaky(site):
        return page("Flaky") if site.count("/flaky.html") > 1 else (500, HTML, b"oops")

    site = serve({"/": page("Home", "flaky.html"), "/flaky.html": flaky})
    result = crawl_site(site, retries=2, backoff=0.01)
    assert urls(result, site) == ["/", "/flaky.html"]
    assert site.count("/flaky.html") == 2


def test_a_permanent_500_is_skipped_after_all_attempts(serve):
    site = serve({"/": page("Home", "broken.html"), "/broken.html": (500, HTML, b"oops")})
    result = crawl_site(site, retries=2, backoff=0.01)
    assert urls(result, site) == ["/"]
    assert skipped(result, site)["/broken.html"] == "HTTP 500 (3 attempts)"
    assert site.count("/broken.html") == 3


def test_4xx_is_skipped_without_retry(serve):
    site = serve({"/": page("Home", "gone.html")})
    result = crawl_site(site, retries=2, backoff=0.01)
    assert skipped(result, site)["/gone.html"] == "HTTP 404"
    assert site.count("/gone.html") == 1


def test_non_html_link_is_skipped_with_its_type(serve):
    site = serve({"/": page("Home", "report.pdf"),
                  "/report.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.7 ...")})
    result = crawl_site(site)
    assert skipped(result, site)["/report.pdf"] == "not an HTML page (application/pdf)"


def test_bodies_over_max_bytes_are_not_read(serve):
    big = page("Big")[2] + b" " * (5120 - len(page("Big")[2]))
    site = serve({
        "/": page("Home", "declared.html", "streamed.html"),
        "/declared.html": (200, HTML, big),
        "/streamed.html": (200, {**HTML, "Content-Length": None}, big),
    })
    result = crawl_site(site, max_bytes=4096)
    reasons = skipped(result, site)
    assert reasons["/declared.html"] == "too large (5 KB; the limit is 4 KB)"
    assert reasons["/streamed.html"] == "too large (more than 4 KB)"


def test_start_page_404_fails_permanently(serve):
    site = serve()
    with pytest.raises(CrawlError) as raised:
        crawl_site(site, "/missing.html")
    assert raised.value.permanent and raised.value.status == 404
    assert str(raised.value) == "can't crawl %s: HTTP 404" % site.url("/missing.html")


def test_start_page_that_is_not_html_fails_permanently(serve):
    site = serve({"/": (200, {"Content-Type": "application/json"}, b"{}")})
    with pytest.raises(CrawlError, match=r"not an HTML page \(application/json\)") as raised:
        crawl_site(site)
    assert raised.value.permanent


def test_start_page_on_a_server_that_is_down_fails_transiently():
    url = "http://127.0.0.1:%d/" % closed_port()
    with pytest.raises(CrawlError, match="could not connect") as raised:
        crawl(url, allow_private=True, delay=0, timeout=1, retries=1, backoff=0.01)
    assert not raised.value.permanent
    assert not isinstance(raised.value, UnsafeURL)


# --- politeness ------------------------------------------------------------------------

def test_requests_are_spaced_by_the_delay(serve):
    site = serve({"/": page("Home", "a.html", "b.html"), "/a.html": page("A"),
                  "/b.html": page("B")})
    started = time.monotonic()
    result = crawl_site(site, delay=0.2)
    elapsed = time.monotonic() - started

    assert len(result.pages) == 3
    assert elapsed >= 0.2 * (len(site.requests) - 1) >= 0.4
    gaps = [later - earlier for earlier, later in zip(site.times, site.times[1:])]
    assert min(gaps) >= 0.18  # request start to arrival varies by a few ms


# --- SSRF ----------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[2002:7f00:1::]/",       # 6to4 wrapping 127.0.0.1
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://localhost/",
    "http://2130706433/",            # 127.0.0.1 as one number: only the resolver knows
])
def test_check_url_refuses_private_addresses(url):
    with pytest.raises(UnsafeURL, match="private or reserved address"):
        check_url(url, allow_private=False)
    check_url(url, allow_private=True)


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("http://user:secret@93.184.216.34/", "user name or password"),
    ("http:///path", "no host"),
    ("http://93.184.216.34:99999/", "port"),
])
def test_check_url_refuses_other_urls_even_when_private_is_allowed(url, message):
    with pytest.raises(UnsafeURL, match=message):
        check_url(url, allow_private=True)


def test_check_url_accepts_public_addresses_without_connecting():
    check_url("http://93.184.216.34/", allow_private=False)
    check_url("https://[2606:2800:220:1::1]:8443/docs/", allow_private=False)


def test_check_url_trusts_allowed_hosts_by_name_only():
    check_url("http://127.0.0.1:8000/", allow_private=False, allowed_hosts={"127.0.0.1"})
    with pytest.raises(UnsafeURL):
        check_url("http://localhost:8000/", allow_private=False, allowed_hosts={"127.0.0.1"})


def test_check_url_needs_every_resolved_address_to_be_public(monkeypatch):
    def resolve(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in ("93.184.216.34", "10.1.2.3")]

    monkeypatch.setattr(crawl_module.socket, "getaddrinfo", resolve)
    with pytest.raises(UnsafeURL, match=r"docs\.example\.com \(10\.1\.2\.3\)"):
        check_url("https://docs.example.com/", allow_private=False)


@pytest.mark.parametrize("allow_private", [False, True])
def test_check_url_unknown_host_is_a_permanent_crawl_error(monkeypatch, allow_private):
    def resolve(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(crawl_module.socket, "getaddrinfo", resolve)
    with pytest.raises(CrawlError, match="could not be found") as raised:
        # must_exist: where a URL is saved (with private addresses allowed, else always)
        check_url("https://no-such-host.example/", allow_private=allow_private,
                  must_exist=allow_private)
    assert raised.value.permanent and not isinstance(raised.value, UnsafeURL)


def test_check_url_with_private_allowed_looks_nothing_up_unless_asked(monkeypatch):
    lookups = []

    def resolve(*args, **kwargs):
        lookups.append(args[0])
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(crawl_module.socket, "getaddrinfo", resolve)
    check_url("https://intranet.example/", allow_private=True)  # each crawled page: no lookup
    assert lookups == []
    check_url("https://intranet.example/", allow_private=True, must_exist=True)  # for now
    assert lookups == ["intranet.example"]
    with pytest.raises(CrawlError, match="could not be found") as raised:
        check_url("https://intranet.example/", allow_private=False)
    assert not raised.value.permanent


@pytest.mark.parametrize("allow_private", [True, False])
def test_a_crawl_looks_its_host_up_once_per_connection(serve, monkeypatch, allow_private):
    site = serve({"/": page("Home", "/a.html", "/b.html"), "/a.html": page("A"),
                  "/b.html": page("B")})
    real, lookups = socket.getaddrinfo, []

    def counting(host, *args, **kwargs):
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(crawl_module.socket, "getaddrinfo", counting)
    if not allow_private:  # the check on, with loopback counted as public
        monkeypatch.setattr(crawl_module, "_is_public", lambda address: address.is_loopback)
    result = crawl(site.url("/").replace("127.0.0.1", "localhost"), allow_private=allow_private,
                   max_pages=5, max_depth=2, delay=0)
    assert len(result.pages) == 3 and len(site.requests) == 5  # with robots.txt, sitemap.xml
    # One lookup when a connection is made (kept-alive ones are reused), none to
    # check a URL before its request: was 1 + 1 per request with the check on.
    assert lookups == ["localhost"] * len(set(site.clients))


@pytest.mark.parametrize("errno_name, attempts", [("EAI_AGAIN", 2), ("EAI_NONAME", 1)])
def test_a_host_that_does_not_resolve_fails_the_crawl(monkeypatch, errno_name, attempts):
    lookups = []

    def failing(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(getattr(socket, errno_name), "lookup failed")

    monkeypatch.setattr(crawl_module.socket, "getaddrinfo", failing)
    with pytest.raises(CrawlError) as failed:
        crawl("http://docs.no-such-host.example/", delay=0, retries=1, backoff=0)
    assert "the host docs.no-such-host.example could not be found" in failed.value.reason
    assert failed.value.permanent == (errno_name == "EAI_NONAME")  # for now: retried
    assert not isinstance(failed.value, UnsafeURL)
    assert len(lookups) == 2 * attempts  # robots.txt, then the start page


def test_start_url_on_loopback_is_refused_before_any_request(serve):
    site = serve({"/": page("Home")})
    with pytest.raises(UnsafeURL):
        crawl(site.url(), delay=0)
    assert site.requests == []


def test_start_url_redirecting_to_a_private_address_is_refused(serve):
    site = serve({"/": redirect("http://10.0.0.1/admin")})
    session = RecordingSession()
    with pytest.raises(UnsafeURL, match="redirects to http://10.0.0.1/admin, which is refused"):
        crawl(site.url(), allowed_hosts={"127.0.0.1"}, delay=0, timeout=0.5, session=session)
    assert all(url.startswith(site.origin) for url in session.sent)
    assert site.requests == ["/robots.txt", "/"]


def test_redirect_to_the_metadata_address_mid_crawl_is_skipped(serve):
    site = serve({
        "/": page("Home", "go", "ok.html"),
        "/go": redirect("http://169.254.169.254/latest/meta-data/"),
        "/ok.html": page("OK"),
    })
    session = RecordingSession()
    result = crawl(site.url(), allowed_hosts={"127.0.0.1"}, delay=0, timeout=0.5,
                   session=session)

    assert urls(result, site) == ["/", "/ok.html"]
    reason = skipped(result, site)["/go"]
    assert reason.startswith("redirects to http://169.254.169.254/latest/meta-data/, which is "
                             "refused: 169.254.169.254 is a private or reserved address")
    assert all(url.startswith(site.origin) for url in session.sent)
    assert not session.sent[-1].startswith("http://169.254")


def test_redirect_outside_the_scope_is_not_followed(serve):
    site = serve({"/docs/": page("Docs", "moved.html"),
                  "/docs/moved.html": redirect("/blog/moved.html"),
                  "/blog/moved.html": page("Blog")})
    result = crawl_site(site, "/docs/")
    reason = skipped(result, site)["/docs/moved.html"]
    assert reason.startswith("redirects outside the crawl's scope")
    assert "/blog/moved.html" not in site.requests


# --- canonical URLs ---------------------------------------------------------------------

@pytest.mark.parametrize("url, canonical", [
    ("HTTP://Example.COM:80//a//b/../c?b=2&a=1#frag", "http://example.com/a/c?a=1&b=2"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x/./y/", "https://example.com:8443/x/y/"),
    ("http://[2001:DB8::1]:80/é", "http://[2001:db8::1]/%C3%A9"),
])
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical

