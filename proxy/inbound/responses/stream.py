"""A chat chunk stream (the pivot) -> a Responses API event stream, one event at a time.

`ResponsesTranslator` is the synchronous state machine: feed it decoded chat chunks, it returns
the Responses events each one becomes. `ChatToResponsesStream` wraps an async iterator of chat
SSE events with it. At most one reasoning or message item is open at a time (a new one closes
the last); tool calls, which may interleave by index, stay open until text, reasoning or the
end comes. Nothing but the open items' text is kept (see stream_items).
"""
from __future__ import annotations

from collections import deque
from typing import Any, AsyncIterator

from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.inbound.responses.answer import (INCOMPLETE_REASONS, ResponseState, call_fields, failed_event, message_parts,
                                            thinking_blocks, usage_from_chat)
from proxy.inbound.responses.request import ResponsesContext
from proxy.inbound.responses.stream_items import MessageItem, OpenItem, ReasoningItem, ToolCallItem
from proxy.streams.sse import SSEEvent, upstream_event_json
from proxy.streams.wrapper import finish_after_last_event
from proxy.wire.chat_chunks import TextChunk, TextReader, text_of

__all__ = ["ChatToResponsesStream", "ResponsesTranslator", "completion_chunks", "completion_to_events",
           "failed_event", "usage_from_chat"]


