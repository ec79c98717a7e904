"""Reading a client's request before it becomes the chain's: its body within the size and time
limits, the forwarded path's safety, the key it presents and its request id."""
from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from aiohttp import web

from proxy.core.errors import NotFound, ProxyError, RequestTooLarge

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


async def read_body(request: web.Request, limits: Any) -> bytes:
    """The body, refused past `limits.max_body_bytes` and past `limits.body_timeout` (or
    `limits.request_timeout`, when that is shorter): a client trickling its body would
    otherwise hold the connection for as long as it likes."""
    limit = limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(f"the request body is {request.content_length} bytes; the limit is {limit}")
    content = request.content
    if content.is_eof():  # the whole body came with the head (most API calls): nothing to wait for
        body = content.read_nowait()
        if len(body) > limit:
            raise RequestTooLarge(f"the request body exceeds the limit of {limit} bytes")
        return body
    timeout, setting = _body_deadline(limits)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(f"the request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ProxyError(f"the request body did not arrive within {setting} ({timeout:g}s)",
                         status=408, error_type="invalid_request_error", code="request_timeout") from None
    return b"".join(chunks)


def _body_deadline(limits: Any) -> tuple[float, str]:
    """Seconds the body may take, and the setting to name when it takes longer."""
    if limits.request_timeout is not None and limits.request_timeout < limits.body_timeout:
        return limits.request_timeout, "limits.request_timeout"
    return limits.body_timeout, "limits.body_timeout"


# What a forwarded path (already percent-decoded once by aiohttp) may contain: RFC 3986 path
# characters without '%', so nothing decodes a second time upstream, and no '?', '#', '\\',
# whitespace, control or non-ASCII characters that could change the URL it is pasted into.
_FORWARDABLE_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/-]+")


def check_path(path: str) -> None:
    """Forwarded paths stay under the upstream's base path: no dot segments, encoded or not."""
    segments = path.split("/")
    if not _FORWARDABLE_PATH.fullmatch(path) or any(segment in ("", ".", "..") for segment in segments):
        raise NotFound(f"no such endpoint: /v1/{path}")


def is_json(content_type: str, path: str) -> bool:
    return content_type in ("application/json", "") or content_type.endswith("+json") or path == "chat/completions"


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("x-api-key")


def request_id(request: web.Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex
