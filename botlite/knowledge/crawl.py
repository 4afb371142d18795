"""Crawl a website into `Page`s for a chatbot's knowledge.

`crawl` starts at one URL and reads, breadth first, the HTML pages of the same
origin whose path starts with the start URL's directory (for
``https://x/docs/intro.html``: ``https://x/docs/``). It honours robots.txt
(Disallow and Crawl-delay for our user agent), adds the in-scope URLs of the
site's sitemaps, waits between requests, retries transient failures with
exponential backoff, streams bodies under a size cap and records why each URL it
did not read was left out (`Skipped`).

Every request is checked, including robots.txt, sitemaps and each redirect hop
(redirects are followed here, never by requests): a URL whose host resolves to a
private, loopback, link-local, reserved or multicast address is refused unless
private addresses are allowed or the host is explicitly trusted. The URL itself
(scheme, user info, an IP literal) is checked before the request; the host's
addresses when it connects (`addresses_to_connect`, through `botlite.pinned`):
one lookup per new connection, every answer checked, and the socket connects to
one of exactly those addresses, so a DNS server that answers differently the
next time (DNS rebinding) cannot steer a request to a private address.
"""
from __future__ import annotations

import codecs
import hashlib
import ipaddress
import logging
import re
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser
from xml.etree import ElementTree

import requests
from requests.utils import requote_uri
from urllib3.exceptions import ReadTimeoutError

from botlite import __version__, pinned
# _decode_html is what extract_html does to bytes; a page is decoded once here so
# that its links and its text come from the same string.
from botlite.knowledge.extract import (
    HEAD_BYTES,
    Document,
    ExtractionError,
    NoText,
    _decode_html,
    detect_kind,
    extract_html,
)

log = logging.getLogger(__name__)

USER_AGENT = "botlite/%s (+https://github.com/botlite; knowledge crawler)" % __version__
"""Sent with every request; robots.txt groups for "botlite" apply to it."""

MAX_REDIRECTS = 5
"""Redirect hops followed for one URL."""

MAX_SKIPPED = 200
"""`CrawlResult.skipped` holds at most this many entries (the rest are only logged)."""

MAX_CRAWL_DELAY = 60.0
"""A robots.txt Crawl-delay above this many seconds is capped to it."""

MAX_ROBOTS_BYTES = 512 * 1024
"""robots.txt larger than this is ignored (RFC 9309 asks for at least 500 KiB)."""

MAX_SITEMAPS = 10
"""Sitemap files read per crawl, sitemap indexes and their children included."""

