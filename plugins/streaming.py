"""streaming: SSE passthrough bookkeeping, and streams for upstreams that cannot stream.

- Asks the upstream for stream usage (so token metrics work) and takes it out
  again when the client did not ask for it, wherever the upstream put it: a
  usage-only chunk is dropped; a chunk that also carries choices (LiteLLM's
  proxy sends those) loses only its `usage` member, the rest of its bytes kept.
  Every other event passes with its exact bytes.
- Records time to first token and the token counts on the request trace.
- `streaming: false` upstreams (or ones that ignore `stream: true`) are called
  without streaming and their answer is replayed to the client as SSE.
"""
from __future__ import annotations

import time
from typing import AsyncIterator

from proxy.api import Handler, PluginContext, ProxyRequest, ProxyResponse, SSEEvent
from proxy.core import splice
from proxy.core.exchange import StreamDialect
from proxy.streams.guard import FilteredStream
from proxy.wire.openai import CHAT_EVENTS, commits, completion_to_events, record_usage


class StreamingMiddleware:
    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        if not (request.is_chat and request.stream and request.body is not None):
            return await call_next(request)
        upstream = request.target.upstream
        if not upstream.streaming:
            body = {k: v for k, v in request.body.items() if k not in ("stream", "stream_options")}
            return _replayed(await call_next(request.replace(body=body, stream=False)), request)
        if upstream.stream_usage and not request.client_wants_usage:
            stream_options = {**(request.body.get("stream_options") or {}), "include_usage": True}
            request = request.replace(body={**request.body, "stream_options": stream_options})
        response = await call_next(request)
        if not response.is_stream:  # the upstream ignored `stream: true`
            return _replayed(response, request)
        response.events = observe(response.events, request, response.dialect)
        return response


def observe(events: AsyncIterator[SSEEvent], request: ProxyRequest,
            dialect: StreamDialect | None = None) -> AsyncIterator[SSEEvent]:
    """`dialect`: the events' API (a passed-through Responses or Messages stream), which says when
    its answer began; chat chunks by default."""
    trace = request.trace
    # Only chat chunks carry usage the proxy asked for; a passed-through stream's usage is its own.
    drop_usage = not request.client_wants_usage and (dialect is None or dialect.name == "chat")
    began = dialect.commits if dialect is not None else commits

    def watch(event: SSEEvent) -> SSEEvent | None:
        if _carries_usage(event.raw):
            chunk = _json_or_none(event)
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                record_usage(request, chunk["usage"])
                if drop_usage:  # the usage the proxy asked for, not the client
                    return _without_usage(event, chunk) if chunk.get("choices") else None
        if trace.first_token_at is None and began(event):
            trace.first_token_at = time.monotonic()
        return event

    return FilteredStream(events, watch)


def _carries_usage(raw: bytes) -> bool:
    position = raw.find(b'"usage"')
    if position < 0:
        return False
    tail = raw[position + 7:position + 15].lstrip(b": ")
    return not tail.startswith(b"null")


def _without_usage(event: SSEEvent, chunk: dict) -> SSEEvent:
    """The chunk minus its `usage` member: spliced out of the upstream's own bytes when the event
    is one `data:` line (as every OpenAI-format server writes it), else the chunk re-encoded."""
    raw = event.raw
    if raw.startswith(b"data:") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2 and b"\r" not in raw:
        try:
            return SSEEvent(b"data:" + splice.without(raw[5:-2], "usage") + b"\n\n")
        except (ValueError, RecursionError):
            pass  # event.json() read it, so this is not expected; re-encoding is still right
    return SSEEvent.from_json({key: value for key, value in chunk.items() if key != "usage"}, event.event)


def _json_or_none(event: SSEEvent):
    try:
        return event.json()
    except ValueError:
        return None


def _replayed(response: ProxyResponse, request: ProxyRequest) -> ProxyResponse:
    if response.is_stream:
        return response
    events = completion_to_events(response.json_body(), include_usage=request.client_wants_usage)
    if request.trace.first_token_at is None:
        request.trace.first_token_at = time.monotonic()
    return ProxyResponse(status=200, headers=response.headers, events=_iterate(events),
                         content_type="text/event-stream", upstream=response.upstream, dialect=CHAT_EVENTS)


async def _iterate(events: list[SSEEvent]) -> AsyncIterator[SSEEvent]:
    for event in events:
        yield event


def create(context: PluginContext) -> StreamingMiddleware:
    return StreamingMiddleware()
