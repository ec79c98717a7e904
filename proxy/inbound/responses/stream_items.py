"""The output items a Responses stream has open, each emitting its own events.

Each class knows its item's event grammar (added, deltas, done) and keeps only what its
`*.done` events must repeat in full: OpenAI's done events carry the whole text, so the text of
the open item is the one thing a translating stream has to hold. Finished items are handed to
ResponseState.output, which the final `response.completed` lists (as OpenAI's does).
"""
from __future__ import annotations

from typing import Any

from proxy.core import jsonutil
from proxy.inbound.responses.answer import (ResponseState, content_part, fallback_call_id, item_id, message_item,
                                            reasoning_item, tool_item)
from proxy.streams.sse import SSEEvent

_TEXT_DELTA_HEAD = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
_TEXT_DELTA_TAIL = b',"logprobs":[]}\n\n'


class OpenItem:
    kind = ""

    def __init__(self, state: ResponseState, output_index: int):
        self.state = state
        self.output_index = output_index
        self.id = item_id(self.kind, state.response_id, output_index)

    def _event(self, kind: str, **fields: Any) -> SSEEvent:
        return self.state.event(kind, output_index=self.output_index, **fields)

    def _item_event(self, kind: str, **fields: Any) -> SSEEvent:
        return self.state.event(kind, item_id=self.id, output_index=self.output_index, **fields)

    def _finish(self, item: dict[str, Any]) -> SSEEvent:
        self.state.output[self.output_index] = item
        return self._event("response.output_item.done", item=item)

    def done(self, status: str) -> list[SSEEvent]:
        raise NotImplementedError


class ReasoningItem(OpenItem):
    """Reasoning text streams as summary events only when a summary was asked for; signed
    thinking blocks are gathered for the item's encrypted_content."""

    kind = "reasoning"

    def __init__(self, state: ResponseState, output_index: int):
        super().__init__(state, output_index)
        self.texts: list[str] = []
        self.blocks: list[dict[str, Any]] = []

    def added(self) -> list[SSEEvent]:
        return [self._event("response.output_item.added", item={"id": self.id, "type": "reasoning", "summary": []})]

    def text(self, delta: str) -> list[SSEEvent]:
        events = []
        if not self.texts and self.state.context.wants_summary:
            events.append(self._item_event("response.reasoning_summary_part.added", summary_index=0,
                                           part={"type": "summary_text", "text": ""}))
        self.texts.append(delta)
        if self.state.context.wants_summary:
            events.append(self._item_event("response.reasoning_summary_text.delta", summary_index=0, delta=delta))
        return events

    def done(self, status: str) -> list[SSEEvent]:
        text = "".join(self.texts)
        events = []
        if text and self.state.context.wants_summary:
            events.append(self._item_event("response.reasoning_summary_text.done", summary_index=0, text=text))
            events.append(self._item_event("response.reasoning_summary_part.done", summary_index=0,
                                           part={"type": "summary_text", "text": text}))
        item = reasoning_item(self.id, text, self.blocks, self.state.context)
        if "encrypted_content" not in item:
            full = reasoning_item(self.id, text, self.blocks, self.state.context, encrypted=True)
            if full.get("encrypted_content"):
                self.state.carried[self.id] = full["encrypted_content"]
        events.append(self._finish(item))
        return events


