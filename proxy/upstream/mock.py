"""The built-in `format: mock` upstream: offline, in-process, free.

It echoes the last user message (`echo: ...`), streamed word by word, answers
embeddings with deterministic vectors, and can inject latency and failures
(`mock: {latency_ms, chunk_delay_ms, fail_status, fail_rate}`), so a client
integration can be tested without spending tokens.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import struct
import time
import uuid
from typing import Any, AsyncIterator

from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest, NotFound, UpstreamTimeout
from proxy.core.exchange import ProxyRequest, ProxyResponse, Target
from proxy.streams.sse import SSEEvent, done_event
from proxy.wire.openai import CHAT_EVENTS, chunk_event, error_from_openai_body, record_usage, usage_event

EMBEDDING_DIMENSIONS = 16


async def respond(request: ProxyRequest, target: Target) -> ProxyResponse:
    upstream = target.upstream
    settings = upstream.mock
    if settings.latency_ms:
        if settings.latency_ms / 1000 > upstream.timeout.first_byte:
            await asyncio.sleep(upstream.timeout.first_byte)
            raise UpstreamTimeout(upstream.name, f"no first byte within timeout.first_byte "
                                                 f"({upstream.timeout.first_byte:g}s)")
        await asyncio.sleep(settings.latency_ms / 1000)
    if settings.fail_status and random.random() < settings.fail_rate:
        payload = jsonutil.dumps({"error": {"message": f"mock failure {settings.fail_status} (injected by config)",
                                            "type": "mock_error", "code": None, "param": None}})
        raise error_from_openai_body(upstream, settings.fail_status, payload, {})
    if request.is_chat:
        return _chat(request, target)
    if request.path == "embeddings":
        return _embeddings(request, target)
    raise NotFound(f"the mock upstream '{upstream.name}' does not serve /v1/{request.path}")


def _chat(request: ProxyRequest, target: Target) -> ProxyResponse:
    body = request.body or {}
    reply = "echo: " + last_user_text(body.get("messages") or [])
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    words = reply.split(" ")
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
             "total_tokens": prompt_tokens + len(words)}
    completion_id = f"chatcmpl-mock-{uuid.uuid4().hex[:16]}"
    created = int(time.time())
    record_usage(request, usage)
    if request.stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _stream(completion_id, target.model, created, words, usage, include_usage,
                         target.upstream.mock.chunk_delay_ms / 1000)
        return ProxyResponse(events=events, content_type="text/event-stream", upstream=target.upstream.name,
                             dialect=CHAT_EVENTS)
    completion = {
        "id": completion_id, "object": "chat.completion", "created": created, "model": target.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": usage,
    }
    return ProxyResponse(body=jsonutil.dumps(completion), upstream=target.upstream.name)


async def _stream(completion_id: str, model: str, created: int, words: list[str], usage: dict[str, Any],
                  include_usage: bool, delay: float) -> AsyncIterator[SSEEvent]:
    yield chunk_event(completion_id, model, created, {"role": "assistant", "content": ""})
    for position, word in enumerate(words):
        if delay:
            await asyncio.sleep(delay)
        text = word if position == 0 else " " + word
        yield chunk_event(completion_id, model, created, {"content": text})
    yield chunk_event(completion_id, model, created, {}, "stop")
    if include_usage:
        yield usage_event(completion_id, model, created, usage)
    yield done_event()


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content
                        if isinstance(part, dict) and part.get("type") == "text")
    return ""


def _embeddings(request: ProxyRequest, target: Target) -> ProxyResponse:
    body = request.body or {}
    inputs = body.get("input")
    if isinstance(inputs, (str, int)) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input")
    as_base64 = body.get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": index, "embedding": _vector(str(item), as_base64)}
            for index, item in enumerate(inputs)]
    tokens = sum(len(str(item).split()) for item in inputs)
    payload = {"object": "list", "data": data, "model": target.model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return ProxyResponse(body=jsonutil.dumps(payload), upstream=target.upstream.name)


def _vector(text: str, as_base64: bool) -> Any:
    """A deterministic unit-ish vector derived from the text's hash."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [(byte - 127.5) / 127.5 for byte in digest[:EMBEDDING_DIMENSIONS]]
    if as_base64:
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values
