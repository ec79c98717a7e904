"""The chat chunk a translated stream sends most: one choice whose delta carries only text.

Nearly every event of a translated stream is one of these, so a translator writes it from bytes
made once per stream (all of the chunk but the text) instead of building the chunk's dict and
encoding it whole. The bytes are the ones that encoding gives (tests/test_chat_chunks.py holds
them equal). The event keeps its text, so a translator further on (a Responses or Messages
client over an Anthropic upstream) reads it without decoding the JSON again.
"""
from __future__ import annotations

from proxy.core import jsonutil
from proxy.streams.sse import SSEEvent

# What may follow the delta in such a chunk: the choice's other fields, then the chunk's end.
_AFTER_DELTA = b'},"logprobs":null,"finish_reason":null}]}\n\n'
# The delta fields a text chunk carries.
TEXT_FIELDS = ("content", "reasoning_content")


class TextChunk(SSEEvent):
    """A chat chunk `{"id", "object", "created", "model", "choices": [{"index": 0, "delta":
    {field: text}, "logprobs": null, "finish_reason": null}]}`, with `field` and `text` at hand."""

    __slots__ = ("field", "text")

    def __init__(self, raw: bytes, field: str, text: str):
        SSEEvent.__init__(self, raw)  # named, not super(): one lookup less on the hottest path
        self.field = field
        self.text = text


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
        return TextChunk(self._heads[field] + quoted + _AFTER_DELTA, field, text)
