"""Connection-level protections that aiohttp leaves to the application.

- `limits.max_connections`: a connection opened while that many are already
  open is answered `503` in OpenAI's envelope (`Retry-After: 1`) and closed;
  one that sends nothing is closed after a short grace. Health probes on such
  a connection are still served, so a busy pod is not restarted for it.
- aiohttp's own refusals of a request it could not parse (a header or request
  line over `limits.max_header_bytes`, too many headers, garbage, TLS sent to
  the plain port) are rendered in the envelope too. aiohttp's default answer
  and log line quote the offending bytes, which may be a key in an
  Authorization header; ours name the problem, never the input.
- `limits.header_timeout`: once the first byte of a request head has arrived,
  the whole head (request line and headers) must follow within it, or the
  connection gets `408` and is closed. aiohttp has no such deadline: a client
  trickling its head a byte at a time would hold the connection until the
  keep-alive timer. The body has its own deadline (server/incoming.py).
- Idle keep-alive connections close after 75 s (aiohttp's runner default
  would keep them for an hour).
- A response aiohttp refuses to write (a control character in a header) is
  answered with a 502 envelope, never an unhandled traceback and a connection
  closed without a status line.

The hook is the runner's `_make_server` (the method aiohttp's own runners
implement) returning a `web.Server` subclass built from the stock one; that
reads `Server._loop`/`_kwargs`/`_connections`, unchanged across aiohttp 3.x.
tests/test_security_limits.py pins the behaviour should an upgrade move them.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from http import HTTPStatus
from typing import Any, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, InvalidURLError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.core.errors import ProxyError, ServiceUnavailable

log = logging.getLogger("byok.server")

KEEPALIVE_TIMEOUT = 75.0
# A connection over the limit that sends no request is closed after this many seconds.
OVER_LIMIT_GRACE = 5.0
ALWAYS_SERVED = frozenset({"/healthz", "/readyz"})
# Seconds a connection answered 408 for a slow head stays half-closed before it is closed.
LINGER_AFTER_408 = 2.0


class GuardedRunner(web.AppRunner):
    """`limits` is read on every new connection, so a config reload changes the cap."""

    def __init__(self, app: web.Application, *, limits: Callable[[], Any], **kwargs: Any):
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT)
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(plain, self._limits)


class GuardedServer(web.Server):
    """aiohttp's low-level server with a connection cap and enveloped parse errors."""

    def __init__(self, plain: web.Server, limits: Callable[[], Any]):
        super().__init__(self._admit, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)
        self._application_handler = plain.request_handler
        self.limits = limits
        self.max_header_bytes = plain._kwargs.get("max_field_size")
        self._refusals = _ThrottledCount()
        self.slow_heads = _ThrottledCount()

    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def connection_made(self, handler: RequestHandler, transport: Any) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.limits().max_connections:
            handler.over_limit = True
            self._loop.call_later(OVER_LIMIT_GRACE, handler.force_close)  # refused anyway: no more waiting

    async def _admit(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.protocol.over_limit and request.path not in ALWAYS_SERVED:
            limit = self.limits().max_connections
            refused = self._refusals.add()
            if refused:
                log.warning("refused %d request(s): more than limits.max_connections (%d) connections open",
                            refused, limit)
            error = ServiceUnavailable(f"byok-proxy already has limits.max_connections ({limit}) connections "
                                       f"open; retry shortly", code="too_many_connections",
                                       headers={"Retry-After": "1"})
            return envelope_response(error)
        return await self._application_handler(request)


class _ThrottledCount:
    """Counts refusals; `add` returns the count to log at most every few seconds, else 0."""

    INTERVAL = 5.0

    def __init__(self) -> None:
        self._pending = 0
        self._last_logged = float("-inf")

    def add(self) -> int:
        self._pending += 1
        now = time.monotonic()
        if now - self._last_logged < self.INTERVAL:
            return 0
        count, self._pending, self._last_logged = self._pending, 0, now
        return count


class _EnvelopeRequestHandler(RequestHandler):
    # Set on connections accepted past limits.max_connections: their requests are refused.
    # An attribute, not a set the server keeps: the check runs on every request.
    over_limit = False
    # Requests answered on this connection: while it equals aiohttp's count of requests
    # parsed, every byte that arrives belongs to the next request's head.
    _answered = 0
    _head_timer: asyncio.TimerHandle | None = None
    _lingering = False  # answered 408 and half-closed: what still arrives is read and dropped

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        awaiting_head = self._request_count == self._answered
        super().data_received(data)
        if self._request_count != self._answered:
            self._stop_head_timer()  # a whole head arrived
        elif awaiting_head and data and self._head_timer is None and self._manager is not None:
            timeout = self._manager.limits().header_timeout
            self._head_timer = self._loop.call_later(timeout, self._head_timed_out, timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self, timeout: float) -> None:
        self._head_timer = None
        if self.transport is None or self._force_close or self._request_count != self._answered:
            return
        if self._manager is not None:
            slow = self._manager.slow_heads.add()
            if slow:
                log.info("closed %d connection(s) whose request head did not arrive within "
                         "limits.header_timeout (%gs)", slow, timeout)
        if self._waiter is None or self._waiter.done() or not self.transport.can_write_eof():
            self.force_close()  # between a request and its answer: no room for another answer
            return
        error = ProxyError(f"the request head did not arrive within limits.header_timeout ({timeout:g}s)",
                           status=408, error_type="invalid_request_error", code="request_timeout")
        self.transport.write(_raw_response(error))
        # Closing at once would reset the connection if the client is still sending, and a reset
        # can discard the 408 before the client reads it: half-close, drop what arrives, then close.
        self.transport.write_eof()
        self._lingering = True
        self._loop.call_later(LINGER_AFTER_408, self.force_close)

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        except ValueError as exc:  # aiohttp refused a header (a control character); nothing was written
            if request.writer.output_size > 0:
                raise
            log.warning("could not write the response to %s %s: %s", request.method, request.path, exc)
            error = ProxyError("byok-proxy could not write this answer (a header held a control character)",
                               status=502, error_type="upstream_error", code="upstream_bad_response")
            return await super().finish_response(request, envelope_response(error), start_time)
        finally:
            self._answered += 1

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # same rule as aiohttp: a started response cannot be replaced
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        error = _describe(status, exc, self._manager)
        if error.status >= 500:
            log.error("internal error serving a request from %s", request.remote, exc_info=exc)
        else:
            log.info("refused a malformed HTTP request from %s: %s", request.remote, error.message)
        return envelope_response(error)


def _describe(status: int, exc: BaseException | None, server: Any) -> ProxyError:
    """A fixed description per failure kind: the raw bytes are never quoted back."""
    limit = getattr(server, "max_header_bytes", None)
    if isinstance(exc, LineTooLong):
        return ProxyError(f"the request line or a header is longer than limits.max_header_bytes ({limit} bytes)",
                          status=431, error_type="invalid_request_error", code="header_too_large")
    if isinstance(exc, BadHttpMethod):
        return ProxyError("not an HTTP request (HTTPS sent to the plain HTTP port?)", status=400,
                          error_type="invalid_request_error", code="bad_http_request")
    if isinstance(exc, InvalidURLError) or (exc is not None and "url" in str(getattr(exc, "message", "")).lower()):
        return ProxyError("the request target is not a valid URL path", status=400,
                          error_type="invalid_request_error", code="bad_http_request")
    if status < 500:
        reason = "too many headers" if "too many headers" in str(exc).lower() else "malformed HTTP request"
        return ProxyError(f"{reason}; the connection is closed", status=status,
                          error_type="invalid_request_error", code="bad_http_request")
    if status == 504:
        return ProxyError("the request took too long", status=504, error_type="server_error", code="timeout")
    return ProxyError("internal error in byok-proxy", status=500, code="internal_error")


# What aiohttp refuses to write in a header name or value (its header-injection check).
_UNWRITABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def writable(headers: Mapping[str, str]) -> bool:
    """Whether aiohttp will write these headers. A stream checks before it starts: a failed
    start leaves aiohttp's writer set up for chunks, and no other answer can follow cleanly."""
    return not _UNWRITABLE.search("".join(f"{name}{value}" for name, value in headers.items()))


def _raw_response(error: ProxyError) -> bytes:
    """The error as HTTP/1.1 bytes, for a connection with no request object to answer through."""
    body = error.body()
    return (f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def envelope_response(error: ProxyError) -> web.Response:
    response = web.Response(status=error.status, body=error.body(), headers=error.headers,
                            content_type="application/json")
    response.force_close()
    return response
