"""Writing the answer: a body, a stream in the batches it arrives in, or an error in the envelope
of the API the request came in on, with the proxy's trace headers. The one place that turns a
ProxyResponse or a ProxyError into bytes on the client's connection."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from proxy import inbound
from proxy.core import jsonutil
from proxy.core.errors import ProxyError, RequestTooLarge, UpstreamProtocolError, sse_error_bytes
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.server.guard import writable
from proxy.streams.batches import batches

log = logging.getLogger("byok.server")


async def write_stream(request: web.Request, response: ProxyResponse, headers: dict[str, str]) -> web.StreamResponse:
    if not writable(headers):  # a header with a control character (from a plugin): still a status line
        await response.aclose()
        error = UpstreamProtocolError(response.upstream or "?", "answered with a header that cannot be written")
        return error_response(error, headers.get("x-request-id", ""))
    stream = web.StreamResponse(status=response.status, headers={
        **headers, "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    batched = batches(response.events)
    try:
        await stream.prepare(request)
    except ConnectionError:
        await batched.aclose()
        await response.aclose()
        return stream  # the client went away before the stream began
    try:
        async for batch in batched:  # the events of one upstream read, in one write
            await stream.write(batch[0].raw if len(batch) == 1 else b"".join(event.raw for event in batch))
    except ProxyError as exc:
        await _write_quietly(stream, sse_error_bytes(exc))
    except (ConnectionResetError, ConnectionError):
        return stream  # the client went away; the finally below cancels the upstream
    except Exception:
        log.exception("internal error while streaming %s", headers.get("x-request-id"))
        await _write_quietly(stream, sse_error_bytes(ProxyError("internal error in byok-proxy while streaming",
                                                                code="internal_error")))
    finally:
        await batched.aclose()
        await response.aclose()
    return stream


async def _write_quietly(stream: web.StreamResponse, data: bytes) -> None:
    try:
        await stream.write(data)
    except ConnectionError:
        pass  # nobody left to tell


def trace_headers(request: ProxyRequest, response: ProxyResponse) -> dict[str, str]:
    headers = {}
    trace = request.trace
    served_by = trace.served_by or response.upstream
    if served_by:
        headers["x-byok-upstream"] = served_by
    failed = [f"{a.upstream}/{a.model}:{a.reason or a.status}" for a in trace.attempts if a.error]
    if failed:
        headers["x-byok-fallbacks"] = ",".join(failed)
    return headers


def bare_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip() or "application/json"


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=jsonutil.dumps(payload), content_type="application/json")


def error_response(error: ProxyError, request_id: str, api: inbound.InboundAPI | None = None) -> web.Response:
    """The error in the envelope of the API the request came in on (OpenAI's by default)."""
    status, body, headers = api.error(error) if api is not None else (error.status, error.body(), dict(error.headers))
    if request_id:
        headers["x-request-id"] = request_id
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


@web.middleware
async def envelope_errors(request: web.Request, handler):
    """aiohttp's own refusals (404 route, 405, 413) in OpenAI's envelope too."""
    try:
        return await handler(request)
    except ProxyError as exc:
        return error_response(exc, "")
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(RequestTooLarge(exc.text or "request body too large"), "")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ProxyError(exc.reason or "request refused", status=exc.status,
                           error_type="invalid_request_error", code=None)
        return error_response(error, "")
    except Exception:  # a bug must become an envelope, never a traceback on the wire
        log.exception("internal error serving %s", request.path)
        return error_response(ProxyError("internal error in byok-proxy", code="internal_error"), "")