class MessageItem(OpenItem):
    """An assistant message; text and refusal are separate content parts, opened as they come.
    The output_text deltas of a part, most of a stream, are written from bytes made when the part
    opens (`more_text`: the bytes `_item_event` would give)."""

    kind = "message"

    def __init__(self, state: ResponseState, output_index: int):
        super().__init__(state, output_index)
        self.parts: list[tuple[str, list[str]]] = []
        self._open_text: list[str] | None = None  # the open part's texts, when it is output_text
        self._delta_fields = b""  # its delta events from item_id to the delta

    def added(self) -> list[SSEEvent]:
        item = {"id": self.id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        return [self._event("response.output_item.added", item=item)]

    def delta(self, kind: str, text: str, quoted: bytes | None = None) -> list[SSEEvent]:
        """`quoted`, when the caller has it: the text as the JSON string jsonutil.dumps writes."""
        events = []
        if not self.parts or self.parts[-1][0] != kind:
            events.extend(self._close_part())
            self._open_part(kind)
            events.append(self._item_event("response.content_part.added", content_index=len(self.parts) - 1,
                                           part=content_part(kind, "")))
        if kind == "refusal":
            self.parts[-1][1].append(text)
            events.append(self._item_event("response.refusal.delta", content_index=len(self.parts) - 1, delta=text))
        else:
            events.append(self.more_text(text, quoted))
        return events

    def more_text(self, text: str, quoted: bytes | None = None) -> SSEEvent | None:
        """The delta event of `text` in the open output_text part; None when no such part is open."""
        texts = self._open_text
        if texts is None:
            return None
        texts.append(text)
        state = self.state
        number, state.sequence_number = state.sequence_number, state.sequence_number + 1
        return SSEEvent(b"%b%d%b%b%b" % (_TEXT_DELTA_HEAD, number, self._delta_fields,
                                         jsonutil.dumps(text) if quoted is None else quoted, _TEXT_DELTA_TAIL))

    def _open_part(self, kind: str) -> None:
        texts: list[str] = []
        self.parts.append((kind, texts))
        self._open_text = texts if kind == "output_text" else None
        self._delta_fields = (b',"item_id":' + jsonutil.dumps(self.id) + b',"output_index":'
                              + jsonutil.dumps(self.output_index) + b',"content_index":'
                              + jsonutil.dumps(len(self.parts) - 1) + b',"delta":')

    def _close_part(self) -> list[SSEEvent]:
        if not self.parts:
            return []
        kind, texts = self.parts[-1]
        text, index = "".join(texts), len(self.parts) - 1
        if kind == "refusal":
            first = self._item_event("response.refusal.done", content_index=index, refusal=text)
        else:
            first = self._item_event("response.output_text.done", content_index=index, text=text, logprobs=[])
        return [first, self._item_event("response.content_part.done", content_index=index,
                                        part=content_part(kind, text))]

    def done(self, status: str) -> list[SSEEvent]:
        events = self._close_part()
        parts = [(kind, "".join(texts)) for kind, texts in self.parts]
        events.append(self._finish(message_item(self.id, parts, status)))
        return events


class ToolCallItem(OpenItem):
    """A function call streams its argument text as it comes. A custom tool call's arguments are
    the JSON text of {"input": "..."}; only that one call's text is buffered, and the decoded
    input is sent whole (one delta, then done) when the call ends: decoding a JSON string that
    arrives split at any byte would need a streaming JSON parser for a few events' earliness."""

    def __init__(self, state: ResponseState, output_index: int, call_id: str, name: str, custom: bool):
        self.kind = "custom_tool_call" if custom else "function_call"
        super().__init__(state, output_index)
        self.given_id = call_id
        self.call_id = call_id or fallback_call_id(self.id)
        self.name = name
        self.custom = custom
        self.arguments: list[str] = []

    def added(self) -> list[SSEEvent]:
        item = tool_item(self.id, self.call_id, self.name, "", self.state.context, "in_progress")
        return [self._event("response.output_item.added", item=item)]

    def delta(self, fragment: str) -> list[SSEEvent]:
        self.arguments.append(fragment)
        if self.custom:
            return []
        return [self._item_event("response.function_call_arguments.delta", delta=fragment)]

    def done(self, status: str) -> list[SSEEvent]:
        arguments = "".join(self.arguments)
        item = tool_item(self.id, self.call_id, self.name, arguments, self.state.context, status)
        if not self.custom:
            return [self._item_event("response.function_call_arguments.done", arguments=arguments),
                    self._finish(item)]
        events = [self._item_event("response.custom_tool_call_input.delta", delta=item["input"])] \
            if item["input"] else []
        events.append(self._item_event("response.custom_tool_call_input.done", input=item["input"]))
        events.append(self._finish(item))
        return events