class ResponsesTranslator:
    """Chat chunks in, Responses events out. `finish()` closes everything and sends the end."""

    def __init__(self, context: ResponsesContext, response_id: str, created_at: int, upstream: str = "upstream"):
        self.state = ResponseState(context, response_id, created_at)
        self.upstream = upstream
        self.started = False
        self.finish_reason: str | None = None
        self.finished = False
        self._current: ReasoningItem | MessageItem | None = None
        self._tools: dict[int, ToolCallItem] = {}
        self._closed_tools: dict[int, str] = {}   # index -> the id its call came with
        self._retired_keys = 0
        self._next_index = 0

    def start(self) -> list[SSEEvent]:
        if self.started:
            return []
        self.started = True
        response = self.state.response("in_progress")
        return [self.state.event("response.created", response=response),
                self.state.event("response.in_progress", response=response)]

    def feed(self, chunk: Any) -> list[SSEEvent]:
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError(self.upstream, "sent a stream chunk that is not a JSON object")
        if "error" in chunk and not chunk.get("choices"):
            raise UpstreamError(self.upstream, f"failed mid-stream: {_error_message(chunk['error'])}")
        events = self.start()
        if isinstance(chunk.get("usage"), dict):
            self.state.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:  # Responses has one answer
                events.extend(self._delta(choice.get("delta")))
                if isinstance(choice.get("finish_reason"), str):
                    self.finish_reason = choice["finish_reason"]
        return events

    def more_text(self, text: str, quoted: bytes) -> SSEEvent | None:
        """The event of a chunk whose only news is `text` (content) while an output_text part is
        open, most of a stream (what `feed` makes of it); None in any other state: then `text`.
        `quoted`: the text as the JSON string jsonutil.dumps writes."""
        current = self._current
        return current.more_text(text, quoted) if type(current) is MessageItem and text else None

    def text(self, field: str, text: str, quoted: bytes | None = None) -> list[SSEEvent]:
        """What a chunk whose only news is `text` under `field` (content or reasoning_content)
        becomes: what `feed` makes of it, without reading it field by field. `quoted`: the text
        as the JSON string jsonutil.dumps writes, when the caller has it."""
        events = self.start()
        if not text:
            return events
        if field == "content":
            events.extend(self._message_item(events).delta("output_text", text, quoted))
        else:
            events.extend(self._reasoning_item(events).text(text))
        return events

    def end_of_input(self) -> list[SSEEvent]:
        """The chat stream stopped without [DONE]: complete only if it said it was finished."""
        if self.finish_reason is None:
            raise UpstreamProtocolError(self.upstream, "the stream ended before the answer was complete (no [DONE])")
        return self.finish()

    def finish(self) -> list[SSEEvent]:
        """Close the open items (the last one is `incomplete` when the answer was cut off) and
        send response.completed, or response.incomplete."""
        events = self.start()
        status = "incomplete" if self.finish_reason in INCOMPLETE_REASONS else "completed"
        events.extend(self._close_all(status))
        self.finished = True
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        events.append(self.state.event(kind, response=self.state.response("completed", self.finish_reason)))
        return events

    # ---- deltas -----------------------------------------------------------------------------------

    def _delta(self, delta: Any) -> list[SSEEvent]:
        if not isinstance(delta, dict):
            return []
        events: list[SSEEvent] = []
        if _text(delta.get("reasoning_content")):
            events.extend(self._reasoning_item(events).text(delta["reasoning_content"]))
        blocks = thinking_blocks(delta.get("thinking_blocks"))
        if blocks:
            self._reasoning_item(events).blocks.extend(blocks)
        for kind, field in (("output_text", "content"), ("refusal", "refusal")):
            if _text(delta.get(field)):
                events.extend(self._message_item(events).delta(kind, delta[field]))
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(call, dict):
                events.extend(self._tool_delta(call, position))
        return events

    def _reasoning_item(self, events: list[SSEEvent]) -> ReasoningItem:
        if not isinstance(self._current, ReasoningItem):
            self._current = self._open(ReasoningItem, events)
        return self._current

    def _message_item(self, events: list[SSEEvent]) -> MessageItem:
        if not isinstance(self._current, MessageItem):
            self._current = self._open(MessageItem, events)
        return self._current

    def _open(self, item_class: type, events: list[SSEEvent]) -> Any:
        events.extend(self._close_all("completed"))
        item = item_class(self.state, self._take_index())
        events.extend(item.added())
        return item

    def _tool_delta(self, call: dict[str, Any], position: int) -> list[SSEEvent]:
        """Calls are told apart by index; a new id under a known index is a new call too (some
        providers number every call 0). The name comes with a call's first delta."""
        index = call.get("index") if isinstance(call.get("index"), int) else position
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        arguments, call_id = _text(function.get("arguments")), _text(call.get("id"))
        tool = self._tools.get(index)
        if tool is not None and call_id and tool.given_id not in ("", call_id):
            self._retire(index)
            tool = None
        events: list[SSEEvent] = []
        if tool is None:
            if index in self._closed_tools and call_id in ("", self._closed_tools[index]):
                if arguments:
                    raise UpstreamProtocolError(self.upstream, f"sent arguments for tool call {index} after it ended")
                return []
            events.extend(self._close_current("completed"))
            tool = self._open_tool(index, call_id, _text(function.get("name")), events)
        elif not tool.name and _text(function.get("name")):
            tool.name = function["name"]
        if arguments:
            events.extend(tool.delta(arguments))
        return events

    def _open_tool(self, index: int, call_id: str, name: str, events: list[SSEEvent]) -> ToolCallItem:
        custom = name in self.state.context.custom_tool_names
        tool = ToolCallItem(self.state, self._take_index(), call_id, name, custom)
        self._tools[index] = tool
        events.extend(tool.added())
        return tool

    def _retire(self, index: int) -> None:
        """Move an open call out of the way of its index; it still closes with the others."""
        self._retired_keys -= 1
        self._tools[self._retired_keys] = self._tools.pop(index)

    # ---- closing ----------------------------------------------------------------------------------

    def _take_index(self) -> int:
        self._next_index += 1
        return self._next_index - 1

    def _close_current(self, status: str) -> list[SSEEvent]:
        current, self._current = self._current, None
        return current.done(status) if current is not None else []

    def _close_all(self, last_status: str) -> list[SSEEvent]:
        """Close every open item in output order; only the last may be marked incomplete."""
        items: list[OpenItem] = sorted(self._tools.values(), key=lambda item: item.output_index)
        if self._current is not None:
            items.append(self._current)
        self._closed_tools.update((key, tool.given_id) for key, tool in self._tools.items())
        self._tools, self._current = {}, None
        events = []
        for position, item in enumerate(items):
            events.extend(item.done(last_status if position == len(items) - 1 else "completed"))
        return events


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _error_message(error: Any) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) and message else "an error event without a message"


