"""Anthropic Messages SSE -> OpenAI `chat.completion.chunk` events, one event at a time.

The state kept per stream is small and bounded: the message id and model, the
usage counters, which content block is which tool call, and the text of the
thinking block being read (its signed copy is sent when the block closes, so a
client can send it back on the next turn). Answer text and tool arguments pass
straight through and are never collected.

Text and thinking deltas, nearly every event, take a shorter way: read from their bytes
(deltas.py) and written from the stream's chunk template (wire/chat_chunks.py), into the same
bytes the decoded event's dict would have been encoded to.
"""
from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any, AsyncIterator

from proxy.core import jsonutil
from proxy.core.errors import UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent, done_event, upstream_event_json
from proxy.wire.anthropic.deltas import read_text_delta
from proxy.wire.anthropic.response import error_from_event, finish_reason, openai_usage, record_usage
from proxy.wire.chat_chunks import ChunkTemplate, TextChunk
from proxy.wire.openai import wants_usage


class _Block:
    """What an open content block is: a tool call (with its OpenAI index) or a thinking block."""

    __slots__ = ("kind", "tool_index", "has_arguments", "thinking", "signature")

    def __init__(self, kind: str, tool_index: int = -1):
        self.kind = kind
        self.tool_index = tool_index
        self.has_arguments = False
        self.thinking: list[str] = []
        self.signature: str | None = None


