"""Responses in, Responses upstream: the client's own body and the upstream's own events.

Only the fields a middleware owns are rewritten, spliced into the client's bytes
(proxy/wire/passthrough.py): `model`, the reasoning effort the reasoning middleware decided when
the client asked for none, and `options:`. Everything else (hosted tools, encrypted reasoning,
`previous_response_id` and `store` on the upstream's own store, unknown future fields) reaches
the upstream as sent. The answer comes back with its exact bytes;
this module only watches it: usage for the metrics, an `error` event or a failed response
before the answer began, and a stream that stops before its terminal event.
"""
from __future__ import annotations

from contextlib import aclosing
from typing import Any, AsyncIterator

from proxy.core import splice
from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target, upstream_json
from proxy.streams.sse import SSEEvent
from proxy.wire import passthrough
from proxy.wire.openai import record_usage
from proxy.wire.responses.answer import chat_usage, failure

# Event types after which the answer has begun (the first delta of anything, or the end).
_ENDING = frozenset({"response.completed", "response.incomplete", "response.failed"})


def encode_native(request: ProxyRequest, target: Target) -> list[Any]:
    """The client's bytes with the owned fields spliced in; nothing else is decoded again."""
    client = passthrough.client_object(request)
    body: dict[str, Any] = {**client.top.values, "model": target.model}
    effort = (request.body or {}).get("reasoning_effort")
    if effort is not None and splice.decode(body.get("reasoning")) is None:
        body["reasoning"] = {"effort": effort}  # the alias's or model's default (plugins/reasoning)
    return passthrough.spliced_body(client, body, target)


def decode_native(payload: bytes, request: ProxyRequest, target: Target) -> bytes:
    """A whole Response, byte-identical; its usage recorded."""
    response = upstream_json(payload, target.upstream.name)
    if isinstance(response, dict):
        record_usage(request, chat_usage(response.get("usage")))
    return payload


async def watch_native(events: AsyncIterator[SSEEvent], request: ProxyRequest,
                       target: Target) -> AsyncIterator[SSEEvent]:
    """The upstream's events as they are, raising on a stream cut short before its end."""
    name = target.upstream.name
    async with aclosing(events):
        async for event in events:
            yield event
            if event.event in _ENDING:
                response = event.json_object().get("response")
                if isinstance(response, dict):
                    record_usage(request, chat_usage(response.get("usage")))
                return
            if event.event == "error":
                return  # the upstream's own last word, already passed on
    raise UpstreamProtocolError(name, "the stream ended before the answer was complete (no response.completed)")


class ResponsesEvents:
    """The StreamDialect of Responses API streams."""

    name = "responses"

    @staticmethod
    def commits(event: SSEEvent) -> bool:
        kind = event.event or ""
        return kind.endswith(".delta") or kind in _ENDING or kind == "response.output_item.done"

    @staticmethod
    def failure(event: SSEEvent, upstream: str) -> UpstreamError | None:
        kind = event.event
        if kind == "error":
            return failure(upstream, event.json_object())
        if kind == "response.failed":
            response = event.json_object().get("response")
            return failure(upstream, response.get("error") if isinstance(response, dict) else None)
        return None


RESPONSES_EVENTS = ResponsesEvents()

