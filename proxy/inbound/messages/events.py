"""Chat completion chunks -> Anthropic Messages stream events, event by event.

Order of what a client receives: message_start (input_tokens is the request's
estimate, since the real count only comes with the last chunk), ping, then each
content block as content_block_start / content_block_delta* / content_block_stop
with indexes 0, 1, 2... (one block open at a time, as Anthropic sends them), then
message_delta (stop reason and the upstream's real usage) and message_stop.

message_start waits for the first upstream chunk, so a failure before any chunk
still reaches the client as an HTTP error. message_delta waits for the usage
chunk that follows the finish_reason chunk (or [DONE]), so its usage is real.

Kept per stream: the open block, a tail of the text as long as the longest stop
sequence, and per tool call its id, name and a few counters. Text, reasoning and
tool arguments pass straight through; only a tool call that must wait (below)
holds its arguments until it can be sent.

Tool calls are streamed one at a time. A chat provider almost always sends one
call's arguments completely before the next call's; when one interleaves (a
delta for call 2 while call 1's JSON is still open), call 2 is held and sent, its
held arguments as one delta, once call 1's JSON closes or the answer finishes.
A fragment for a call whose block was already closed is dropped: the JSON that
block carried had already ended.

Arguments pass through as the upstream wrote them, so an upstream model that
writes invalid JSON makes the client's parser fail on that block (the anthropic
SDK raises "Unable to parse tool parameter JSON"). With `whole_tool_inputs`, each
call is instead held until its JSON closes and sent in one delta, as a JSON
object whatever the model wrote (the raw text under answer.RAW_ARGUMENTS_KEY
otherwise, as from_chat does), at the cost of arguments arriving call by call.
"""
from __future__ import annotations

import re
from collections import deque
from typing import Any

from proxy.core import jsonutil
from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.inbound.messages.answer import (anthropic_usage, matched_stop_sequence, message_id, stop_reason, tool_id,
                                           tool_input)
from proxy.inbound.messages.count import ASCII_CHARS_PER_TOKEN
from proxy.inbound.messages.request import MessagesContext
from proxy.streams.sse import SSEEvent

_JSON_STRUCTURE = re.compile(r'[\\"{}\[\]]')
# A text delta's event around its block index and its text (more_text).
_TEXT_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_DELTA_TYPE = b',"delta":{"type":"text_delta","text":'
_TEXT_DELTA_TAIL = b"}}\n\n"


class _JsonProgress:
    """Whether streamed JSON has closed its top-level object, without keeping the text."""

    __slots__ = ("depth", "in_string", "escaped", "complete")

    def __init__(self) -> None:
        self.depth, self.in_string, self.escaped, self.complete = 0, False, False, False

    def feed(self, text: str) -> None:
        position = 0
        if self.escaped and text:
            position, self.escaped = 1, False  # the character an earlier fragment's backslash escaped
        while (match := _JSON_STRUCTURE.search(text, position)) is not None:
            char, position = match.group(), match.end()
            if self.in_string:
                if char == "\\":
                    self.escaped = position >= len(text)
                    position += 1
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]" and self.depth > 0:
                self.depth -= 1
                self.complete = self.depth == 0


class _Tool:
    __slots__ = ("id", "name", "held", "json", "begun", "closed")

    def __init__(self) -> None:
        self.begun = False
        self.id: str | None = None
        self.name: str | None = None
        self.held: list[str] = []
        self.json = _JsonProgress()
        self.closed = False


