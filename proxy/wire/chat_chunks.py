"""The chat chunk a translated stream sends most: one choice whose delta carries only text.

Nearly every event of a translated stream is one of these, so a translator writes it from bytes
made once per stream (all of the chunk but the text) instead of building the chunk's dict and
encoding it whole. The bytes are the ones that encoding gives (tests/test_translated_fast_paths.py
holds them equal). The event keeps its text, so a translator further on (a Responses or Messages
client over an Anthropic upstream) reads it without decoding the JSON again; `text_of` finds the
same news in a decoded chunk from any chat upstream, and a TextReader, once such a chunk has shown
the stream's shape, in the bytes of the chunks after it.
"""
from __future__ import annotations

import re
from typing import Any

from proxy.core import jsonutil
from proxy.streams.sse import SSEEvent

# What may follow the delta in such a chunk: the choice's other fields, then the chunk's end.
_AFTER_DELTA = b'},"logprobs":null,"finish_reason":null}]}\n\n'
# The delta fields a text chunk carries.
TEXT_FIELDS = ("content", "reasoning_content")


# Where a chunk's text may sit: a JSON string literal after a "content" key (on one line).
_CONTENT_STRING = re.compile(rb'"content":("(?:[^"\\\n\r]|\\.)*")')
# Tried in place of the text when a TextReader learns a shape: any other string would do.
_PROBE_TEXT = "\x00probe"
# Chunks a TextReader tries to learn from before it gives up on a stream whose chunks vary.
_LEARNING_TRIES = 3
# Delta fields that are news of their own: a chunk with any of them set is more than text.
_OTHER_NEWS = ("reasoning_content", "reasoning", "thinking_blocks", "refusal", "tool_calls", "function_call", "audio")


class TextChunk(SSEEvent):
    """A chat chunk `{"id", "object", "created", "model", "choices": [{"index": 0, "delta":
    {field: text}, "logprobs": null, "finish_reason": null}]}`, with `field` and `text` at hand,
    and `quoted`: the text as the JSON string jsonutil.dumps writes."""

    __slots__ = ("field", "text", "quoted")

    def __init__(self, raw: bytes, field: str, text: str, quoted: bytes):
        SSEEvent.__init__(self, raw)  # named, not super(): one lookup less on the hottest path
        self.field = field
        self.text = text
        self.quoted = quoted


class ChunkTemplate:
    """One stream's text chunks: its id, creation time and model written once."""

    __slots__ = ("_heads",)

    def __init__(self, completion_id: str, model: str, created: int):
        head = (b'data: {"id":' + jsonutil.dumps(completion_id) + b',"object":"chat.completion.chunk","created":'
                + jsonutil.dumps(created) + b',"model":' + jsonutil.dumps(model) + b',"choices":[{"index":0,"delta":{')
        self._heads = {field: head + jsonutil.dumps(field) + b":" for field in TEXT_FIELDS}

    def text(self, field: str, text: str, quoted: bytes | None = None) -> TextChunk:
        """The chunk whose delta is `{field: text}` (field: one of TEXT_FIELDS); `quoted`, when the
        caller has it: the text as the JSON string jsonutil.dumps(text) writes."""
        if quoted is None:
            quoted = jsonutil.dumps(text)
        return TextChunk(self._heads[field] + quoted + _AFTER_DELTA, field, text, quoted)


def text_of(chunk: Any) -> str | None:
    """The `content` text of a decoded chat chunk whose only news it is: one choice, index 0, no
    finish reason, and no usage, error, reasoning, refusal or tool call; None for any other chunk
    (which a translator then reads field by field)."""
    if type(chunk) is not dict or "error" in chunk or chunk.get("usage") is not None:
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("index", 0) != 0:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    text = delta.get("content")
    if type(text) is not str or not text:
        return None
    if len(delta) > 1 and any(delta.get(name) for name in _OTHER_NEWS):
        return None
    return text


class TextReader:
    """Per stream: the text of a chat chunk read from its bytes, once an earlier chunk has shown
    where the text sits. An upstream writes every text chunk of a stream alike but for the text
    (same id, model, field order), so a chunk that is the learnt bytes before the text, a JSON
    string, and the learnt bytes after it decodes to the learnt chunk with that text: the same news,
    read without decoding the rest. Any other chunk is None, for the translator to decode.

    `learn` takes a chunk that was decoded and found to be text (text_of); it keeps the bytes around
    the text only when putting another string there is checked to change the text."""

    __slots__ = ("_head", "_tail", "_text_at", "_tail_size", "_tries")

    def __init__(self) -> None:
        self._head = self._tail = b""
        self._text_at = self._tail_size = 0
        self._tries = _LEARNING_TRIES

    def read(self, raw: bytes) -> tuple[str, bytes] | None:
        """(text, the text as the JSON string jsonutil.dumps writes), or None."""
        if not self._head or not raw.startswith(self._head) or not raw.endswith(self._tail):
            return None
        read = jsonutil.read_string(raw[self._text_at:len(raw) - self._tail_size])  # empty where they overlap
        return read if read is not None and read[0] else None

    def learn(self, raw: bytes, text: str) -> None:
        """`raw` was decoded and found to be a text chunk (text_of) whose text is `text`."""
        if self._head or not self._tries:
            return
        self._tries -= 1
        for found in _CONTENT_STRING.finditer(raw):
            start, end = found.span(1)
            try:
                if jsonutil.loads(found.group(1)) != text:
                    continue
            except ValueError:
                continue
            if _holds_the_text(raw[:start], raw[end:]):
                self._head, self._tail, self._text_at, self._tail_size = raw[:start], raw[end:], start, len(raw) - end
                return


def _holds_the_text(head: bytes, tail: bytes) -> bool:
    """Whether the string between `head` and `tail` is the one the chunk's text is decoded from (not
    another "content" elsewhere, nor one a later duplicate key overrides): another string there must
    come out as the text. Then any string there does, and nothing else changes: swapping one string
    token for another changes that one value and the JSON around it not at all."""
    try:
        probe = SSEEvent(head + jsonutil.dumps(_PROBE_TEXT) + tail).json()
    except ValueError:
        return False
    return text_of(probe) == _PROBE_TEXT
