"""Keep-alive connections to each upstream (proxy/upstream/http1.py) and sending one request on them.

One `Pool` per upstream origin, most recently used connection first; an idle connection is
closed after IDLE_SECONDS and at most MAX_IDLE are kept. `send` writes the request head and
body in one write and waits for the answer's head.

Every request to an upstream goes through here: traffic (proxy/upstream/transport.py), model
discovery and health checks (proxy/catalog/discovery.py, on pools of their own) and `check`'s
probes (through the chain). So, for all of them alike:
- redirects are never followed: a 3xx is handed back as the answer, and each caller refuses it,
  since following it would carry the key and configured headers to wherever Location points;
- TLS trusts the system store, or the bundle SSL_CERT_FILE names (`default_tls_context`), unless
  the upstream has `tls:` settings of its own (its context is built at load, proxy/config/tls.py);
- the route is the upstream's: directly, or through its egress proxy (`egress_proxy`, resolved
  at load from `proxy:` or the environment), by a CONNECT tunnel (proxy/upstream/egress.py) for
  https and absolute-form requests for plain http;
- addresses come from a DNS cache (300 s) and are raced with happy eyeballs (proxy/upstream/dns.py);
- failures are this client's exceptions, classified once by proxy/upstream/failures.py.
"""
from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any, Mapping, Sequence, Union
from urllib.parse import quote, urlsplit

from proxy.config.egress import ProxyURL
from proxy.config.model import UpstreamConfig
from proxy.upstream import dns, egress
from proxy.upstream.http1 import ConnectFailed, Connection, ConnectionDropped, ConnectTimeout, Response

IDLE_SECONDS = 30.0                 # an idle pooled connection is closed after this
MAX_IDLE = 256                      # idle connections kept per upstream; more are closed on release

_SAFE_TARGET = re.compile(r"[\x21-\x7e]+")

_default_tls: ssl.SSLContext | None = None


def default_tls_context() -> ssl.SSLContext:
    """The system trust store, built once: creating a context costs milliseconds."""
    global _default_tls
    if _default_tls is None:
        _default_tls = ssl.create_default_context()
    return _default_tls


