"""Through a forward proxy: the CONNECT tunnel an https upstream is reached by.

The tunnel is a TCP connection to the proxy on which `CONNECT host:port` was answered 2xx;
proxy/upstream/pool.py then runs TLS to the upstream's own name over it (`loop.start_tls`),
so the proxy sees only the host and port, never the request. A plain http upstream needs no
tunnel: its requests go to the proxy in absolute form (`GET http://host/path`).

A proxy that cannot be reached, refuses the CONNECT or closes it is a ProxyFailed naming the
proxy (its host and port, never its credentials), so the 502 and `check` point at the proxy
rather than the upstream behind it.
"""
from __future__ import annotations

import asyncio
import re
import socket

from proxy.config.egress import ProxyURL
from proxy.upstream import dns
from proxy.upstream.http1 import ClientFailure

MAX_CONNECT_HEAD = 16 * 1024  # a proxy's answer to CONNECT is a status line and a few headers

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})([^\r\n]*)")


class ProxyFailed(ClientFailure):
    """The egress proxy could not be reached, refused the tunnel, or broke it off."""

    def __init__(self, proxy: ProxyURL, reason: str, status: int | None = None):
        super().__init__(f"the egress proxy {proxy.shown} {reason}")
        self.proxy, self.reason, self.status = proxy.shown, reason, status
        self.source = proxy.source


async def reach(proxy: ProxyURL) -> socket.socket:
    """A connected socket to the proxy itself; ProxyFailed naming it when there is none."""
    try:
        return await dns.connect(proxy.host, proxy.port)
    except OSError as exc:
        raise ProxyFailed(proxy, f"cannot be reached: {exc.strerror or exc}") from None


def connect_request(proxy: ProxyURL, host: str, port: int) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    authorization = proxy.authorization
    if authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii", "strict")


class _Tunnel(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; nothing else arrives before TLS starts. `answered`
    holds the answer's head, or None with `failure` saying why there is none (a result, not an
    exception: a tunnel abandoned by a cancelled connect leaves nothing unretrieved)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.answered: asyncio.Future[bytes | None] = loop.create_future()
        self.failure = ""
        self._received = b""

    def data_received(self, data: bytes) -> None:
        self._received += data
        end = self._received.find(b"\r\n\r\n")
        if end >= 0:
            self._answer(self._received[:end], "")
        elif len(self._received) > MAX_CONNECT_HEAD:
            self._answer(None, "answered CONNECT with more than 16 KiB of head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._answer(None, "closed the connection before answering CONNECT")

    def _answer(self, head: bytes | None, failure: str) -> None:
        if not self.answered.done():
            self.failure = failure
            self.answered.set_result(head)


async def tunnel(loop: asyncio.AbstractEventLoop, proxy: ProxyURL, host: str,
                 port: int) -> asyncio.Transport:
    """A transport to the proxy on which a CONNECT to host:port succeeded; the caller bounds the time."""
    transport, protocol = await loop.create_connection(lambda: _Tunnel(loop), sock=await reach(proxy))
    try:
        transport.write(connect_request(proxy, host, port))
        head = await protocol.answered
    except BaseException:
        transport.abort()
        raise
    if head is None:
        transport.abort()
        raise ProxyFailed(proxy, protocol.failure)
    status, reason = _status(head)
    if status is None or not 200 <= status < 300:
        transport.abort()
        raise ProxyFailed(proxy, _refusal(status, reason, host, port), status)
    return transport


def _status(head: bytes) -> tuple[int | None, str]:
    match = _STATUS_LINE.match(head)
    if match is None:
        return None, ""
    return int(match.group(1)), match.group(2).decode("latin-1").strip()[:60]


def _refusal(status: int | None, reason: str, host: str, port: int) -> str:
    if status is None:
        return "answered CONNECT with something that is not HTTP"
    if status in (401, 407):  # 407 is the standard answer; tinyproxy says 401 to a CONNECT
        return f"requires authentication (HTTP {status}): its credentials are missing or wrong"
    said = f" {reason}" if reason else ""
    return f"refused the tunnel to {host}:{port} (HTTP {status}{said})"