DOWNLOAD_TIME_FACTOR = 3
"""A whole response must arrive within ``timeout`` times this, so a server that
trickles bytes (each read inside the timeout) cannot hold the crawl forever."""

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
_HEADERS = {"User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# UTF-32 LE starts like UTF-16 LE, so these cover every BOM.
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SLASHES = re.compile(r"/{2,}")


class CrawlError(Exception):
    """The crawl cannot proceed: the start URL is refused or could not be read.

    Also raised inside the crawler for a single URL; there it becomes a `Skipped`.
    ``str()`` is one sentence that can be shown to the person who added the site.
    """

    expected = True  # the world, not a bug: logged without a traceback (runner)

    def __init__(self, reason: str, *, permanent: bool, url: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        """True: retrying cannot help (refused address, 404, not HTML). False:
        transient (timeout, connection error, 5xx after retries)."""
        self.url = url
        self.status = status
        """The HTTP status when the server answered with an error, else None."""

    def __str__(self) -> str:
        return "can't crawl %s: %s" % (self.url, self.reason) if self.url else self.reason


class UnsafeURL(CrawlError):
    """A URL botlite refuses to fetch: not http(s), with a user name or password,
    or on a private/loopback/link-local/reserved/multicast address that is not
    allowed (then ``private`` is true: BOTLITE_ALLOW_PRIVATE_URLS would allow it)."""

    def __init__(self, reason: str, *, url: str | None = None, private: bool = False) -> None:
        super().__init__(reason, permanent=True, url=url)
        self.private = private


@dataclass
class Page:
    """One HTML page that was read."""

    url: str
    """Final canonical URL (after redirects and <link rel="canonical">), for citations."""
    title: str | None
    description: str | None
    document: Document
    content_hash: str
    """sha256 (hex) of the extracted text with whitespace collapsed, to detect changes."""
    depth: int
    """Links followed from the start URL (0); sitemap URLs count as 1."""


@dataclass
class Skipped:
    """A URL that was not read, or a note about the crawl (robots.txt, sitemaps)."""

    url: str
    reason: str
    """For people: "robots.txt disallows it", "HTTP 404", "timed out after 10 s"..."""


@dataclass
class CrawlResult:
    pages: list[Page]
    """In the order they were read: breadth first, links in document order."""
    skipped: list[Skipped]
    """At most `MAX_SKIPPED`, in the order they were met."""
    used_sitemap: bool
    """A sitemap was read and listed at least one URL inside the crawl's scope."""


# --- URLs ----------------------------------------------------------------------

def check_url(url: str, allow_private: bool, allowed_hosts: Collection[str] = frozenset(),
              *, must_exist: bool = False) -> None:
    """Refuse ``url`` unless it is http(s) without user info and its host is safe.

    A host is safe when every address it resolves to is public, when
    ``allow_private`` is true, or when it is in ``allowed_hosts`` (compared by
    name as written in the URL, lower case, IPv6 without brackets). IP literals
    and allowed hosts are judged without any lookup, and so is any host with
    ``allow_private`` unless ``must_exist`` (where a URL is saved: a host that
    does not exist is told apart from a site that is down; the crawler and
    deliveries leave that to the request itself).

    Raises `UnsafeURL` when refused, and `CrawlError` when the host does not
    resolve (permanent for "no such host", transient otherwise).
    """
    host, port = _check_form(url)
    if host in allowed_hosts:
        return
    if allow_private and not must_exist:
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [_address(info) for info in _resolve(host, port, url)]
        except CrawlError as exc:
            if allow_private and not exc.permanent:
                return  # any address will do: the request itself finds out
            raise
    if not allow_private:
        _refuse_private(host, addresses, url)


def _check_before_connecting(url: str, allow_private: bool,
                             allowed_hosts: Collection[str]) -> None:
    """`check_url` without its lookup: the URL's form, and its host when that is
    an IP literal. A host name is checked when the request connects
    (`addresses_to_connect`)."""
    host, _ = _check_form(url)
    if allow_private or host in allowed_hosts:
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    _refuse_private(host, [address], url)


def addresses_to_connect(host: str, port: int, *, allow_private: bool,
                         allowed_hosts: Collection[str] = frozenset()
                         ) -> list[pinned.AddressInfo]:
    """The addresses (`socket.getaddrinfo` entries) a connection to ``host`` may
    use: one lookup, every answer checked as `check_url` checks it. A
    `botlite.pinned.Resolve`.

    Raises `UnsafeURL` when an address is refused and `CrawlError` when the host
    does not resolve; with ``allow_private`` or an allowed host nothing is
    refused and a failed lookup is `socket.gaierror` (a connection error, as when
    urllib3 looked the name up itself).
    """
    if allow_private or host in allowed_hosts:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    infos = _resolve(host, port)
    _refuse_private(host, [_address(info) for info in infos])
    return infos


def check_url_to_save(url: str, allow_private: bool, label: str) -> None:
    """`check_url` for a URL about to be saved (a website source, a webhook):
    400 ``unsafe_url`` (naming BOTLITE_ALLOW_PRIVATE_URLS for a private address)
    or 400 ``invalid_url`` for a host that does not exist, each message starting
    with ``label``; a lookup that fails for now lets it through (the crawl and each
    delivery check again)."""
    from botlite.errors import BadRequest

    try:
        check_url(url, allow_private=allow_private, must_exist=True)
    except UnsafeURL as exc:
        hint = " (set BOTLITE_ALLOW_PRIVATE_URLS=1 to allow it)" if exc.private else ""
        raise BadRequest("%s: %s%s" % (label, exc.reason, hint), code="unsafe_url") from None
    except CrawlError as exc:
        if exc.permanent:
            raise BadRequest("%s: %s" % (label, exc.reason), code="invalid_url") from None


def _check_form(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL without user info, else `UnsafeURL`."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise UnsafeURL("only http:// and https:// URLs are allowed", url=url)
    if "@" in parts.netloc:
        raise UnsafeURL("URLs with a user name or password are refused", url=url)
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host", url=url)
    try:
        return host, parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    except ValueError:
        raise UnsafeURL("the URL's port is not a valid number", url=url) from None


def _refuse_private(host: str, addresses: list[_Address], url: str | None = None) -> None:
    for address in addresses:
        if not _is_public(address):
            where = host if str(address) == host else "%s (%s)" % (host, address)
            raise UnsafeURL("%s is a private or reserved address; only public addresses "
                            "are allowed" % where, url=url, private=True)


def _resolve(host: str, port: int, url: str | None = None) -> list[pinned.AddressInfo]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise CrawlError("the host name %s is not valid" % host, permanent=True,
                         url=url) from None
    except socket.gaierror as exc:
        unknown = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
        raise CrawlError("the host %s could not be found" % host, permanent=unknown,
                         url=url) from None


def _address(info: pinned.AddressInfo) -> _Address:
    # IPv6 link-local answers carry a zone ("fe80::1%eth0").
    return ipaddress.ip_address(info[4][0].split("%", 1)[0])


def _is_public(address: _Address) -> bool:
    if address.version == 6:
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public(embedded)
    # is_global alone lets multicast through, hence the explicit list.
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified)


def canonical_url(url: str) -> str:
    """The form of ``url`` used to recognise the same page twice.

    Lower-case scheme and host, no default port, no fragment, no user info,
    dot segments resolved, duplicate slashes collapsed, query parameters sorted,
    percent-encoding as requests sends it. Raises ValueError for an invalid port.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else "%s:%d" % (host, port)
    path = _remove_dot_segments(_SLASHES.sub("/", parts.path)) or "/"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return requote_uri(urlunsplit((scheme, netloc, path, query, "")))


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    return "/".join(output)


def _http_url(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or None for anything else."""
    try:
        url = canonical_url(url)
    except ValueError:
        return None
    return url if url.startswith(("http://", "https://")) else None


def _link_url(base: str, href: str) -> str | None:
    return _http_url(urljoin(base, href.strip()))


@dataclass(frozen=True)
class _Scope:
    """Same origin as the start page and under its directory."""

    origin: str
    prefix: str

    @classmethod
    def of(cls, url: str) -> _Scope:
        parts = urlsplit(url)
        return cls("%s://%s" % (parts.scheme, parts.netloc),
                   parts.path[:parts.path.rfind("/") + 1] or "/")

    def same_origin(self, url: str) -> bool:
        return url.startswith(self.origin + "/")

    def contains(self, url: str) -> bool:
        return self.same_origin(url) and urlsplit(url).path.startswith(self.prefix)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc)


# --- fetching ------------------------------------------------------------------

@dataclass
class _Response:
    url: str
    body: bytes = b""
    charset: str | None = None
    location: str | None = None
    """The redirect target, when the response was a redirect."""


class _Fetcher:
    """GET with the SSRF check on every hop, pacing, retries and a size cap.

    ``session`` must send through a `botlite.pinned.PinnedAdapter` resolving
    with `addresses_to_connect` (`crawl` mounts one): `check` leaves host names
    to it."""

    def __init__(self, session: requests.Session, *, allow_private: bool,
                 allowed_hosts: frozenset[str], delay: float, timeout: float,
                 retries: int, backoff: float) -> None:
        self.session = session
        self.allow_private = allow_private
        self.allowed_hosts = allowed_hosts
        self.delay = delay
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._last_request: float | None = None

    def check(self, url: str) -> None:
        _check_before_connecting(url, self.allow_private, self.allowed_hosts)

    def resolve(self, host: str, port: int) -> list[pinned.AddressInfo]:
        """The session's `botlite.pinned.Resolve`."""
        return addresses_to_connect(host, port, allow_private=self.allow_private,
                                    allowed_hosts=self.allowed_hosts)

    def get(self, url: str, *, max_bytes: int, html_only: bool = False,
            on_redirect: Callable[[str], None] | None = None) -> _Response:
        """Fetch ``url`` following redirects, checking every hop as `check_url` does.

        ``on_redirect`` may refuse a hop by raising `CrawlError`. Raises
        `CrawlError` for every failure; 4xx and 5xx carry their status.
        """
        self.check(url)
        response = self._get_with_retries(url, max_bytes, html_only)
        for _ in range(MAX_REDIRECTS):
            if response.location is None:
                return response
            target = response.location
            try:
                self.check(target)
                if on_redirect is not None:
                    on_redirect(target)
                response = self._get_with_retries(target, max_bytes, html_only)
            except UnsafeURL as exc:
                raise UnsafeURL("redirects to %s, which is refused: %s" % (target, exc.reason),
                                private=exc.private) from None
        if response.location is None:
            return response
        raise CrawlError("too many redirects (more than %d)" % MAX_REDIRECTS, permanent=True)

    def _get_with_retries(self, url: str, max_bytes: int, html_only: bool) -> _Response:
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._get_once(url, max_bytes, html_only)
            except CrawlError as exc:
                if exc.permanent:
                    raise
                failure = exc
                log.debug("%s: %s (attempt %d of %d)", url, exc.reason, attempt + 1, attempts)
        if attempts > 1:
            failure.reason += " (%d attempts)" % attempts
        raise failure

    def _pace(self) -> None:
        if self._last_request is not None:
            wait = self._last_request + self.delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_request = time.monotonic()

    def _get_once(self, url: str, max_bytes: int, html_only: bool) -> _Response:
        self._pace()
        deadline = time.monotonic() + self.timeout * DOWNLOAD_TIME_FACTOR
        try:
            with self.session.get(url, headers=_HEADERS, timeout=(self.timeout, self.timeout),
                                  stream=True, allow_redirects=False) as response:
                return self._receive(response, url, max_bytes, html_only, deadline)
        except requests.exceptions.SSLError:
            raise CrawlError("the secure (TLS) connection failed", permanent=True) from None
        except requests.Timeout:
            raise self._timed_out() from None
        except requests.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], ReadTimeoutError):  # while streaming
                raise self._timed_out() from None
            found = _ERRNO_TEXT.search(str(exc))
            raise CrawlError("could not connect: %s" % (found.group(1).strip() if found
                                                       else "connection failed"),
                             permanent=False) from None
        except requests.exceptions.ChunkedEncodingError:
            raise CrawlError("the connection broke off mid-page", permanent=False) from None
        except requests.exceptions.ContentDecodingError:
            raise CrawlError("the page's compression is broken", permanent=True) from None
        except requests.RequestException as exc:
            raise CrawlError("the request failed (%s)" % exc.__class__.__name__,
                             permanent=True) from None

    def _timed_out(self) -> CrawlError:
        return CrawlError("timed out after %g s" % self.timeout, permanent=False)

    def _receive(self, response: requests.Response, url: str, max_bytes: int,
                 html_only: bool, deadline: float) -> _Response:
        status = response.status_code
        location = self.session.get_redirect_target(response)
        if location:
            return _Response(url, location=urljoin(url, location))
        if status >= 300:  # a 3xx here has no Location
            raise CrawlError("HTTP %d" % status, permanent=status not in _RETRY_STATUSES,
                             status=status)
        content_type = response.headers.get("Content-Type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if html_only and mime and mime not in HTML_TYPES:
            raise CrawlError("not an HTML page (%s)" % mime, permanent=True)
        body = _read_capped(response, max_bytes, deadline, self.timeout)
        if html_only and not mime and not _looks_like_html(body):
            raise CrawlError("not an HTML page (no content type)", permanent=True)
        charset = _CHARSET.search(content_type)
        return _Response(url, body, charset.group(1) if charset else None)


def _read_capped(response: requests.Response, max_bytes: int, deadline: float,
                 timeout: float) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:  # the compressed size: a lower bound
        raise CrawlError("too large (%s; the limit is %s)"
                         % (_size(int(length)), _size(max_bytes)), permanent=True)
    chunks = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise CrawlError("too large (more than %s)" % _size(max_bytes), permanent=True)
        if time.monotonic() > deadline:
            raise CrawlError("took more than %g s to download" % (timeout * DOWNLOAD_TIME_FACTOR),
                             permanent=False)
        chunks.append(chunk)
    return b"".join(chunks)


def _looks_like_html(body: bytes) -> bool:
    try:
        return detect_kind("", body[:HEAD_BYTES]) == "html"
    except ExtractionError:
        return False


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return "%.3g MB" % (count / (1024 * 1024))
    if count >= 1024:
        return "%.3g KB" % (count / 1024)
    return "%d bytes" % count


# --- reading pages -----------------------------------------------------------------

class _LinkParser(HTMLParser):
    """The page's links, <base href> and <link rel="canonical">, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.base: str | None = None
        self.canonical: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "area", "link", "base"):
            return
        values = dict(attrs)
        href = values.get("href")
        if not href:
            return
        if tag == "link":
            if self.canonical is None and "canonical" in (values.get("rel") or "").lower().split():
                self.canonical = href
        elif tag == "base":
            if self.base is None:
                self.base = href
        else:
            self.links.append(href)


def _parse_links(text: str) -> _LinkParser:
    parser = _LinkParser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser gives up on some malformed markup; keep what it found
        log.debug("could not parse all links", exc_info=True)
    return parser


def _page_text(body: bytes, charset: str | None) -> str:
    """Decoded once, so that links and text agree. A charset in the HTTP header
    wins over one in the page, as in browsers; a BOM wins over both."""
    if charset and not body.startswith(_BOMS):
        try:
            name = codecs.lookup(charset).name
        except LookupError:
            name = None
        if name:
            # Browsers read these labels as windows-1252, as extract does.
            return body.decode("cp1252" if name in ("iso8859-1", "ascii") else name,
                               errors="replace")
    return _decode_html(body)


def _content_hash(document: Document) -> str:
    return hashlib.sha256(" ".join(document.text.split()).encode("utf-8")).hexdigest()


# --- sitemaps --------------------------------------------------------------------

def _sitemap_entries(body: bytes, max_bytes: int) -> tuple[str | None, list[str]]:
    """("urlset" or "sitemapindex", the <loc>s), or (None, []) when it is not a sitemap."""
    if body[:2] == b"\x1f\x8b":  # sitemap.xml.gz served as a file
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes + 1)
        except zlib.error:
            return None, []
        if len(body) > max_bytes:
            return None, []
    # Sitemaps have no DTD; refusing one rules out entity expansion tricks.
    if _DTD.search(body):
        return None, []
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None, []
    kind = _local_name(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        return None, []
    entry = "url" if kind == "urlset" else "sitemap"
    locs = [loc.text.strip()
            for element in root if _local_name(element.tag) == entry
            for loc in element if _local_name(loc.tag) == "loc" and loc.text and loc.text.strip()]
    return kind, locs


def _local_name(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


# --- the crawl ---------------------------------------------------------------------

class _AlreadyRead(CrawlError):
    """A redirect leads to a page already read: nothing to fetch or report."""

    def __init__(self) -> None:
        super().__init__("already read", permanent=True)



@dataclass
class _Crawler:
    fetcher: _Fetcher
    max_pages: int
    max_depth: int
    max_bytes: int
    on_progress: Callable[[int, int], None] | None
    pages: list[Page] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    used_sitemap: bool = False
    queue: deque[tuple[str, int]] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)
    """Canonical URLs met so far: queued, noted as skipped, or ignored."""
    done: set[str] = field(default_factory=set)
    """Canonical URLs already read (final URLs and rel=canonical targets)."""
    page_by_hash: dict[str, str] = field(default_factory=dict)
    robots: dict[str, RobotFileParser] = field(default_factory=dict)
    unlisted: int = 0
    scope: _Scope | None = None

    def run(self, start_url: str) -> CrawlResult:
        try:
            self.fetcher.check(start_url)
            start = canonical_url(start_url)
            if not self._allowed(start):
                raise CrawlError("robots.txt disallows it", permanent=True)
            response = self.fetcher.get(start, max_bytes=self.max_bytes, html_only=True)
        except CrawlError as exc:
            exc.url = start_url
            raise
        self.scope = _Scope.of(canonical_url(response.url))
        self.seen.add(start)
        self._read(response, depth=0)
        if self.max_depth > 0 and self.max_pages > 1:
            self._queue_sitemap_urls()
        self._report_progress()
        while self.queue and len(self.pages) < self.max_pages:
            url, depth = self.queue.popleft()
            if url not in self.done:
                self._visit(url, depth)
                self._report_progress()
        if self.unlisted:
            log.info("%d more skipped URLs were not listed", self.unlisted)
        return CrawlResult(self.pages, self.skipped, self.used_sitemap)

    def _visit(self, url: str, depth: int) -> None:
        if not self._allowed(url):
            self._skip(url, "robots.txt disallows it")
            return
        try:
            response = self.fetcher.get(url, max_bytes=self.max_bytes, html_only=True,
                                        on_redirect=self._check_redirect)
        except _AlreadyRead:
            return
        except CrawlError as exc:
            self._skip(url, exc.reason)
            return
        self._read(response, depth)

    def _check_redirect(self, target: str) -> None:
        url = _http_url(target)
        if url is None or not self.scope.contains(url):
            raise CrawlError("redirects outside the crawl's scope (%s)" % target, permanent=True)
        if url in self.done:
            raise _AlreadyRead()
        if not self._allowed(url):
            raise CrawlError("redirects to %s, which robots.txt disallows" % target,
                             permanent=True)

    def _read(self, response: _Response, depth: int) -> None:
        final = canonical_url(response.url)
        if final in self.done:
            return
        text = _page_text(response.body, response.charset)
        links = _parse_links(text)
        url = self._page_url(final, links.canonical)
        self.done.update((final, url))
        self.seen.update((final, url))
        self._record(url, text, depth)
        base = urljoin(final, links.base) if links.base else final
        self._follow(links.links, base, depth)

    def _page_url(self, final: str, canonical_href: str | None) -> str:
        """The rel=canonical URL when it is in scope and not read yet. One
        already read is not trusted blindly (some sites point every page at the
        home page): the text comparison in `_record` decides."""
        if canonical_href:
            canonical = _link_url(final, canonical_href)
            if canonical is not None and canonical not in self.done \
                    and self.scope.contains(canonical):
                return canonical
        return final

    def _record(self, url: str, text: str, depth: int) -> None:
        try:
            document = extract_html(text, url=url)
        except ExtractionError as exc:
            # No text, or a limit it is past ("more than 500,000 HTML elements").
            self._skip(url, "no text" if isinstance(exc, NoText) else exc.reason)
            return
        content_hash = _content_hash(document)
        same = self.page_by_hash.get(content_hash)
        if same is not None:
            self._skip(url, "same text as %s" % same)
            return
        self.page_by_hash[content_hash] = url
        self.pages.append(Page(url, document.title, document.description, document,
                               content_hash, depth))
        log.debug("read %s (depth %d)", url, depth)

    def _follow(self, hrefs: list[str], base: str, depth: int) -> None:
        for href in hrefs:
            url = _link_url(base, href)
            if url is None or url in self.seen:
                continue
            self.seen.add(url)
            if not self.scope.same_origin(url):
                continue
            if not self.scope.contains(url):
                self._skip(url, "outside the start URL's path")
            elif depth >= self.max_depth:
                self._skip(url, "beyond max depth")
            else:
                self.queue.append((url, depth + 1))

    def _queue_sitemap_urls(self) -> None:
        listed = self._robots_for(self.scope.origin).site_maps() or []
        for loc in self._sitemap_locs(listed):
            url = _http_url(loc)
            if url is None or not self.scope.contains(url):
                continue
            self.used_sitemap = True
            if url not in self.seen:
                self.seen.add(url)
                self.queue.append((url, 1))

    def _sitemap_locs(self, listed: list[str]) -> list[str]:
        """URLs from the sitemaps robots.txt lists, else from /sitemap.xml when
        robots.txt allows it; a sitemap index is followed one level."""
        if listed:
            pending = deque((url, 0) for url in listed)
        else:
            guess = self.scope.origin + "/sitemap.xml"
            pending = deque([(guess, 0)] if self._allowed(guess) else [])
        locs: list[str] = []
        read = 0
        while pending and read < MAX_SITEMAPS:
            url, level = pending.popleft()
            read += 1
            try:
                body = self.fetcher.get(url, max_bytes=self.max_bytes).body
            except CrawlError as exc:
                if listed or level:
                    self._skip(url, "sitemap could not be read (%s)" % exc.reason)
                log.debug("no sitemap at %s: %s", url, exc.reason)
                continue
            kind, entries = _sitemap_entries(body, self.max_bytes)
            if kind == "sitemapindex" and level == 0:
                pending.extend((entry, 1) for entry in entries)
            elif kind == "urlset":
                locs.extend(entries)
            elif listed or level:
                self._skip(url, "not a sitemap")
        return locs

    def _allowed(self, url: str) -> bool:
        return self._robots_for(_origin(url)).can_fetch(USER_AGENT, url)

    def _robots_for(self, origin: str) -> RobotFileParser:
        parser = self.robots.get(origin)
        if parser is None:
            parser = self.robots[origin] = self._read_robots(origin + "/robots.txt")
        return parser

    def _read_robots(self, url: str) -> RobotFileParser:
        """RFC 9309: a 4xx means no rules. Any other failure is noted and the
        crawl proceeds as if there were none."""
        parser = RobotFileParser(url)
        try:
            body = self.fetcher.get(url, max_bytes=MAX_ROBOTS_BYTES).body
        except CrawlError as exc:
            if exc.status is None or exc.status >= 500:
                log.warning("robots.txt at %s could not be read: %s", url, exc.reason)
                self._skip(url, "robots.txt could not be read (%s); crawled as if it "
                                "allowed everything" % exc.reason)
            parser.allow_all = True
            return parser
        parser.parse(body.decode("utf-8", errors="replace").splitlines())
        delay = parser.crawl_delay(USER_AGENT)
        if delay is not None and float(delay) > self.fetcher.delay:
            self.fetcher.delay = min(float(delay), MAX_CRAWL_DELAY)
        return parser

    def _skip(self, url: str, reason: str) -> None:
        log.debug("skipped %s: %s", url, reason)
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(Skipped(url, reason))
        else:
            self.unlisted += 1

    def _report_progress(self) -> None:
        if self.on_progress is not None:
            done = len(self.pages)
            self.on_progress(done, min(self.max_pages, done + len(self.queue)))


def crawl(start_url: str, *, max_pages: int = 20, max_depth: int = 2,
          allow_private: bool = False, allowed_hosts: Collection[str] = frozenset(),
          delay: float = 0.5, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
          max_bytes: int = 5 * 1024 * 1024,
          on_progress: Callable[[int, int], None] | None = None,
          session: requests.Session | None = None) -> CrawlResult:
    """Read up to ``max_pages`` HTML pages of a site, breadth first from ``start_url``.

    Links are followed within the origin and directory of the page the start
    URL lands on after redirects (http to https, an added slash), up to
    ``max_depth`` links away (0: the start page only). ``allowed_hosts`` are
    host names trusted even on private addresses (see `check_url`). At least
    ``delay`` seconds (or robots.txt's Crawl-delay, up to `MAX_CRAWL_DELAY`)
    pass between requests. ``timeout`` applies to connecting and to each read;
    connection errors, timeouts, 429 and 5xx are tried ``retries`` more times,
    waiting ``backoff * 2**n`` seconds. Bodies over ``max_bytes`` are not read.
    ``on_progress(done, total)`` is called after each URL with the pages read
    and the current estimate of the total; an exception from it ends the crawl.
    A given ``session`` is used with its proxies, cookies and headers and not
    closed; its http:// and https:// adapters are replaced by one that connects
    only to checked addresses (`botlite.pinned`).

    The start page must be read: otherwise `CrawlError` (`UnsafeURL` when the
    URL or a redirect is refused). Every other failure is a `Skipped` entry.
    Out-of-range arguments raise ValueError.
    """
    if max_pages < 1 or max_depth < 0 or retries < 0 or max_bytes < 1:
        raise ValueError("need max_pages >= 1, max_depth >= 0, retries >= 0, max_bytes >= 1")
    if delay < 0 or timeout <= 0 or backoff < 0:
        raise ValueError("need delay >= 0, timeout > 0, backoff >= 0")
    own_session = session is None
    if session is None:
        session = requests.Session()
    fetcher = _Fetcher(session, allow_private=allow_private,
                       allowed_hosts=frozenset(host.lower() for host in allowed_hosts),
                       delay=delay, timeout=timeout, retries=retries, backoff=backoff)
    adapter = pinned.mount(session, fetcher.resolve)
    crawler = _Crawler(fetcher, max_pages, max_depth, max_bytes, on_progress)
    started = time.monotonic()
    log.info("crawling %s (up to %d pages, depth %d)", start_url, max_pages, max_depth)
    try:
        result = crawler.run(start_url)
    finally:
        adapter.close()
        if own_session:
            session.close()
    log.info("crawled %s: %d pages, %d skipped in %.1f s", start_url, len(result.pages),
             len(result.skipped) + crawler.unlisted, time.monotonic() - started)
    return result


__all__ = [
    "MAX_REDIRECTS", "MAX_SKIPPED", "USER_AGENT", "CrawlError", "CrawlResult", "Page", "Skipped",
    "UnsafeURL", "addresses_to_connect", "canonical_url", "check_url", "check_url_to_save",
    "crawl",
]
