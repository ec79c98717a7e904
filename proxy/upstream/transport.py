"""The fixed end of the chain: sends one attempt to one upstream.

One pool of keep-alive connections per upstream (proxy/upstream/pool.py). Every client, asyncio
and ssl failure is mapped into proxy.core.errors here and nowhere else. Timeouts: `connect`
bounds the TCP/TLS setup, `first_byte` bounds every read (the response head and, once
streaming, each silence between chunks), and `total` bounds the whole attempt including
the stream (or `limits.request_timeout`, when that ends sooner), checked on every read.
A non-streamed answer is refused past `limits.max_response_bytes` once decompressed.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from typing import AsyncIterator, Mapping

from proxy.config.formats import FORMATS
from proxy.config.model import Config, UpstreamConfig
from proxy.config.secrets import redact
from proxy.core import jsonutil
from proxy.core.errors import (InvalidRequest, ProxyError, UpstreamError, UpstreamProtocolError, UpstreamTimeout,
                               UpstreamUnreachable)
from proxy.core.exchange import ProxyRequest, ProxyResponse, Target
from proxy.core.options import merge_options
from proxy.streams.sse import SSEEvent, SSEParser
from proxy.upstream import failures, http1, mock
from proxy.upstream import pool as upstream_client
from proxy.upstream.failures import Kind
from proxy.wire.openai import CHAT_EVENTS
from proxy.wire.registry import adapter_for

MAX_ERROR_BODY = 64 * 1024
SSE_TYPE = "text/event-stream"


class Transport:
    def __init__(self, config: Config):
        self._config = config
        # One pool per networked upstream; the others (the built-in mock) answer in-process.
        self._pools = {name: upstream_client.Pool.for_upstream(upstream)
                       for name, upstream in config.upstreams.items() if FORMATS[upstream.format].networked}

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
        # A translated request goes to the upstream's own endpoint, where the client's query means
        # nothing; a passed-through one keeps it (Claude Code asks Anthropic for /v1/messages?beta=true).
        keeps_query = not request.is_chat or request.passes_through(target.upstream)
        return await self._send(request, target, pool.target(path, request.query if keeps_query else ""),
                                body, content_type)

    # ---- building the outgoing request ------------------------------------------------------

    def _outgoing(self, request: ProxyRequest, target: Target) -> tuple[str, upstream_client.Body, str]:
        """The path (below the base URL), body (bytes, or a spliced body's buffers) and content type
        the upstream is sent."""
        upstream = target.upstream
        if request.passes_through(upstream):  # the upstream speaks the client's API: the client's path too
            adapter = adapter_for(upstream.format)
            return request.path, adapter.encode_native(request, target), "application/json"
        if request.is_chat:
            adapter = adapter_for(upstream.format)
            native = merge_options(adapter.encode_chat(request, target), target)
            encoded = request.spliced.pieces(native) if request.spliced is not None else jsonutil.dumps(native)
            return adapter.chat_path, encoded, "application/json"
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

    async def _send(self, request: ProxyRequest, target: Target, request_target: str, body: upstream_client.Body,
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
            native = request.passes_through(upstream)
            if response.content_type == SSE_TYPE:
                request.trace.cleanups.append(response.release)  # reused when the stream was complete
                events = _read_events(response, upstream, budget)
                if native:
                    events, dialect = adapter.watch_native(events, request, target), adapter.native_events
                elif request.is_chat:
                    events, dialect = adapter.translate_stream(events, request, target), CHAT_EVENTS
                else:
                    dialect = CHAT_EVENTS
                return ProxyResponse(status=response.status, headers=passthrough, events=events,
                                     content_type=SSE_TYPE, upstream=upstream.name, dialect=dialect)
            payload = await _read_bounded(response, upstream, None, budget,
                                          refuse_beyond=self._config.limits.max_response_bytes)
        except BaseException:
            response.close()
            raise
        if native:
            return ProxyResponse(status=response.status, headers=passthrough, upstream=upstream.name,
                                 body=adapter.decode_native(payload, request, target), dialect=adapter.native_events)
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
                        budget: str, refuse_beyond: int | None = None) -> bytes:
    """The body (at most `limit` bytes: an error body is for reading, not for holding a download);
    an answer longer than `refuse_beyond` once decompressed is refused (limits.max_response_bytes)."""
    try:
        return await response.read(limit, refuse_beyond)
    except http1.ResponseTooLarge as exc:
        raise UpstreamProtocolError(upstream.name, f"answered with a body larger than limits.max_response_bytes "
                                                   f"({exc.limit} bytes, decompressed)") from None
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
    """The one mapping from client/asyncio/ssl failures to the error tree, built on
    proxy.upstream.failures.classify (which `check` reads too). The error carries the
    classified failure as `failure`, so a reader of the error need not guess from its words."""
    if isinstance(exc, ProxyError):
        return exc
    failure = failures.classify(exc, failures.early_close_hint(upstream))
    error = _error_for(upstream, failure, phase, budget)
    error.failure = failure
    return error


def _error_for(upstream: UpstreamConfig, failure: failures.Failure, phase: str, budget: str | None) -> ProxyError:
    name, timeouts, kind = upstream.name, upstream.timeout, failure.kind
    if kind is Kind.CONNECT_TIMEOUT:
        return UpstreamTimeout(name, f"no connection within timeout.connect ({timeouts.connect:g}s)")
    if kind is Kind.READ_TIMEOUT:
        what = "the upstream went silent" if failure.got_head else "no first byte"
        return UpstreamTimeout(name, f"{what} within timeout.first_byte ({timeouts.first_byte:g}s)")
    if kind is Kind.DEADLINE:
        return UpstreamTimeout(name, f"no complete answer within {budget or f'timeout.total ({timeouts.total:g}s)'}")
    if kind in (Kind.CERTIFICATE, Kind.TLS):
        return UpstreamUnreachable(name, f"TLS handshake failed: {failure.reason}")
    if kind is Kind.CLIENT_CERTIFICATE:
        return UpstreamUnreachable(name, f"TLS: the upstream {failure.reason} (tls.client_cert, tls.client_key)")
    if kind is Kind.DNS:
        return UpstreamUnreachable(name, f"DNS lookup failed for {upstream.base_url}")
    if kind is Kind.PROXY:  # the proxy is what failed: the upstream behind it was never reached
        return UpstreamUnreachable(name, f"the egress proxy {failure.proxy} {failure.reason}")
    if kind in (Kind.REFUSED, Kind.CONNECT):
        return UpstreamUnreachable(name, f"cannot connect to {upstream.base_url}: {failure.reason}")
    if kind is Kind.DROPPED:
        where = "mid-stream" if phase == "stream" or failure.got_head else "before answering"
        return UpstreamProtocolError(name, f"the connection was closed {where} ({failure.reason})")
    if kind is Kind.MALFORMED:
        return UpstreamProtocolError(name, f"answered with a malformed HTTP response ({failure.reason})")
    return UpstreamError(name, f"request failed: {type(failure.error).__name__}: {failure.reason}")


# Upstream response headers worth showing the client (rate limits, request ids, timing).
_FORWARDED_RESPONSE_PREFIXES = ("x-ratelimit-", "openai-", "anthropic-ratelimit-", "retry-after", "x-request-id")


def _passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(_FORWARDED_RESPONSE_PREFIXES):  # redacted: an upstream may echo the key
            kept["x-upstream-request-id" if lowered == "x-request-id" else lowered] = redact(value)
    return kept
