"""A Responses API event stream -> `chat.completion.chunk` events, one event at a time.

Text, refusal and reasoning deltas become the matching chat deltas as they arrive; a function
call opens a chat tool call at `response.output_item.added` (id and name) and streams its
argument deltas under its own index. A custom tool call's input is sent whole when its item is
done (its chat form is the JSON text `{"input": ...}`). The terminal event brings the finish
reason and usage; `response.failed` and `error` raise. Nothing is kept but the open calls' indexes.
"""
from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any, AsyncIterator, Mapping

from proxy.core.errors import UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent, done_event, upstream_event_json
from proxy.wire.openai import chunk_event, record_usage, usage_event
from proxy.wire.responses.answer import chat_usage, failure, finish_reason, tool_call

_DELTA_FIELDS = {"response.output_text.delta": "content", "response.refusal.delta": "refusal",
                 "response.reasoning_summary_text.delta": "reasoning_content",
                 "response.reasoning_text.delta": "reasoning_content"}
TERMINAL = frozenset({"response.completed", "response.incomplete"})


class ChunkTranslator:
    """Responses events in, chat chunk payloads out; `usage` and `finished` once it has ended."""

    def __init__(self, upstream: str, model: str, include_usage: bool):
        self.upstream = upstream
        self.include_usage = include_usage
        self.id, self.model, self.created = "resp", model, int(time.time())
        self.tools: dict[int, int] = {}  # output_index -> chat tool call index
        self.usage: dict[str, Any] | None = None
        self.finished = False

    def feed(self, event: Mapping[str, Any]) -> list[SSEEvent]:
        kind = event.get("type")
        if kind == "response.created":
            self._begin(event.get("response"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind in _DELTA_FIELDS:
            delta = event.get("delta")
            return [self._chunk({_DELTA_FIELDS[kind]: delta})] if isinstance(delta, str) and delta else []
        if kind == "response.output_item.added":
            return self._call_opened(event)
        if kind == "response.function_call_arguments.delta":
            return self._arguments(event)
        if kind == "response.output_item.done":
            return self._custom_call_done(event)
        if kind in TERMINAL:
            return self._end(event.get("response"))
        if kind == "response.failed":
            response = event.get("response") if isinstance(event.get("response"), Mapping) else {}
            raise failure(self.upstream, response.get("error"))
        if kind == "error":
            raise failure(self.upstream, event)
        return []  # lifecycle and `*.done` events repeat what the deltas already said

    def _begin(self, response: Any) -> None:
        if isinstance(response, Mapping):
            self.id = str(response.get("id") or self.id)
            self.model = str(response.get("model") or self.model)
            self.created = int(response.get("created_at") or self.created)

    def _call_opened(self, event: Mapping[str, Any]) -> list[SSEEvent]:
        item = event.get("item") if isinstance(event.get("item"), Mapping) else {}
        if item.get("type") != "function_call":
            return []
        index = self.tools[event.get("output_index", -1)] = len(self.tools)
        call = tool_call({**item, "arguments": ""})
        return [self._chunk({"tool_calls": [{"index": index, **call}]})]

    def _arguments(self, event: Mapping[str, Any]) -> list[SSEEvent]:
        index = self.tools.get(event.get("output_index", -1))
        delta = event.get("delta")
        if index is None or not isinstance(delta, str) or not delta:
            return []
        return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})]

    def _custom_call_done(self, event: Mapping[str, Any]) -> list[SSEEvent]:
        item = event.get("item") if isinstance(event.get("item"), Mapping) else {}
        if item.get("type") != "custom_tool_call":
            return []
        index = self.tools[event.get("output_index", -1)] = len(self.tools)
        return [self._chunk({"tool_calls": [{"index": index, **tool_call(item)}]})]

    def _end(self, response: Any) -> list[SSEEvent]:
        response = response if isinstance(response, Mapping) else {}
        self.finished = True
        self.usage = chat_usage(response.get("usage"))
        chunks = [chunk_event(self.id, self.model, self.created, {}, finish_reason(response, bool(self.tools)))]
        if self.include_usage and self.usage is not None:
            chunks.append(usage_event(self.id, self.model, self.created, self.usage))
        return chunks

    def _chunk(self, delta: dict[str, Any]) -> SSEEvent:
        return chunk_event(self.id, self.model, self.created, delta)


async def translate(events: AsyncIterator[SSEEvent], request: ProxyRequest, target: Target,
                    include_usage: bool) -> AsyncIterator[SSEEvent]:
    upstream = target.upstream.name
    translator = ChunkTranslator(upstream, target.model, include_usage)
    async with aclosing(events):
        async for event in events:
            if event.data is None:
                continue  # a comment or keep-alive
            payload = upstream_event_json(event, upstream)
            if not isinstance(payload, Mapping):
                raise UpstreamProtocolError(upstream, "sent a stream event that is not a JSON object")
            for chunk in translator.feed(payload):
                yield chunk
            if translator.finished:
                record_usage(request, translator.usage)
                yield done_event()
                return
    raise UpstreamProtocolError(upstream, "the stream ended before response.completed (the answer is incomplete)")
