"""Messages in, Anthropic upstream: the client's own body and the upstream's own events.

The body is the client's, with only the fields a middleware owns rewritten: `model`, the
thinking the reasoning middleware decided when the client asked for none, and `options:`.
Everything else (cache_control on every block, signed thinking, server tools, unknown future
fields) reaches the upstream as sent. The answer comes back with its exact bytes; this module
only watches it: usage for the metrics, an `error` event, and a stream that stops before
`message_stop`.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from proxy.core import splice
from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target, upstream_json
from proxy.streams.sse import SSEEvent
from proxy.wire import passthrough
from proxy.wire.anthropic.response import error_from_body, error_from_event, openai_usage

# Events after which the answer has begun: the first delta of any block (thinking counts, so the
# first byte is not held until thinking ends), or the end.
_COMMITTING = frozenset({"content_block_delta", "message_delta", "message_stop"})
# Anthropic's token counting endpoint, below the base URL like `messages`.
COUNT_PATH = "messages/count_tokens"


def encode_native(request: ProxyRequest, target: Target) -> list[Any]:
    """The client's bytes with the owned fields spliced in; nothing else is decoded again. A
    count_tokens body (COUNT_PATH) takes no generation settings, so `options:` are not merged."""
    client = passthrough.client_object(request)
    body: dict[str, Any] = {**client.top.values, "model": target.model}
    pivot = request.body or {}
    if "thinking" not in body and isinstance(pivot.get("thinking"), dict):
        # The alias's or model's reasoning default, in this upstream's dialect (plugins/reasoning).
        body["thinking"] = pivot["thinking"]
        budget = pivot["thinking"].get("budget_tokens")
        max_tokens = splice.decode(body.get("max_tokens"))
        if isinstance(budget, int) and isinstance(max_tokens, int) and max_tokens <= budget:
            body["max_tokens"] = budget + max_tokens
    return passthrough.spliced_body(client, body, None if request.path == COUNT_PATH else target)


def decode_native(payload: bytes, request: ProxyRequest, target: Target) -> bytes:
    """A whole message, byte-identical; its usage recorded."""
    message = upstream_json(payload, target.upstream.name)
    if isinstance(message, dict) and message.get("type") == "error":
        raise error_from_body(target.upstream.name, 500, message, {})
    if isinstance(message, dict):
        _record(request, message.get("usage"))
    return payload


async def watch_native(events: AsyncIterator[SSEEvent], request: ProxyRequest,
                       target: Target) -> AsyncIterator[SSEEvent]:
    """The upstream's events as they are, raising on an `error` event or a cut-short stream."""
    name = target.upstream.name
    try:
        async for event in events:
            raw = event.raw
            if raw.find(b"message_") < 0 and raw.find(b"error") < 0:  # so not one of the events watched for
                yield event  # (most: the deltas), its name not even read
                continue
            kind = event.event
            if kind == "error":
                raise error_from_event(name, event.json_object())
            if kind == "message_start":
                message = event.json_object().get("message") or {}
                _record(request, message.get("usage") if isinstance(message, dict) else None)
            elif kind == "message_delta":
                _record(request, event.json_object().get("usage"), output_only=True)
            yield event
            if kind == "message_stop":
                return
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
    raise UpstreamProtocolError(name, "the stream ended before the answer was complete (no message_stop)")


class MessagesEvents:
    """The StreamDialect of Anthropic Messages streams."""

    name = "messages"

    @staticmethod
    def commits(event: SSEEvent) -> bool:
        return event.event in _COMMITTING

    @staticmethod
    def failure(event: SSEEvent, upstream: str) -> UpstreamError | None:
        return error_from_event(upstream, event.json_object()) if event.event == "error" else None


MESSAGES_EVENTS = MessagesEvents()



def _record(request: ProxyRequest, usage: Any, output_only: bool = False) -> None:
    if not isinstance(usage, dict):
        return
    trace = request.trace
    if "output_tokens" in usage and isinstance(usage["output_tokens"], int):
        trace.completion_tokens = usage["output_tokens"]
    if not output_only or "input_tokens" in usage:
        trace.prompt_tokens = openai_usage(usage)["prompt_tokens"]
