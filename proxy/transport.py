"""The fixed end of the chain: sends one attempt to one upstream.

One pooled aiohttp ClientSession per upstream (keep-alive, DNS cache). Every
aiohttp/asyncio failure is mapped into proxy.errors here and nowhere else.
Timeouts: `connect` bounds the TCP/TLS setup, `first_byte` bounds every read
(the response head and, once streaming, each silence between chunks), and
`total` bounds the whole attempt including the stream.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from typing import AsyncIterator, Mapping

import aiohttp

from proxy import jsonutil
from proxy.config import Config, UpstreamConfig
from proxy.errors import (InvalidRequest, ProxyError, UpstreamError, UpstreamProtocolError, UpstreamTimeout,
                          UpstreamUnreachable)
from proxy.exchange import ProxyRequest, ProxyResponse, Target
from proxy.options import merge_options
from proxy.secrets import redact
from proxy.sse import SSEEvent, SSEParser
from proxy.wire import adapter_for, mock

MAX_ERROR_BODY = 64 * 1024
SSE_TYPE = "text/event-stream"


class Transport:
    def __init__(self, config: Config):
        self._config = config
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        # Per-read limits never change within a config generation: built once, not per request.
        self._timeouts = {name: aiohttp.ClientTimeout(total=None, sock_connect=upstream.timeout.connect,
                                                      sock_read=upstream.timeout.first_byte)
                          for name, upstream in config.upstreams.items()}

    async def start(self) -> None:
        for upstream in self._config.upstreams.values():
            if upstream.format != "mock":
                self.session_for(upstream)

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    def session_for(self, upstream: UpstreamConfig) -> aiohttp.ClientSession:
        session = self._sessions.get(upstream.name)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300,
                                             keepalive_timeout=30, enable_cleanup_closed=True)
            session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                            skip_auto_headers=("User-Agent",))
            self._sessions[upstream.name] = session
        return session

    async def __call__(self, request: ProxyRequest) -> ProxyResponse:
        target = request.target
        if target is None:
            raise InvalidRequest("no target was chosen for this request")
        request.trace.dispatched_at = time.monotonic()  # the proxy's own work ends here (overhead metric)
        if target.upstream.format == "mock":
            return await mock.respond(request, target)
        url, body, content_type = self._outgoing(request, target)
        return await self._send(request, target, url, body, content_type)

    # ---- building the outgoing request ------------------------------------------------------

    def _outgoing(self, request: ProxyRequest, target: Target) -> tuple[str, bytes, str]:
        upstream = target.upstream
        if request.is_chat:
            adapter = adapter_for(upstream.format)
            native = merge_options(adapter.encode_chat(request, target), target)
            return f"{upstream.base_url}/{adapter.chat_path}", jsonutil.dumps(native), "application/json"
        if upstream.format != "openai":
            raise InvalidRequest(f"upstream '{upstream.name}' speaks the {upstream.format} format, which only "
                                 f"serves chat/completions through this proxy", code="unsupported_endpoint")
        url = f"{upstream.base_url}/{request.path}" + (f"?{request.query}" if request.query else "")
        if request.body is None:
            return url, request.raw_body, request.content_type
        body = request.body
        if target.model and "model" in body:
            body = {**body, "model": target.model}
        return url, jsonutil.dumps(body), "application/json"

    # ---- sending and reading ------------------------------------------------------------------

    async def _send(self, request: ProxyRequest, target: Target, url: str, body: bytes,
                    content_type: str) -> ProxyResponse:
        upstream = target.upstream
        loop = asyncio.get_running_loop()
        deadline = loop.time() + upstream.timeout.total
        budget = f"timeout.total ({upstream.timeout.total:g}s)"  # named in the error when it runs out
        remaining = request.remaining()
        if remaining is not None and loop.time() + remaining < deadline:
            deadline = loop.time() + remaining
            budget = f"limits.request_timeout ({request.deadline - request.started_at:g}s)"
        headers = dict(request.upstream_headers)
        if body or request.method in ("POST", "PUT", "PATCH"):
            headers["content-type"] = content_type or "application/json"
        timeout = self._timeouts[upstream.name]
        session = self.session_for(upstream)
        try:
            async with asyncio.timeout_at(deadline):
                response = await session.request(request.method, url, data=body or None, headers=headers,
                                                 timeout=timeout, allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError, OSError) as exc:
            raise map_client_error(upstream, exc, phase="request", budget=budget) from None
        return await self._answer(request, target, response, deadline, budget)

    async def _answer(self, request: ProxyRequest, target: Target, response: aiohttp.ClientResponse,
                      deadline: float, budget: str) -> ProxyResponse:
        upstream = target.upstream
        adapter = adapter_for(upstream.format)
        try:
            if response.status >= 400:
                payload = await _read_bounded(response, upstream, deadline, MAX_ERROR_BODY, budget)
                raise adapter.decode_error(upstream, response.status, payload, response.headers)
            if 300 <= response.status < 400:  # redirects are not followed: they would carry the key elsewhere
                raise UpstreamProtocolError(upstream.name, f"answered with a redirect (HTTP {response.status} to "
                                                           f"{response.headers.get('Location', '?')}); check base_url")
            passthrough = _passthrough_headers(response.headers)
            if response.content_type == SSE_TYPE:
                request.trace.cleanups.append(response.close)
                events = _read_events(response, upstream, deadline, budget)
                if request.is_chat:
                    events = adapter.translate_stream(events, request, target)
                return ProxyResponse(status=response.status, headers=passthrough, events=events,
                                     content_type=SSE_TYPE, upstream=upstream.name)
            payload = await _read_bounded(response, upstream, deadline, None, budget)
        except BaseException:
            response.close()
            raise
        if request.is_chat:
            payload = adapter.decode_chat(payload, request, target)
            content_type = "application/json"
        else:
            content_type = response.headers.get("Content-Type", "application/json")
        return ProxyResponse(status=response.status, headers=passthrough, body=payload,
                             content_type=content_type, upstream=upstream.name)


async def _read_bounded(response: aiohttp.ClientResponse, upstream: UpstreamConfig, deadline: float,
                        limit: int | None, budget: str) -> bytes:
    try:
        async with asyncio.timeout_at(deadline):
            if limit is None:
                payload = await response.read()
            else:
                payload = await _read_prefix(response, limit)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise map_client_error(upstream, exc, phase="body", budget=budget) from None
    finally:
        response.release()
    return payload


async def _read_prefix(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes: an error body is for reading, not for holding a whole download."""
    parts, size = [], 0
    async for chunk in response.content.iter_any():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


