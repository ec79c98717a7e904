"""The one error tree. Every failure a client can see is a ProxyError, and
every ProxyError renders OpenAI's envelope:

    {"error": {"message", "type", "code", "param"}}

Lower-layer exceptions (aiohttp, asyncio, JSON) are mapped into this tree at a
single boundary each (server input, transport output), never deeper.
"""
from __future__ import annotations

from typing import Any, Mapping

from proxy.core import jsonutil


class ProxyError(Exception):
    """Base: a client-facing failure with an HTTP status and OpenAI error fields."""

    status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None, status: int | None = None,
                 error_type: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        from proxy.config.secrets import redact  # late: secrets imports nothing from here
        return {"error": {"message": redact(self.message), "type": self.error_type,
                          "code": self.code, "param": self.param}}

    def body(self) -> bytes:
        return jsonutil.dumps(self.envelope())


# ---- the client's own mistakes -------------------------------------------------

class InvalidRequest(ProxyError):
    status, error_type = 400, "invalid_request_error"


class AuthenticationFailed(ProxyError):
    status, error_type, code = 401, "authentication_error", "invalid_api_key"


class NotFound(ProxyError):
    status, error_type, code = 404, "invalid_request_error", "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RequestTooLarge(ProxyError):
    status, error_type, code = 413, "invalid_request_error", "request_too_large"


class RateLimited(ProxyError):
    """The proxy itself refuses for now (queue full or timed out, upstream cooling down)."""

    status, error_type, code = 429, "rate_limit_error", "queue_timeout"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any):
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailable(ProxyError):
    status, error_type, code = 503, "server_error", "unavailable"


# ---- upstream failures ------------------------------------------------------------

class UpstreamError(ProxyError):
    """Something went wrong on the way to, or at, an upstream.

    `fallback_reason` is the word the fallback middleware matches against
    `fallback_on` (a status code as text, `connect` or `timeout`); None means
    "never retry elsewhere" (the client's own request was at fault).
    """

    status, error_type, code = 502, "upstream_error", "upstream_error"
    fallback_reason: str | None = "5xx"

    def __init__(self, upstream: str, message: str, **kwargs: Any):
        super().__init__(f"upstream '{upstream}': {message}", **kwargs)
        self.upstream = upstream
        self.detail = message


class UpstreamUnreachable(UpstreamError):
    code, fallback_reason = "upstream_unreachable", "connect"


class UpstreamTimeout(UpstreamError):
    status, error_type, code, fallback_reason = 504, "upstream_timeout", "upstream_timeout", "timeout"


class UpstreamProtocolError(UpstreamError):
    """The upstream answered with something that is not the protocol (garbage, a reset, a truncated stream)."""

    code, fallback_reason = "upstream_bad_response", "5xx"


class UpstreamAuthError(UpstreamError):
    """The upstream refused the proxy's credentials; the client's own key was fine."""

    code, fallback_reason = "upstream_auth_error", None


# Upstream statuses that are the client's business and reach it unchanged.
CLIENT_VISIBLE_STATUSES = frozenset({400, 404, 408, 409, 413, 415, 422, 429})


class UpstreamHTTPError(UpstreamError):
    """An upstream answered with an error status.

    For statuses in CLIENT_VISIBLE_STATUSES the client sees that status and the
    upstream's own message (its envelope, when it sent one); anything else is a 502.
    """

    def __init__(self, upstream: str, upstream_status: int, message: str, *,
                 upstream_body: dict[str, Any] | None = None, retry_after: float | None = None,
                 **kwargs: Any):
        status = upstream_status if upstream_status in CLIENT_VISIBLE_STATUSES else 502
        if upstream_status >= 500 and upstream_status != 503:
            status = 502
        elif upstream_status == 503:
            status = 503
        headers = dict(kwargs.pop("headers", None) or {})
        if retry_after is not None:
            headers["Retry-After"] = str(max(0, int(retry_after + 0.999)))
        super().__init__(upstream, message, status=status, headers=headers, **kwargs)
        self.upstream_status = upstream_status
        self.upstream_body = upstream_body
        self.retry_after = retry_after
        self.fallback_reason = str(upstream_status)
        if upstream_body is None:
            self.error_type = _type_for_status(upstream_status)
            self.code = None

    def envelope(self) -> dict[str, Any]:
        if self.upstream_body is None:
            return super().envelope()
        from proxy.config.secrets import redact_value
        error = dict(self.upstream_body)
        error["message"] = self.message  # their words, prefixed with which upstream said them
        error.setdefault("type", _type_for_status(self.upstream_status))
        error.setdefault("code", None)
        error.setdefault("param", None)
        return {"error": redact_value(error)}


def _type_for_status(status: int) -> str:
    return {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
            422: "invalid_request_error", 429: "rate_limit_error", 408: "timeout_error",
            503: "overloaded_error"}.get(status, "upstream_error")


def sse_error_bytes(error: ProxyError) -> bytes:
    """The single event that ends a stream that already began: `data: {"error": ...}`."""
    return b"data: " + error.body() + b"\n\n"
