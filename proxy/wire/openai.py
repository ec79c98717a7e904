"""OpenAI Chat Completions: the clients' format, and the upstream format most providers speak.

For OpenAI-format upstreams the stream is passed through event by event with
the upstream's exact bytes; this adapter only watches for the end (`[DONE]`),
for an error event, and for a stream that stops before it finished.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from proxy.config.model import UpstreamConfig
from proxy.config.secrets import quote
from proxy.core import jsonutil
from proxy.core.errors import UpstreamAuthError, UpstreamError, UpstreamHTTPError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target, upstream_json
from proxy.streams.sse import SSEEvent, done_event
from proxy.wire import openai_models
from proxy.wire.registry import bearer_or_key

# What a request translated from the Responses or Messages API carries on assistant messages for
# the turn's thinking to survive a round trip: Anthropic's signed blocks, another issuer's
# encrypted reasoning, and the reasoning text. No OpenAI-format upstream reads the first two.
_PIVOT_ONLY_FIELDS = ("thinking_blocks", "reasoning_encrypted")
# Providers that validate messages strictly and refuse a field they do not know; the others
# either read `reasoning_content` back (DeepSeek, Kimi and GLM ask for it in thinking mode with
# tools) or ignore it (local servers, gateways).
_REFUSE_REASONING_CONTENT = frozenset({"openai", "groq", "mistral", "gemini", "together", "fireworks", "perplexity"})
# The output cap of a translated request goes under the name each provider reads: OpenAI's
# reasoning models take only `max_completion_tokens`; most other servers know only `max_tokens`.
_READ_MAX_COMPLETION_TOKENS = frozenset({"openai", "groq", "gemini"})


# How a chat stream's last event begins (with and without the optional space).
_DONE_LINES = (b"data: [DONE]", b"data:[DONE]")


class OpenAIAdapter:
    chat_path = "chat/completions"
    models_path = "models"

    def auth_headers(self, upstream: UpstreamConfig, configured: set[str]) -> dict[str, str]:
        return bearer_or_key(upstream)

    def encode_chat(self, request: ProxyRequest, target: Target) -> dict:
        body = request.body or {}
        if request.api != "chat":
            body = _for_openai_format(body, target.upstream.kind)
        if body.get("model") == target.model:
            return body
        return {**body, "model": target.model}

    def decode_chat(self, payload: bytes, request: ProxyRequest, target: Target) -> bytes:
        completion = upstream_json(payload, target.upstream.name)
        if not isinstance(completion, dict) or "choices" not in completion:
            raise UpstreamProtocolError(target.upstream.name, "answered 200 without a chat completion")
        record_usage(request, completion.get("usage"))
        return payload  # byte-identical: the client sees exactly what the upstream said

    async def translate_stream(self, events: AsyncIterator[SSEEvent], request: ProxyRequest,
                               target: Target) -> AsyncIterator[SSEEvent]:
        name = target.upstream.name
        last: SSEEvent | None = None
        try:
            async for event in events:
                raw = event.raw
                if raw.startswith(_DONE_LINES):
                    yield event
                    return
                if raw.find(b'"error"', 0, 24) >= 0:
                    failure = error_event(event, name)
                    if failure is not None:
                        raise failure
                last = event
                yield event
        finally:
            await _close(events)
        if last is not None and _finished(last):
            yield done_event()  # some servers end without [DONE] after a complete answer
            return
        raise UpstreamProtocolError(name, "the stream ended before the answer was complete (no [DONE])")

    def decode_error(self, upstream: UpstreamConfig, status: int, payload: bytes,
                     headers: Mapping[str, str]) -> UpstreamError:
        return error_from_openai_body(upstream, status, payload, headers)

    async def list_models(self, upstream: UpstreamConfig, fetch: Callable[..., Awaitable[Any]]) -> tuple[str, list]:
        return await openai_models.list_models(upstream, fetch)

    def probe_body(self, model: str, cap_field: str) -> tuple[str, dict]:
        return openai_models.probe_body(model, cap_field)


ADAPTER = OpenAIAdapter()


def _for_openai_format(body: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """A translated request as this provider takes it; a chat client's own body is never touched."""
    body = dict(body)
    if isinstance(body.get("messages"), list):
        body["messages"] = _without_pivot_fields(body["messages"], kind)
    wanted, other = (("max_completion_tokens", "max_tokens") if kind in _READ_MAX_COMPLETION_TOKENS
                     else ("max_tokens", "max_completion_tokens"))
    if other in body:
        body.setdefault(wanted, body.pop(other))
    return body


def _without_pivot_fields(messages: list[Any], kind: str | None) -> list[Any]:
    drop = _PIVOT_ONLY_FIELDS + (("reasoning_content",) if kind in _REFUSE_REASONING_CONTENT else ())
    return [{key: value for key, value in message.items() if key not in drop}
            if isinstance(message, dict) and any(key in message for key in drop) else message
            for message in messages]


