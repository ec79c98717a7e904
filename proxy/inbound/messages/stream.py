"""The Messages stream over a chat stream: an async iterator of SSE events, and the events
a whole chat completion becomes for a streaming client (see events.py for the translation).
"""
from __future__ import annotations

from collections import deque
from contextlib import suppress
from typing import Any, AsyncIterator

from proxy.core import jsonutil
from proxy.core.errors import UpstreamProtocolError
from proxy.inbound.messages.answer import from_chat
from proxy.inbound.messages.events import StreamTranslator
from proxy.inbound.messages.request import MessagesContext
from proxy.streams.sse import SSEEvent, upstream_event_json
from proxy.streams.wrapper import finish_after_last_event
from proxy.wire.chat_chunks import TextChunk, TextReader, text_of


class ChatToMessagesStream:
    """An async iterator of Anthropic SSE events over an async iterator of chat-chunk events.

    A ProxyError the inner iterator raises is re-raised (after whatever was already
    yielded; the server then ends the stream with errors.error_event). A class
    rather than an async generator so that aclose() closes the inner iterator
    exactly once, even when iteration never started. `whole_tool_inputs`: see events.py.
    """

    def __init__(self, events: AsyncIterator[SSEEvent], context: MessagesContext, *, upstream: str = "upstream",
                 whole_tool_inputs: bool = False):
        self._events = events
        self._translator = StreamTranslator(context, upstream, whole_tool_inputs=whole_tool_inputs)
        self._upstream = upstream
        self._pending: deque[SSEEvent] = deque()
        self._reader = TextReader()
        self._finished = False
        self._closed = False

    def __aiter__(self) -> "ChatToMessagesStream":
        return self

    async def __anext__(self) -> SSEEvent:
        # One coroutine per event, the reading and translating written out in it: every event of
        # the stream passes here.
        pending = self._pending
        while not pending:
            if self._finished:
                raise StopAsyncIteration
            try:
                try:
                    event = await self._events.__anext__()
                except StopAsyncIteration:
                    self._finished = True
                    pending.extend(_encode(self._translator.end_of_input(), self._upstream))
                    await self._close_finished()
                    continue
                more = self._more_text(event)  # most events: one in, one out, none queued
                if more is not None:
                    return more
                if event.is_done:
                    self._finished = self._closed = True
                    await finish_after_last_event(self._events)
                    pending.extend(_encode(self._translator.done(), self._upstream))
                elif event.has_data:  # a comment or keep-alive carries nothing
                    pending.extend(_encode(self._decoded(event), self._upstream))
            except BaseException:
                self._finished = True
                with suppress(Exception):  # the failure is the news, not a second one while closing
                    await self.aclose()
                raise
        return pending.popleft()

    def _more_text(self, event: SSEEvent) -> SSEEvent | None:
        """The event of a chunk that only continues the open text block, read without decoding it:
        an Anthropic upstream's text (read from its bytes), or a chunk like the stream's earlier
        text chunks (TextReader). None for any other, which is decoded."""
        if type(event) is TextChunk:
            return self._translator.more_text(event.text, event.quoted) if event.field == "content" else None
        read = self._reader.read(event.raw)
        return None if read is None else self._translator.more_text(*read)

    def _decoded(self, event: SSEEvent) -> list[dict[str, Any]]:
        """A chunk decoded and fed to the translator; a text chunk teaches the TextReader its shape."""
        chunk = upstream_event_json(event, self._upstream)
        text = text_of(chunk)
        if text is not None:
            self._reader.learn(event.raw, text)
        return self._translator.feed(chunk)

    async def _close_finished(self) -> None:
        """The answer is complete; failing to close what delivered it is not the client's concern."""
        with suppress(Exception):
            await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finished = True
        close = getattr(self._events, "aclose", None)
        if close is not None:
            await close()


def _encode(payloads: list[dict[str, Any]], upstream: str) -> list[SSEEvent]:
    try:
        return [SSEEvent.from_json(payload, event=payload["type"]) for payload in payloads]
    except ValueError:  # values JSON cannot carry back out (nesting, integers past 64 bits)
        raise UpstreamProtocolError(upstream, "sent a stream chunk the proxy cannot re-encode") from None


def completion_to_events(completion: Any, context: MessagesContext, *, upstream: str = "upstream") -> list[SSEEvent]:
    """A whole chat completion as the Messages stream that would have carried it (via from_chat,
    so both say the same); for a streaming client whose upstream answered all at once."""
    message = from_chat(completion, context, upstream=upstream)
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    payloads: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "stop_sequence": None,
                                              "usage": start_usage}},
        {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        payloads += _block_events(index, block)
    payloads.append({"type": "message_delta", "usage": usage,
                     "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}})
    payloads.append({"type": "message_stop"})
    return [SSEEvent.from_json(payload, event=payload["type"]) for payload in payloads]


def _block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block["type"]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start, deltas = {"type": "text", "text": ""}, [{"type": "text_delta", "text": block["text"]}]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"]}] if block["thinking"] else []
        if block["signature"]:
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {**block, "input": {}}
        if block["input"]:
            deltas = [{"type": "input_json_delta", "partial_json": jsonutil.dumps_str(block["input"])}]
    else:  # redacted_thinking: whole in its start
        start = block
    return ([{"type": "content_block_start", "index": index, "content_block": start}]
            + [{"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas]
            + [{"type": "content_block_stop", "index": index}])