async def _read_events(response: aiohttp.ClientResponse, upstream: UpstreamConfig,
                       deadline: float, budget: str) -> AsyncIterator[SSEEvent]:
    """Upstream SSE as events, each yielded as soon as its blank line arrives."""
    parser = SSEParser()
    loop = asyncio.get_running_loop()
    finished = False
    try:
        try:
            while True:
                if deadline - loop.time() < upstream.timeout.first_byte:
                    # sock_read (first_byte) no longer ends a silent stream in time: bound this read
                    async with asyncio.timeout_at(deadline):
                        chunk = await response.content.readany()
                else:
                    chunk = await response.content.readany()
                if not chunk:
                    break
                for event in parser.feed(chunk):
                    yield event
                if loop.time() > deadline:
                    raise UpstreamTimeout(upstream.name, f"the stream ran past {budget}")
            for event in parser.flush():
                yield event
            finished = True
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise map_client_error(upstream, exc, phase="stream", budget=budget) from None
        except ValueError as exc:  # an event larger than the parser accepts
            raise UpstreamProtocolError(upstream.name, str(exc)) from None
    finally:
        if finished:
            response.release()
        else:
            response.close()  # abandoned mid-stream: the connection cannot be reused


def map_client_error(upstream: UpstreamConfig, exc: BaseException, phase: str,
                     budget: str | None = None) -> ProxyError:
    """The one mapping from aiohttp/asyncio/ssl failures to the error tree."""
    name, timeouts = upstream.name, upstream.timeout
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(name, f"no connection within timeout.connect ({timeouts.connect:g}s)")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        what = "no first byte" if phase == "request" else "the upstream went silent"
        return UpstreamTimeout(name, f"{what} within timeout.first_byte ({timeouts.first_byte:g}s)")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(name, f"no complete answer within {budget or f'timeout.total ({timeouts.total:g}s)'}")
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)):
        return UpstreamUnreachable(name, f"TLS handshake failed: {_reason(exc)}")
    if isinstance(exc, getattr(aiohttp, "ClientConnectorDNSError", ())):
        return UpstreamUnreachable(name, f"DNS lookup failed for {upstream.base_url}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(name, f"cannot connect to {upstream.base_url}: {_reason(exc)}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                        ConnectionError)):
        where = "mid-stream" if phase == "stream" else "before answering"
        return UpstreamProtocolError(name, f"the connection was closed {where} ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(name, f"answered with a malformed HTTP response ({exc.message})")
    return UpstreamError(name, f"request failed: {type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "os_error", None) or exc
    return getattr(inner, "strerror", None) or str(inner) or type(inner).__name__


# Upstream response headers worth showing the client (rate limits, request ids, timing).
_FORWARDED_RESPONSE_PREFIXES = ("x-ratelimit-", "openai-", "anthropic-ratelimit-", "retry-after", "x-request-id")


def _passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(_FORWARDED_RESPONSE_PREFIXES):  # redacted: an upstream may echo the key
            kept["x-upstream-request-id" if lowered == "x-request-id" else lowered] = redact(value)
    return kept