async def _close(events: AsyncIterator[SSEEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def _finished(event: SSEEvent) -> bool:
    try:
        chunk = event.json()
    except ValueError:
        return False
    if not isinstance(chunk, dict):
        return False
    choices = chunk.get("choices") or []
    if not choices:
        return chunk.get("usage") is not None
    return all(isinstance(choice, dict) and choice.get("finish_reason") for choice in choices)


# A delta with any of these (non-empty) means the answer has begun.
CONTENT_FIELDS = ("content", "tool_calls", "reasoning_content", "reasoning", "refusal", "function_call", "audio")


def commits(event: SSEEvent) -> bool:
    """Whether a chat chunk shows the answer has begun (content, tool, reasoning, finish or usage)."""
    data = event.data
    if data is None:
        return False  # a comment or keep-alive
    if event.is_done:
        return True
    try:
        payload = event.json()
    except ValueError:
        return True  # not ours to judge; pass it on
    if not isinstance(payload, dict):
        return True
    choices = payload.get("choices")
    if not choices:
        return bool(payload.get("usage"))
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(name) for name in CONTENT_FIELDS):
            return True
    return False


class ChatEvents:
    """The StreamDialect of chat.completion.chunk streams."""

    name = "chat"
    commits = staticmethod(commits)

    @staticmethod
    def failure(event: SSEEvent, upstream: str) -> UpstreamError | None:
        return error_event(event, upstream)


CHAT_EVENTS = ChatEvents()


def error_event(event: SSEEvent, upstream: str) -> UpstreamError | None:
    """An in-stream `{"error": ...}` event (OpenRouter and others send these) as the matching
    error, or None when the event is not one."""
    if b"error" not in event.raw or event.data is None or event.is_done:
        return None
    try:
        payload = event.json()
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not error:
        return None
    body = error if isinstance(error, dict) else {"message": str(error)}
    message = str(body.get("message") or "the stream failed")
    code = body.get("code")
    if isinstance(code, int) and 400 <= code <= 599:
        return UpstreamHTTPError(upstream, code, message, upstream_body=body)
    return UpstreamProtocolError(upstream, f"the stream failed: {message}")


def error_from_openai_body(upstream: UpstreamConfig, status: int, payload: bytes,
                           headers: Mapping[str, str]) -> UpstreamError:
    error = _error_object(payload)
    message = str(error.get("message")) if error and error.get("message") else _plain_text(payload, status)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status in (401, 403):
        return UpstreamAuthError(upstream.name, f"refused the proxy's credentials ({status}): {message}. "
                                                f"Check api_key for upstream '{upstream.name}'.")
    return UpstreamHTTPError(upstream.name, status, message, upstream_body=error, retry_after=retry_after)


def _error_object(payload: bytes) -> dict[str, Any] | None:
    try:
        decoded = jsonutil.loads(payload)
    except ValueError:
        return None
    if isinstance(decoded, dict):
        inner = decoded.get("error")
        if isinstance(inner, dict):
            return inner
        if isinstance(inner, str):
            return {"message": inner}
        if "message" in decoded or "detail" in decoded:
            return {"message": decoded.get("message") or decoded.get("detail")}
    return None


def _plain_text(payload: bytes, status: int) -> str:
    text = payload.decode("utf-8", errors="replace").strip()
    if not text or text.startswith("<"):
        return f"answered HTTP {status}"
    return f"answered HTTP {status}: {quote(text, 300)}"  # redacted before it is cut


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def wants_usage(request: ProxyRequest) -> bool:
    """Whether a translated stream sends a usage chunk: the way an OpenAI upstream would, when the
    body's stream_options ask for it (the client did, or the streaming middleware did for its
    metrics and drops it again)."""
    options = (request.body or {}).get("stream_options")
    return request.client_wants_usage or (isinstance(options, dict) and options.get("include_usage") is True)


def record_usage(request: ProxyRequest, usage: Any) -> None:
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int):
            request.trace.prompt_tokens = prompt
        if isinstance(completion, int):
            request.trace.completion_tokens = completion


# ---- building chunks (the mock, and synthesized streams for non-streaming upstreams) ----------

def chunk_event(completion_id: str, model: str, created: int, delta: dict[str, Any],
                finish_reason: str | None = None, index: int = 0) -> SSEEvent:
    return SSEEvent.from_json({
        "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    })


def usage_event(completion_id: str, model: str, created: int, usage: dict[str, Any]) -> SSEEvent:
    return SSEEvent.from_json({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                               "model": model, "choices": [], "usage": usage})


def completion_to_events(completion: dict[str, Any], include_usage: bool) -> list[SSEEvent]:
    """A complete `chat.completion` as the chunks a streaming upstream would have sent."""
    completion_id = str(completion.get("id") or "chatcmpl-synth")
    model = str(completion.get("model") or "")
    created = int(completion.get("created") or time.time())
    events = []
    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        events.append(chunk_event(completion_id, model, created, {"role": "assistant", "content": ""}, index=index))
        for field in ("reasoning_content", "thinking_blocks", "content", "refusal"):
            if message.get(field):
                events.append(chunk_event(completion_id, model, created, {field: message[field]}, index=index))
        tool_calls = [{"index": position, **call} for position, call in enumerate(message.get("tool_calls") or [])]
        if tool_calls:
            events.append(chunk_event(completion_id, model, created, {"tool_calls": tool_calls}, index=index))
        events.append(chunk_event(completion_id, model, created, {}, choice.get("finish_reason") or "stop", index))
    if include_usage and completion.get("usage"):
        events.append(usage_event(completion_id, model, created, completion["usage"]))
    events.append(done_event())
    return events
