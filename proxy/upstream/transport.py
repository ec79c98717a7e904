"""The fixed end of the chain: sends one attempt to one upstream.

One pool of keep-alive connections per upstream (proxy/upstream/pool.py). Every client, asyncio
and ssl failure is mapped into proxy.core.errors here and nowhere else. Timeouts: `connect`
bounds the TCP/TLS setup, `first_byte` bounds every read (the response head and, once
streaming, each silence between chunks), and `total` bounds the whole attempt including
the stream (or `limits.request_timeout`, when that ends sooner).
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import AsyncIterator, Mapping

from proxy.upstream import http1

from proxy.core import jsonutil

from proxy.upstream import pool as upstream_client
from proxy.config.model import Config, UpstreamConfig
from proxy.core.errors import (InvalidRequest, ProxyError, UpstreamError, UpstreamProtocolError, UpstreamTimeout,
                          UpstreamUnreachable)
from proxy.core.exchange import ProxyRequest, ProxyResponse, Target
from proxy.core.options import merge_options
from proxy.config.secrets import redact
from proxy.streams.sse import SSEEvent, SSEParser
from proxy.wire.registry import adapter_for
from proxy.wire.formats import FORMATS
from proxy.upstream import mock
MAX_ERROR_BODY = 64 * 1024
SSE_TYPE = "text/event-stream"


class Transport:
    def __init__(self, config: Config):
        self._config = config
        # One pool per networked upstream; the others (the built-in mock) answer in-process.
        self._pools = {name: upstream_client.Pool(upstream.base_url) for name, upstream in config.upstreams.items()
                       if FORMATS[upstream.format].networked}

    async def start(self) -> None:
        """Nothing to open ahead: connections are made on first use and then kept alive."""

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    async def __call__(self, request: ProxyRequest) -> ProxyResponse:
        target = request.target
        if target is None:
            raise InvalidRequest("no target was chosen for this request")
        request.trace.dispatched_at = time.monotonic()  # the proxy's own work ends here (overhead metric)
        pool = self._pools.get(target.upstream.name)
        if pool is None:
            return await mock.respond(request, target)
        path, body, content_type = self._outgoing(request, target)
        return await self._send(request, target, pool.target(path, request.query if not request.is_chat else ""),
                                body, content_type)

    # ---- building the outgoing request ------------------------------------------------------

    def _outgoing(self, request: ProxyRequest, target: Target) -> tuple[str, bytes, str]:
        """The path (below the base URL), body and content type the upstream is sent."""
        upstream = target.upstream
        if request.is_chat:
            adapter = adapter_for(upstream.format)
            native = merge_options(adapter.encode_chat(request, target), target)
            return adapter.chat_path, jsonutil.dumps(native), "application/json"
        if not FORMATS[upstream.format].serves_other_paths:
            raise InvalidRequest(f"upstream '{upstream.name}' speaks the {upstream.format} format, which only "
                                 f"serves chat/completions through this proxy", code="unsupported_endpoint")
        if request.body is None:
            return request.path, request.raw_body, request.content_type
        body = request.body
        if target.model and "model" in body:
            body = {**body, "model": target.model}
        return request.path, jsonutil.dumps(body), "application/json"

    # ---- sending and reading ------------------------------------------------------------------

    async def _send(self, request: ProxyRequest, target: Target, request_target: str, body: bytes,
                    content_type: str) -> ProxyResponse:
        upstream = target.upstream
        deadline, budget = _deadline(request, upstream)
        headers = request.upstream_headers
        if body or request.method in ("POST", "PUT", "PATCH"):
            headers = {**headers, "content-type": content_type or "application/json"}
        try:
            response = await upstream_client.send(self._pools[upstream.name], request.method, request_target, headers, body,
                                        connect_timeout=upstream.timeout.connect,
                                        read_timeout=upstream.timeout.first_byte, deadline=deadline)
        except ValueError as exc:  # a header with a line break: never sent
            raise InvalidRequest(f"cannot send this request upstream: {exc}") from None
        except (http1.ClientFailure, ssl.SSLError, OSError) as exc:
            raise map_client_error(upstream, exc, phase="request", budget=budget) from None
        return await self._answer(request, target, response, budget)

    async def _answer(self, request: ProxyRequest, target: Target, response: http1.Response,
                      budget: str) -> ProxyResponse:
        upstream = target.upstream
        adapter = adapter_for(upstream.format)
        try:
            if response.status >= 400:
                payload = await _read_bounded(response, upstream, MAX_ERROR_BODY, budget)
                raise adapter.decode_error(upstream, response.status, payload, response.headers)
            if 300 <= response.status < 400:  # redirects are not followed: they would carry the key elsewhere
                raise UpstreamProtocolError(upstream.name, f"answered with a redirect (HTTP {response.status} to "
                                                           f"{response.headers.get('Location', '?')}); check base_url")
            passthrough = _passthrough_headers(response.headers)
            if response.content_type == SSE_TYPE:
                request.trace.cleanups.append(response.release)  # reused when the stream was complete
                events = _read_events(response, upstream, budget)
                if request.is_chat:
                    events = adapter.translate_stream(events, request, target)
                return ProxyResponse(status=response.status, headers=passthrough, events=events,
                                     content_type=SSE_TYPE, upstream=upstream.name)
            payload = await _read_bounded(response, upstream, None, budget)
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


def _deadline(request: ProxyRequest, upstream: UpstreamConfig) -> tuple[float, str]:
    """When this attempt must be over, and the setting to name when it is not."""
    now = asyncio.get_running_loop().time()
    deadline = now + upstream.timeout.total
    remaining = request.remaining()
    if remaining is not None and now + remaining < deadline:
        return now + remaining, f"limits.request_timeout ({request.deadline - request.started_at:g}s)"
    return deadline, f"timeout.total ({upstream.timeout.total:g}s)"


async def _read_bounded(response: http1.Response, upstream: UpstreamConfig, limit: int | None,
                        budget: str) -> bytes:
    """The body (at most `limit` bytes: an error body is for reading, not for holding a download)."""
    try:
        return await response.read(limit)
    except (http1.ClientFailure, OSError) as exc:
        raise map_client_error(upstream, exc, phase="body", budget=budget) from None
    finally:
        response.release()  # closed instead when the body was cut short or not read to its end


async def _read_events(response: http1.Response, upstream: UpstreamConfig, budget: str) -> AsyncIterator[SSEEvent]:
    """Upstream SSE as events, each yielded as soon as its blank line arrives."""
    parser = SSEParser()
    try:
        try:
            while chunk := await response.read_chunk():
                for event in parser.feed(chunk):
                    yield event
            for event in parser.flush():
                yield event
        except (http1.ClientFailure, OSError) as exc:
            raise map_client_error(upstream, exc, phase="stream", budget=budget) from None
        except ValueError as exc:  # an event larger than the parser accepts
            raise UpstreamProtocolError(upstream.name, str(exc)) from None
    finally:
        response.release()  # closed instead when the answer is not complete (abandoned mid-stream)


def map_client_error(upstream: UpstreamConfig, exc: BaseException, phase: str,
                     budget: str | None = None) -> ProxyError:
    """The one mapping from client/asyncio/ssl failures to the error tree."""
    name, timeouts = upstream.name, upstream.timeout
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, http1.ConnectTimeout) and not exc.by_deadline:
        return UpstreamTimeout(name, f"no connection within timeout.connect ({timeouts.connect:g}s)")
    if isinstance(exc, http1.ReadTimeout) and not exc.by_deadline:
        what = "the upstream went silent" if exc.got_head else "no first byte"
        return UpstreamTimeout(name, f"{what} within timeout.first_byte ({timeouts.first_byte:g}s)")
    if isinstance(exc, (http1.ConnectTimeout, http1.ReadTimeout, asyncio.TimeoutError)):
        return UpstreamTimeout(name, f"no complete answer within {budget or f'timeout.total ({timeouts.total:g}s)'}")
    if isinstance(exc, http1.ConnectFailed):
        return _connect_error(upstream, exc.os_error)
    if isinstance(exc, ssl.SSLError):
        return UpstreamUnreachable(name, f"TLS handshake failed: {_reason(exc)}")
    if isinstance(exc, (http1.ConnectionDropped, ConnectionError, OSError)):
        where = "mid-stream" if phase == "stream" or getattr(exc, "got_head", False) else "before answering"
        return UpstreamProtocolError(name, f"the connection was closed {where} ({_drop_reason(exc)})")
    if isinstance(exc, http1.MalformedResponse):
        return UpstreamProtocolError(name, f"answered with a malformed HTTP response ({exc})")
    return UpstreamError(name, f"request failed: {type(exc).__name__}: {_reason(exc)}")


def _drop_reason(exc: BaseException) -> str:
    if isinstance(exc, http1.ConnectionDropped):
        return type(exc.cause).__name__ if exc.cause is not None else "closed by the upstream"
    return type(exc).__name__


def _connect_error(upstream: UpstreamConfig, error: OSError) -> ProxyError:
    if isinstance(error, ssl.SSLError):
        return UpstreamUnreachable(upstream.name, f"TLS handshake failed: {_reason(error)}")
    if isinstance(error, socket.gaierror):
        return UpstreamUnreachable(upstream.name, f"DNS lookup failed for {upstream.base_url}")
    return UpstreamUnreachable(upstream.name, f"cannot connect to {upstream.base_url}: {_reason(error)}")


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