class StreamTranslator:
    """Feed it Anthropic events (decoded JSON); it returns the OpenAI chunks each one becomes."""

    def __init__(self, upstream: str, model: str, include_usage: bool):
        self.upstream = upstream
        self.include_usage = include_usage
        self.completion_id = "msg-stream"
        self.model = model
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.stop_reason: Any = None
        self.finished = False
        self._blocks: dict[int, _Block] = {}
        self._tool_count = 0
        self._template: ChunkTemplate | None = None  # made on first use, after message_start named the stream

    def feed(self, event: Any) -> list[dict[str, Any]]:
        if not isinstance(event, dict):
            raise UpstreamProtocolError(self.upstream, "sent a stream event that is not a JSON object")
        kind = event.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, event) if handler is not None else []  # ping and future event types

    # ---- message events ------------------------------------------------------------------------

    def _message_start(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        message = _obj(event.get("message"))
        if isinstance(message.get("id"), str) and message["id"]:
            self.completion_id = message["id"]
        if isinstance(message.get("model"), str) and message["model"]:
            self.model = message["model"]
        self.usage.update(_obj(message.get("usage")))
        self._template = None
        return [self._chunk({"role": "assistant", "content": ""})]

    def _message_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        delta = _obj(event.get("delta"))
        if delta.get("stop_reason") is not None:
            self.stop_reason = delta["stop_reason"]
        # message_delta usage is cumulative; newer versions may restate the input counts too
        self.usage.update({key: value for key, value in _obj(event.get("usage")).items() if value is not None})
        return []

    def _message_stop(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.finished = True
        chunks = [self._chunk({}, finish_reason(self.stop_reason) or "stop")]
        if self.include_usage:
            chunks.append({"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [], "usage": openai_usage(self.usage)})
        return chunks

    def _error(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        raise error_from_event(self.upstream, event)

    # ---- content block events --------------------------------------------------------------------

    def _block_start(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        index = _index(self.upstream, event)
        block = _obj(event.get("content_block"))
        kind = block.get("type")
        if kind == "text":
            return [self._chunk({"content": block["text"]})] if _text(block, "text") else []
        if kind == "thinking":
            state = self._blocks[index] = _Block("thinking")
            state.signature = _text(block, "signature") or None  # normally "" here, then a signature_delta
            return self._thinking_text(state, _text(block, "thinking"))
        if kind == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": block.get("data")}
            return [self._chunk({"thinking_blocks": [redacted]})]
        if kind == "tool_use":
            return self._tool_start(index, block)
        return []  # server tool blocks (web search, code execution) have no OpenAI counterpart

    def _tool_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._blocks[index] = _Block("tool", self._tool_count)
        self._tool_count += 1
        arguments = ""
        if isinstance(block.get("input"), dict) and block["input"]:
            arguments = jsonutil.dumps_str(block["input"])  # an input given whole rather than streamed
            state.has_arguments = True
        call = {"index": state.tool_index, "id": str(block.get("id") or f"toolu_{index}"), "type": "function",
                "function": {"name": str(block.get("name") or ""), "arguments": arguments}}
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        index = _index(self.upstream, event)
        delta = _obj(event.get("delta"))
        kind = delta.get("type")
        state = self._blocks.get(index)
        if kind == "text_delta":
            return [self._chunk({"content": delta["text"]})] if _text(delta, "text") else []
        if kind == "thinking_delta" and state is not None and state.kind == "thinking":
            return self._thinking_text(state, _text(delta, "thinking"))
        if kind == "signature_delta" and state is not None and state.kind == "thinking":
            state.signature = (state.signature or "") + _text(delta, "signature")
            return []
        if kind == "input_json_delta" and state is not None and state.kind == "tool":
            fragment = _text(delta, "partial_json")
            if not fragment:
                return []
            state.has_arguments = True
            return [self._chunk({"tool_calls": [{"index": state.tool_index, "function": {"arguments": fragment}}]})]
        return []  # citations, deltas of blocks we do not translate, future delta types

    def _block_stop(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._blocks.pop(_index(self.upstream, event), None)
        if state is None:
            return []
        if state.kind == "tool" and not state.has_arguments:
            # A tool without parameters streams no input; "{}" keeps the arguments parseable.
            return [self._chunk({"tool_calls": [{"index": state.tool_index, "function": {"arguments": "{}"}}]})]
        if state.kind == "thinking":
            signed = {"type": "thinking", "thinking": "".join(state.thinking), "signature": state.signature}
            return [self._chunk({"thinking_blocks": [signed]})]
        return []

    def text_delta(self, index: bytes, kind: str, text: str, quoted: bytes) -> TextChunk | None:
        """What a text_delta or thinking_delta read from its bytes (deltas.read_text_delta)
        becomes: the chunk _block_delta would have made, from the template; None where it makes none."""
        if not text:
            return None
        template = self._template
        if template is None:
            template = self._template = ChunkTemplate(self.completion_id, self.model, self.created)
        if kind == "text_delta":
            return template.text("content", text, quoted)
        state = self._blocks.get(int(index))
        if state is None or state.kind != "thinking":
            return None
        state.thinking.append(text)
        return template.text("reasoning_content", text, quoted)

    def _thinking_text(self, state: _Block, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        state.thinking.append(text)
        return [self._chunk({"reasoning_content": text})]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


_HANDLERS = {
    "message_start": StreamTranslator._message_start,
    "message_delta": StreamTranslator._message_delta,
    "message_stop": StreamTranslator._message_stop,
    "content_block_start": StreamTranslator._block_start,
    "content_block_delta": StreamTranslator._block_delta,
    "content_block_stop": StreamTranslator._block_stop,
    "error": StreamTranslator._error,
}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(holder: dict[str, Any], name: str) -> str:
    value = holder.get(name)
    return value if isinstance(value, str) else ""


def _index(upstream: str, event: dict[str, Any]) -> int:
    index = event.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise UpstreamProtocolError(upstream, f"sent a {event.get('type')} event without a block index")
    return index


async def translate(events: AsyncIterator[SSEEvent], request: ProxyRequest,
                    target: Target) -> AsyncIterator[SSEEvent]:
    upstream = target.upstream.name
    translator = StreamTranslator(upstream, target.model, wants_usage(request))
    async with aclosing(events):
        async for event in events:
            delta = read_text_delta(event.raw)
            if delta is not None:
                chunk = translator.text_delta(*delta)
                if chunk is not None:
                    yield chunk
                continue
            if event.data is None:
                continue  # a comment or keep-alive
            payload = upstream_event_json(event, upstream)
            try:
                chunks = [SSEEvent.from_json(chunk) for chunk in translator.feed(payload)]
            except ValueError:  # values JSON cannot carry back out (nesting, integers past 64 bits)
                raise UpstreamProtocolError(upstream, "sent a stream event the proxy cannot re-encode") from None
            for chunk in chunks:
                yield chunk
            if translator.finished:
                record_usage(request, openai_usage(translator.usage))
                yield done_event()
                return
    raise UpstreamProtocolError(upstream, "the stream ended before message_stop (the answer is incomplete)")
