"""Anthropic's error envelope for clients of the Messages API.

Every ProxyError renders OpenAI's `{"error": {...}}`; a Messages client (the
anthropic SDKs, Claude Code) reads `{"type": "error", "error": {"type", "message"}}`
and picks its exception class, and whether to retry, from the HTTP status.

Statuses and types follow Anthropic's errors page (400 invalid_request_error,
401 authentication_error, 402 billing_error, 403 permission_error,
404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error,
504 timeout_error, 529 overloaded_error; "invalid_request_error ... may also be
used for other 4XX status codes"). Decisions for statuses Anthropic does not use:

* 503 (the proxy's own "unavailable", an upstream's 503 or Anthropic-style
  overload) becomes 529 overloaded_error: both mean "busy, try later", and the SDK
  raises OverloadedError and retries it.
* 502 keeps its status with type api_error. Turning it into 529 would tell Claude
  Code that Anthropic is overloaded (it then reports an outage, or switches to its
  fallback model); turning it into 500 would hide that a gateway stood in between.
  The SDK treats every status >= 500 as InternalServerError and retries it, so
  the retry behaviour is the same either way.
* 504 keeps its status with Anthropic's own type for it, timeout_error.
* 408 keeps its status (the SDK retries 408) with type timeout_error.
"""
from __future__ import annotations

from typing import Any, Mapping

from proxy.core import jsonutil
from proxy.core.errors import ProxyError
from proxy.streams.sse import SSEEvent

OVERLOADED_STATUS = 529
# HTTP status -> (status sent, Anthropic error type).
_BY_STATUS: Mapping[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (408, "timeout_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    502: (502, "api_error"),
    503: (OVERLOADED_STATUS, "overloaded_error"),
    504: (504, "timeout_error"),
    529: (OVERLOADED_STATUS, "overloaded_error"),
}


def status_and_type(error: ProxyError) -> tuple[int, str]:
    """The HTTP status and Anthropic error type a Messages client is sent for `error`."""
    status = error.status if isinstance(error.status, int) else 500
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if error.error_type == "overloaded_error":
        return OVERLOADED_STATUS, "overloaded_error"
    if 400 <= status < 500:
        return status, "invalid_request_error"
    return (status, "api_error") if 500 <= status < 600 else (500, "api_error")


def error_object(error: ProxyError) -> dict[str, Any]:
    """`{"type", "message"}`; the message is the OpenAI envelope's, so secrets are already redacted."""
    _, error_type = status_and_type(error)
    rendered = error.envelope().get("error")
    message = rendered.get("message") if isinstance(rendered, dict) else None
    return {"type": error_type, "message": message if isinstance(message, str) and message else error_type}


def envelope(error: ProxyError, request_id: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of the error response.

    The headers are the error's own (Retry-After on 429 and 503); the content type
    (application/json) is the caller's to set. `request_id`, when given, is sent as
    Anthropic does, at the top of the body.
    """
    status, _ = status_and_type(error)
    body: dict[str, Any] = {"type": "error", "error": error_object(error)}
    if request_id:
        body["request_id"] = request_id
    return status, jsonutil.dumps(body), dict(error.headers)


def error_event(error: ProxyError) -> SSEEvent:
    """The `event: error` that ends a stream already under way (its HTTP status was 200)."""
    return SSEEvent.from_json({"type": "error", "error": error_object(error)}, event="error")
