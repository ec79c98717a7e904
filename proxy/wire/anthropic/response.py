"""Anthropic Messages answers -> OpenAI shapes: a whole message, usage, stop reasons, errors.

Shared by the non-streaming decoder and the stream translator, so both speak
the same vocabulary (the same finish reasons, the same usage fields, the same
error for the same Anthropic error type).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from proxy.core import jsonutil
from proxy.core.errors import UpstreamAuthError, UpstreamError, UpstreamHTTPError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target, upstream_json
from proxy.core.usage import token_count
from proxy.wire.openai import parse_retry_after

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}
# The HTTP status that goes with each documented error type (an in-stream error event has none).
STATUS_BY_ERROR_TYPE: Mapping[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}
# Anthropic error type -> (OpenAI envelope type, code).
_OPENAI_ERROR: Mapping[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "billing_error": ("insufficient_quota", "billing_error"),
    "api_error": ("server_error", "api_error"),
    "timeout_error": ("timeout_error", "timeout"),
    "overloaded_error": ("overloaded_error", "overloaded"),
}
OVERLOADED_STATUS = 529


def finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic counts cached input apart from `input_tokens`; OpenAI's prompt_tokens include it."""
    fresh = token_count(usage, "input_tokens")
    cache_read = token_count(usage, "cache_read_input_tokens")
    cache_write = token_count(usage, "cache_creation_input_tokens")
    output = token_count(usage, "output_tokens")
    prompt = fresh + cache_read + cache_write
    details: dict[str, Any] = {"cached_tokens": cache_read}
    if cache_write:
        details["cache_creation_tokens"] = cache_write
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
                           "prompt_tokens_details": details}
    output_details = usage.get("output_tokens_details")
    if isinstance(output_details, Mapping) and isinstance(output_details.get("thinking_tokens"), int):
        out["completion_tokens_details"] = {"reasoning_tokens": output_details["thinking_tokens"]}
    return out




def record_usage(request: ProxyRequest, usage: Mapping[str, Any]) -> None:
    request.trace.prompt_tokens = usage["prompt_tokens"]
    request.trace.completion_tokens = usage["completion_tokens"]


# ---- a whole message ------------------------------------------------------------------------------

def decode_message(payload: bytes, request: ProxyRequest, target: Target) -> bytes:
    name = target.upstream.name
    message = upstream_json(payload, name)
    if isinstance(message, dict) and message.get("type") == "error":
        raise error_from_body(name, 500, message, {})
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamProtocolError(name, "answered 200 without a message")
    usage = openai_usage(message["usage"] if isinstance(message.get("usage"), dict) else {})
    record_usage(request, usage)
    completion = {
        "id": str(message.get("id") or f"msg-{request.request_id}"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(message.get("model") or target.model),
        "choices": [{"index": 0, "message": assistant_message(message["content"]), "logprobs": None,
                     "finish_reason": finish_reason(message.get("stop_reason")) or "stop"}],
        "usage": usage,
    }
    return jsonutil.dumps(completion)


def assistant_message(content: list[Any]) -> dict[str, Any]:
    """Text joined, tool_use as tool_calls, thinking as reasoning_content plus signed thinking_blocks."""
    texts, reasoning, tool_calls, thinking_blocks = [], [], [], []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append({"id": str(block.get("id")), "type": "function",
                               "function": {"name": str(block.get("name")),
                                            "arguments": jsonutil.dumps_str(block.get("input") or {})}})
        elif kind == "thinking":
            text = block.get("thinking") if isinstance(block.get("thinking"), str) else ""
            reasoning.append(text)
            thinking_blocks.append({"type": "thinking", "thinking": text, "signature": block.get("signature")})
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block.get("data")})
        # server tool blocks (web search and the like) have no OpenAI counterpart
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    return message


# ---- errors -----------------------------------------------------------------------------------------

def error_from_body(upstream: str, status: int, body: Any, headers: Mapping[str, str]) -> UpstreamError:
    """`{"type": "error", "error": {"type", "message"}}` (or anything else) -> the matching proxy error."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    anthropic_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) and error.get("message") else None
    return make_error(upstream, status, anthropic_type, message or f"answered HTTP {status}", headers)


def error_from_event(upstream: str, event: Any) -> UpstreamError:
    """An `error` event in a stream that had already begun."""
    error = event.get("error") if isinstance(event, dict) else None
    anthropic_type = error.get("type") if isinstance(error, dict) else None
    status = STATUS_BY_ERROR_TYPE.get(anthropic_type, 500) if isinstance(anthropic_type, str) else 500
    return error_from_body(upstream, status, event, {})


def make_error(upstream: str, status: int, anthropic_type: str | None, message: str,
               headers: Mapping[str, str]) -> UpstreamError:
    if status in (401, 403):
        return UpstreamAuthError(upstream, f"refused the proxy's credentials ({status} "
                                           f"{anthropic_type or 'error'}): {message}. "
                                           f"Check api_key for upstream '{upstream}'.")
    openai_type, code = _OPENAI_ERROR.get(anthropic_type or "", (anthropic_type or "upstream_error", None))
    body = {"message": message, "type": openai_type, "code": code, "param": None}
    retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    error = UpstreamHTTPError(upstream, status, message, upstream_body=body, retry_after=retry_after)
    if status == OVERLOADED_STATUS or anthropic_type == "overloaded_error":
        error.status = 503  # Anthropic's 529 is "overloaded, try later": HTTP's 503
    return error