class ChatToResponsesStream:
    """Async iterator of Responses events over an async iterator of chat-chunk SSE events.

    Nothing is sent before the first upstream event arrives, so a failure before any data can
    still become a plain HTTP error (`started` says whether any event was yielded). A ProxyError
    from the inner stream propagates; the server ends the stream with
    `failed_event(stream.state, error)`. A class, not an async generator, so that `aclose()`
    closes the inner iterator exactly once even when iteration never began.
    """

    def __init__(self, chunks: AsyncIterator[SSEEvent], context: ResponsesContext, response_id: str,
                 created_at: int, upstream: str = "upstream"):
        self._chunks = chunks
        self._translator = ResponsesTranslator(context, response_id, created_at, upstream)
        self._pending: deque[SSEEvent] = deque()
        self._reader = TextReader()
        self._inner_closed = False
        self.started = False

    @property
    def state(self) -> ResponseState:
        return self._translator.state

    def __aiter__(self) -> "ChatToResponsesStream":
        return self

    async def __anext__(self) -> SSEEvent:
        # One coroutine per event, the reading and translating written out in it: every event of
        # the stream passes here.
        translator, pending = self._translator, self._pending
        while not pending:
            if translator.finished:
                await self.aclose()
                raise StopAsyncIteration
            try:
                event: SSEEvent | None = await self._chunks.__anext__()
            except StopAsyncIteration:
                event = None
            except BaseException:  # the inner stream failed
                await self.aclose()
                raise
            try:
                if event is None:
                    pending.extend(translator.end_of_input())
                    continue
                more = self._more_text(event)  # most events: one in, one out, none queued
                if more is not None:
                    self.started = True
                    return more
                if type(event) is TextChunk:  # an Anthropic upstream's text, read from its bytes
                    pending.extend(translator.text(event.field, event.text, event.quoted))
                elif event.is_done:
                    pending.extend(translator.finish())
                    self._inner_closed = True
                    await finish_after_last_event(self._chunks)
                elif event.has_data:  # a comment or keep-alive carries nothing
                    pending.extend(self._decoded(event))
            except BaseException:  # what it sent could not be translated, or closing it failed
                await self.aclose()
                raise
        self.started = True
        return pending.popleft()

    def _more_text(self, event: SSEEvent) -> SSEEvent | None:
        """The event of a chunk that only continues the open output_text part, read without decoding
        it: an Anthropic upstream's text (read from its bytes), or a chunk like the stream's earlier
        text chunks (TextReader). None for any other."""
        if type(event) is TextChunk:
            return self._translator.more_text(event.text, event.quoted) if event.field == "content" else None
        read = self._reader.read(event.raw)
        return None if read is None else self._translator.more_text(*read)

    def _decoded(self, event: SSEEvent) -> list[SSEEvent]:
        """A chunk the short ways above did not read: decoded, and, when it is text, taught to the
        TextReader, which then reads the chunks like it from their bytes."""
        translator = self._translator
        chunk = upstream_event_json(event, translator.upstream)
        text = text_of(chunk)
        if text is None:
            return translator.feed(chunk)
        self._reader.learn(event.raw, text)
        return translator.text("content", text)

    async def aclose(self) -> None:
        if self._inner_closed:
            return
        self._inner_closed = True
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


# ---- a whole answer delivered as a stream ---------------------------------------------------------------

def completion_to_events(completion: dict[str, Any], context: ResponsesContext, response_id: str,
                         created_at: int) -> list[SSEEvent]:
    """The events a stream would have carried for this `chat.completion` (an upstream that
    cannot stream): the same translator, fed the chunks the completion is made of."""
    translator = ResponsesTranslator(context, response_id, created_at)
    events = translator.start()
    for chunk in completion_chunks(completion):
        events.extend(translator.feed(chunk))
    events.extend(translator.finish())
    return events


def completion_chunks(completion: Any) -> list[dict[str, Any]]:
    """A completion's first choice as chat chunks: reasoning, blocks, text, refusal, tool calls,
    the finish reason, then usage."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    deltas = [{field: message[field]} for field in ("reasoning_content", "thinking_blocks") if message.get(field)]
    deltas.extend({"content" if kind == "output_text" else "refusal": text} for kind, text in message_parts(message))
    listed = message.get("tool_calls")
    calls = [call_fields(call) for call in (listed if isinstance(listed, list) else ())]
    if calls:
        deltas.append({"tool_calls": [{"index": position, "id": call_id, "type": "function",
                                       "function": {"name": name, "arguments": arguments}}
                                      for position, (call_id, name, arguments) in enumerate(calls)]})
    chunks = [{"choices": [{"index": 0, "delta": delta}]} for delta in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}]})
    if isinstance(completion, dict) and isinstance(completion.get("usage"), dict):
        chunks.append({"choices": [], "usage": completion["usage"]})
    return chunks
