"""requests sessions whose connections go only to addresses a check approved.

Checking what a URL's host resolves to and then letting urllib3 look the name up
again to connect leaves a window: a DNS server that answers a public address for
the check and a private one for the connection (DNS rebinding) steers the request
inside the network. `PinnedAdapter` has no such window: each new connection looks
its host up once through ``resolve``, which checks the answer (raising to refuse
it), and the socket connects to one of exactly the addresses it returned. The
HTTP Host header, TLS SNI and certificate verification still use the URL's host
name. Connections are pooled per scheme, host name and port, as urllib3 pools
them, so a kept-alive connection only ever serves the name it was checked for.

Through a proxy (``HTTP(S)_PROXY``), the proxy looks the name up and connects:
``resolve`` still checks the host before the request is sent, but the connection
cannot be pinned.
"""
from __future__ import annotations

import functools
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

AddressInfo = tuple[Any, ...]
"""One entry of `socket.getaddrinfo`: (family, type, proto, canonname, sockaddr)."""

Resolve = Callable[[str, int], Sequence[AddressInfo]]
"""``resolve(host, port)``: the addresses a connection to ``host`` may use, from
one lookup. It raises `socket.gaierror` when the name does not resolve (reported
as urllib3 reports it: a `requests.ConnectionError`) and anything else to refuse
the host; that exception reaches the caller of ``session.get()`` unchanged."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _PinnedConnection:
    """Mixed into urllib3's connections in place of its own lookup and connect."""

    def __init__(self, *args: Any, resolve: Resolve, **kwargs: Any) -> None:
        self._resolve = resolve
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self._resolve(self.host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        failure: OSError | None = None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is None or isinstance(self.timeout, (int, float)):
                    sock.settimeout(self.timeout)  # else urllib3's "default" token
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(address)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(failure, TimeoutError):
            raise ConnectTimeoutError(self, "Connection to %s timed out. (connect timeout=%s)"
                                      % (self.host, self.timeout)) from failure
        raise NewConnectionError(self, "Failed to establish a new connection: %s"
                                 % (failure or "no address to connect to")) from failure


class _PinnedHTTPConnection(_PinnedConnection, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """A transport adapter whose connections go to addresses ``resolve`` approved
    (see the module's docstring)."""

    def __init__(self, resolve: Resolve, **kwargs: Any) -> None:
        self.resolve = resolve
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        # The pool passes its extra keywords on to every connection it makes.
        self.poolmanager.pool_classes_by_scheme = {
            "http": functools.partial(_PinnedHTTPConnectionPool, resolve=self.resolve),
            "https": functools.partial(_PinnedHTTPSConnectionPool, resolve=self.resolve),
        }

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: bool | str = True, cert: Any = None,
             proxies: dict[str, str] | None = None) -> requests.Response:
        if select_proxy(request.url, proxies):
            parts = urlsplit(request.url)
            try:
                self.resolve(parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
            except socket.gaierror:
                pass  # the proxy may know names this machine does not
        return super().send(request, stream=stream, timeout=timeout, verify=verify,
                            cert=cert, proxies=proxies)


def mount(session: requests.Session, resolve: Resolve) -> PinnedAdapter:
    """Send ``session``'s http:// and https:// requests through a new `PinnedAdapter`."""
    adapter = PinnedAdapter(resolve)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter


__all__ = ["AddressInfo", "PinnedAdapter", "Resolve", "mount"]