class Pool:
    """Keep-alive connections to one origin (scheme, host, port), most recently used first,
    directly or through `proxy`."""

    def __init__(self, base_url: str, proxy: ProxyURL | None = None, tls: ssl.SSLContext | None = None,
                 server_name: str | None = None):
        parts = urlsplit(base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        default_port = 443 if self.scheme == "https" else 80
        self.port = parts.port or default_port
        shown_host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literals keep their brackets
        self.host_header = shown_host if self.port == default_port else f"{shown_host}:{self.port}"
        self.proxy = proxy
        self._tls = tls                                   # None: the system store (default_tls_context)
        self.server_name = server_name or self.host       # the name TLS sends and verifies
        # Plain http through a proxy: requests name the origin (absolute form) and carry the proxy's credentials.
        self.forwarded = proxy is not None and self.scheme == "http"
        self.base_path = (f"http://{self.host_header}" if self.forwarded else "") + \
            _request_target(parts.path.rstrip("/"))
        authorization = proxy.authorization if self.forwarded else None
        self.proxy_headers = {"Proxy-Authorization": authorization} if authorization else {}
        self._idle: list[Connection] = []
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    @classmethod
    def for_upstream(cls, upstream: UpstreamConfig, origin: str | None = None) -> "Pool":
        """A pool to `upstream` (or to `origin` as that upstream reaches it: its proxy, its TLS)."""
        return cls(origin or upstream.base_url, upstream.egress_proxy, upstream.tls_context, upstream.tls.server_name)

    def target(self, path: str, query: str = "") -> str:
        """The request target for `path` (relative to the base URL's path)."""
        target = f"{self.base_path}/{path}" + (f"?{query}" if query else "")
        return target if _SAFE_TARGET.fullmatch(target) else _request_target(target)

    async def acquire(self, connect_timeout: float, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.usable and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.abort()
        return await self._connect(loop, connect_timeout, deadline)

    async def _connect(self, loop: asyncio.AbstractEventLoop, connect_timeout: float,
                       deadline: float) -> Connection:
        by_deadline = deadline < loop.time() + connect_timeout
        try:
            async with asyncio.timeout_at(deadline if by_deadline else loop.time() + connect_timeout):
                return await self._open(loop)
        except TimeoutError:
            raise ConnectTimeout(by_deadline) from None
        except OSError as exc:
            raise ConnectFailed(exc) from None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Connection:
        tls = (self._tls or default_tls_context()) if self.scheme == "https" else None
        proxy = self.proxy
        if proxy is None:
            _, connection = await loop.create_connection(
                lambda: Connection(loop), sock=await dns.connect(self.host, self.port), ssl=tls,
                server_hostname=self.server_name if tls is not None else None)
            return connection
        if tls is None:  # plain http: the proxy itself takes the requests
            _, connection = await loop.create_connection(lambda: Connection(loop), sock=await egress.reach(proxy))
            return connection
        raw = await egress.tunnel(loop, proxy, self.host, self.port)
        connection = Connection(loop)
        try:  # TLS to the upstream's own name, end to end through the tunnel
            transport = await loop.start_tls(raw, connection, tls, server_hostname=self.server_name)
        except BaseException:
            raw.abort()
            raise
        connection.connection_made(transport)
        return connection

    def put(self, connection: Connection) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE:
            connection.abort()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(IDLE_SECONDS, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for IDLE_SECONDS (the upstream would soon close them anyway)."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - IDLE_SECONDS
        keep = []
        for connection in self._idle:
            if connection.closed or connection.idle_since <= cutoff:
                connection.abort()
            else:
                keep.append(connection)
        self._idle = keep
        if keep:
            self._sweeper = loop.call_later(IDLE_SECONDS / 2, self._sweep)

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()


def _request_target(text: str) -> str:
    return quote(text, safe="/?&=%:@!$'()*+,;~-._[]")


# ---- one request ----------------------------------------------------------------------------

# A body is bytes, or the buffers that make it up (a client's body with fields spliced in).
Body = Union[bytes, Sequence[Any]]
# A small body is copied after the head (one buffer); a large one is written as it is.
_SEPARATE_BODY_ABOVE = 64 * 1024

def encode_request(method: str, target: str, host: str, headers: Mapping[str, str], body: Body,
                   with_length: bool) -> list[Any]:
    """Request head and body as the buffers of one write. Header names and values come from the
    client's parsed request and the validated config; a CR or LF in either is refused, not sent."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    pieces = [body] if isinstance(body, bytes) else list(body)
    if with_length:
        lines.append(f"Content-Length: {sum(map(len, pieces))}")
    lines.append("Accept-Encoding: gzip, deflate")
    head = "\r\n".join(lines)
    if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
        raise ValueError("a header name or value contains a line break")
    head_bytes = head.encode("utf-8", "surrogateescape") + b"\r\n\r\n"
    if len(pieces) == 1 and len(pieces[0]) < _SEPARATE_BODY_ABOVE:
        return [head_bytes + pieces[0]]
    return [head_bytes, *pieces]


async def send(pool: Pool, method: str, target: str, headers: Mapping[str, str], body: Body, *,
               connect_timeout: float, read_timeout: float, deadline: float) -> Response:
    """Send one request and wait for the answer's head.

    A reused keep-alive connection that closes before any byte of the answer arrives is
    almost always one the upstream closed as idle just as we wrote to it: that one case is
    sent again on a fresh connection (as browsers do). A fresh connection is never retried.
    """
    with_length = bool(body) or method in ("POST", "PUT", "PATCH")
    if pool.proxy_headers:
        headers = {**headers, **pool.proxy_headers}
    payload = encode_request(method, target, pool.host_header, headers, body, with_length)
    while True:
        connection = await pool.acquire(connect_timeout, deadline)
        connection.send(payload, head_only=method == "HEAD")
        try:
            head = await connection.read_head(read_timeout, deadline)
        except ConnectionDropped:
            connection.abort()
            if connection.reused and not connection.received:
                continue
            raise
        except BaseException:
            connection.abort()
            raise
        if head[0] == 407 and pool.forwarded:  # the proxy's own answer (inside a tunnel, the upstream speaks)
            connection.abort()
            raise egress.ProxyFailed(pool.proxy, "requires authentication (HTTP 407): its credentials are "
                                                 "missing or wrong", 407)
        return Response(connection, pool, head, read_timeout, deadline)