class StreamTranslator:
    """Feed it decoded chat chunks; each call returns the Anthropic event payloads they become."""

    def __init__(self, context: MessagesContext, upstream: str = "upstream", *, whole_tool_inputs: bool = False):
        self.context, self.upstream, self.whole_tool_inputs = context, upstream, whole_tool_inputs
        self.started = self.finished = False
        self._index = 0                     # the next block's index
        self._open: str | _Tool | None = None  # "text", "thinking", a tool, or nothing
        self._tools: dict[Any, _Tool] = {}
        self._last_key: Any = None
        self._waiting: deque[_Tool] = deque()
        self._tool_blocks = 0
        self._finish: Any = None
        self._stop_fields: dict[str, Any] = {}
        self._usage: Any = None
        self._tail = ""
        self._tail_size = max((len(stop) for stop in context.stop_sequences), default=0)
        self._output_chars = 0
        self._text_head_index, self._text_head = -1, b""  # more_text's bytes, for the block at that index

    # ---- input -------------------------------------------------------------------------------

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError(self.upstream, "sent a stream chunk that is not a JSON object")
        if isinstance(chunk.get("error"), dict) and not chunk.get("choices"):
            message = chunk["error"].get("message")
            raise UpstreamError(self.upstream, f"failed mid-stream: {message if isinstance(message, str) else 'error'}")
        out = [] if self.started else self._start(chunk.get("id"))
        if self.finished:
            return out
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0 and self._finish is None:
                out += self._choice(choice)
        if isinstance(chunk.get("usage"), dict):
            # Usage sent with or after the finish reason is the total; earlier (providers that
            # send a running count on every chunk) it is kept in case no total comes.
            self._usage = chunk["usage"]
            if self._finish is not None:
                out += self._end()
        return out

    def done(self) -> list[dict[str, Any]]:
        """`data: [DONE]`: the answer is over, with or without a finish reason or usage."""
        out = [] if self.started else self._start(None)
        return out if self.finished else out + self._close_all() + self._end()

    def end_of_input(self) -> list[dict[str, Any]]:
        """The upstream stopped sending without [DONE]: complete only if it said it was finished."""
        if self._finish is None and not self.finished:
            raise UpstreamProtocolError(self.upstream, "the stream ended before a finish_reason "
                                                       "(the answer is incomplete)")
        return self.done()

    def _start(self, chat_id: Any) -> list[dict[str, Any]]:
        self.started = True
        usage = {"input_tokens": max(1, self.context.estimated_input_tokens), "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "output_tokens": 1}
        message = {"id": message_id(chat_id), "type": "message", "role": "assistant", "model": self.context.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _choice(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        out: list[dict[str, Any]] = []
        if self.context.thinking:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._thinking_text(reasoning)
            if isinstance(delta.get("thinking_blocks"), list):
                out += self._signed(delta["thinking_blocks"])
        for field in ("content", "refusal"):
            if isinstance(delta.get(field), str) and delta[field]:
                out += self._text(delta[field])
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(call, dict):
                out += self._tool_delta(call, position)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
            self._stop_fields = {name: choice.get(name) for name in ("stop_reason", "matched_stop")}
            out += self._close_all()
        return out

    # ---- blocks ------------------------------------------------------------------------------

    def _open_block(self, kind: str | _Tool, block: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close_open()
        self._open = kind
        return out + [{"type": "content_block_start", "index": self._index, "content_block": block}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}

    def _close_open(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        if isinstance(self._open, _Tool):
            self._open.closed = True
        self._open = None
        self._index += 1
        return [{"type": "content_block_stop", "index": self._index - 1}]

    def _thinking_text(self, text: str) -> list[dict[str, Any]]:
        out = [] if self._open == "thinking" else \
            self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self._output_chars += len(text)
        return out + [self._delta({"type": "thinking_delta", "thinking": text})]

    def _signed(self, blocks: list[Any]) -> list[dict[str, Any]]:
        """Signed blocks arrive as a thinking block ends: its signature, then its end. A signed block
        with no streamed text before it (a provider that sends it whole) is sent whole."""
        out: list[dict[str, Any]] = []
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "thinking":
                if self._open != "thinking":
                    text = block.get("thinking")
                    out += self._thinking_text(text) if isinstance(text, str) and text else \
                        self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                if isinstance(block.get("signature"), str) and block["signature"]:
                    out.append(self._delta({"type": "signature_delta", "signature": block["signature"]}))
                out += self._close_open()
            elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
                out += self._open_block("redacted_thinking", {"type": "redacted_thinking", "data": block["data"]})
                out += self._close_open()
        return out

    def _text(self, text: str) -> list[dict[str, Any]]:
        out = [] if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
        self._count_text(text)
        return out + [self._delta({"type": "text_delta", "text": text})]

    def _count_text(self, text: str) -> None:
        self._output_chars += len(text)
        if self._tail_size:
            self._tail = (self._tail + text)[-self._tail_size:]

    def more_text(self, text: str, quoted: bytes) -> SSEEvent | None:
        """The event a chunk whose only news is `text` (content) becomes while a text block is open,
        most of a stream, written from bytes made when the block opened (the bytes the payload
        `feed` returns is encoded to); None in any other state, where `feed` must read the chunk.
        `quoted`: the text as the JSON string jsonutil.dumps writes."""
        if self._open != "text" or self.finished or self._finish is not None or not text:
            return None
        self._count_text(text)
        if self._text_head_index != self._index:
            self._text_head_index = self._index
            self._text_head = _TEXT_DELTA_HEAD + jsonutil.dumps(self._index) + _TEXT_DELTA_TYPE
        return SSEEvent(self._text_head + quoted + _TEXT_DELTA_TAIL)

    def _tool_delta(self, call: dict[str, Any], position: int) -> list[dict[str, Any]]:
        key = self._tool_key(call, position)
        self._last_key = key
        tool = self._tools.get(key)
        if tool is None:
            tool = self._tools[key] = _Tool()
            self._waiting.append(tool)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if tool.id is None and isinstance(call.get("id"), str) and call["id"]:
            tool.id = call["id"]
        if tool.name is None and isinstance(function.get("name"), str) and function["name"]:
            tool.name = function["name"]
        fragment = function.get("arguments")
        fragment = fragment if isinstance(fragment, str) else ""
        if tool.closed:
            return []
        if not tool.begun:  # whitespace before the JSON means nothing, and a client parsing
            fragment = fragment.lstrip()  # each prefix (the anthropic SDK does) fails on it
            tool.begun = bool(fragment)
        tool.json.feed(fragment)
        self._output_chars += len(fragment)
        if tool is self._open:
            out = [self._delta({"type": "input_json_delta", "partial_json": fragment})] if fragment else []
            return out + (self._start_waiting() if tool.json.complete else [])
        if fragment:
            tool.held.append(fragment)
        return self._start_waiting()

    def _tool_key(self, call: dict[str, Any], position: int) -> Any:
        """The call a delta continues: its `index`; without one (a few providers omit it), its id,
        else the call the previous delta was for."""
        index = call.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        if isinstance(call.get("id"), str) and call["id"]:
            return "id", call["id"]
        return self._last_key if self._last_key is not None else ("position", position)

    def _start_waiting(self, force: bool = False) -> list[dict[str, Any]]:
        """Start held tool calls in their order, while the open block is not a tool still streaming
        (and, for whole_tool_inputs, once a call's JSON has closed; each is then sent whole)."""
        out: list[dict[str, Any]] = []
        while self._waiting and (force or self._waiting[0].name is not None):
            if not force and ((isinstance(self._open, _Tool) and not self._open.json.complete)
                              or (self.whole_tool_inputs and not self._waiting[0].json.complete)):
                break
            tool = self._waiting.popleft()
            block = {"type": "tool_use", "id": tool_id(tool.id, self._tool_blocks), "name": tool.name or "",
                     "input": {}}
            out += self._open_block(tool, block)
            self._tool_blocks += 1
            held, tool.held = "".join(tool.held), []
            if self.whole_tool_inputs:
                arguments = tool_input(held)
                held = jsonutil.dumps_str(arguments) if arguments else ""
            if held:
                out.append(self._delta({"type": "input_json_delta", "partial_json": held}))
            if self.whole_tool_inputs:
                out += self._close_open()
        return out

    def _close_all(self) -> list[dict[str, Any]]:
        out = self._start_waiting(force=True)
        return out + self._close_open()

    # ---- the end -------------------------------------------------------------------------------

    def _end(self) -> list[dict[str, Any]]:
        self.finished = True
        matched = matched_stop_sequence(self._stop_fields, self._tail, self.context.stop_sequences)
        reason = stop_reason(self._finish, self._tool_blocks > 0, matched)
        usage = anthropic_usage(self._usage)
        if usage is None:  # the upstream sent none: what the streamed characters suggest
            usage = {"output_tokens": max(1, round(self._output_chars / ASCII_CHARS_PER_TOKEN))}
        delta = {"stop_reason": reason, "stop_sequence": matched if reason == "stop_sequence" else None}
        return [{"type": "message_delta", "delta": delta, "usage": usage}, {"type": "message_stop"}]
