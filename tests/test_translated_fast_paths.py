"""The short ways translated streams take for their commonest events write the same bytes as the
general way: each stream below is translated twice, once as the proxy does and once with the
short way turned off, and the two must agree byte for byte (and the short way must have been
taken where it applies, or it proves nothing)."""
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import UpstreamConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent
from proxy.wire.anthropic import deltas
from proxy.wire.anthropic import stream as anthropic_stream
from proxy.wire.chat_chunks import ChunkTemplate, TextChunk

pytestmark = pytest.mark.timeout(300)
UPSTREAM = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic")
TARGET = Target(upstream=UPSTREAM, model="claude-sonnet-4-6")

# Any text a model may write: every code point but lone surrogates (which JSON cannot carry),
# control characters, quotes and backslashes included.
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
some_texts = st.lists(texts, min_size=1, max_size=6)


async def _iterate(items):
    for item in items:
        yield item


def _without_short_ways(monkeypatch):
    monkeypatch.setattr(anthropic_stream, "read_text_delta", lambda raw: None)


# ---- the chat chunk template ---------------------------------------------------------------------

@given(texts, st.text(max_size=12), st.text(max_size=12), st.integers(0, 2**40),
       st.sampled_from(["content", "reasoning_content"]))
def test_a_template_chunk_is_the_encoding_of_its_dict(text, completion_id, model, created, field):
    chunk = ChunkTemplate(completion_id, model, created).text(field, text)
    general = SSEEvent.from_json({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                  "model": model, "choices": [{"index": 0, "delta": {field: text}, "logprobs": None,
                                                               "finish_reason": None}]})
    assert chunk.raw == general.raw
    assert (chunk.field, chunk.text) == (field, text) and chunk.json() == general.json()


# ---- Anthropic upstream -> chat chunks -------------------------------------------------------------

def _anthropic_event(payload: dict[str, Any], style: str) -> SSEEvent:
    """An event as Anthropic writes it (compact, raw UTF-8), as a Python client would (compact,
    \\u escapes), or with spaces (which the short way does not read)."""
    if style == "anthropic":
        data = orjson.dumps(payload)
    elif style == "ascii":
        data = json.dumps(payload, separators=(",", ":")).encode()
    else:
        data = json.dumps(payload).encode()
    return SSEEvent(b"event: " + payload["type"].encode() + b"\ndata: " + data + b"\n\n")


def _anthropic_stream(blocks: list[tuple[str, list[str]]], style: str) -> list[SSEEvent]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}
    payloads: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    for index, (kind, pieces) in enumerate(blocks):
        start = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "", "signature": ""}
        payloads.append({"type": "content_block_start", "index": index, "content_block": start})
        for piece in pieces:
            delta = {"type": "text_delta", "text": piece} if kind == "text" else \
                {"type": "thinking_delta", "thinking": piece}
            payloads.append({"type": "content_block_delta", "index": index, "delta": delta})
        if kind == "thinking":
            payloads.append({"type": "content_block_delta", "index": index,
                             "delta": {"type": "signature_delta", "signature": "c2lnbmVk"}})
        payloads.append({"type": "content_block_stop", "index": index})
    payloads += [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                  "usage": {"output_tokens": 9}}, {"type": "message_stop"}]
    return [_anthropic_event(payload, style) for payload in payloads]


def _chat_request() -> ProxyRequest:
    body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    return ProxyRequest(request_id="r1", method="POST", path="chat/completions", body=body, stream=True)


async def _to_chat(events: list[SSEEvent]) -> list[SSEEvent] | type:
    """The chunks, or the class of the error the translation ended with."""
    try:
        return [chunk async for chunk in anthropic_stream.translate(_iterate(events), _chat_request(), TARGET)]
    except ProxyError as exc:
        return type(exc)


async def _both_ways(monkeypatch, events: list[SSEEvent]) -> tuple[Any, Any]:
    clock = time.time()
    with monkeypatch.context() as patched:
        patched.setattr(anthropic_stream.time, "time", lambda: clock)  # one `created` for both
        short = await _to_chat(events)
        _without_short_ways(patched)
        general = await _to_chat(events)
    return short, general


def _raws(outcome: Any) -> Any:
    return [event.raw for event in outcome] if isinstance(outcome, list) else outcome


blocks = st.lists(st.tuples(st.sampled_from(["text", "thinking"]), some_texts), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=blocks, style=st.sampled_from(["anthropic", "ascii"]))
async def test_anthropic_text_and_thinking_deltas_read_from_bytes_translate_as_the_decoded_ones(
        monkeypatch, blocks, style):
    short, general = await _both_ways(monkeypatch, _anthropic_stream(blocks, style))
    assert _raws(short) == _raws(general)
    texts_sent = sum(1 for _, pieces in blocks for piece in pieces if piece)
    assert sum(isinstance(event, TextChunk) for event in short) == texts_sent  # the short way was taken
    for event in short:
        if isinstance(event, TextChunk):
            assert event.json()["choices"][0]["delta"] == {event.field: event.text}


@pytest.mark.parametrize("raw", [
    b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}\n\n',
    b'data: {"type":"content_block_delta","index":00,"delta":{"type":"text_delta","text":"a"}}\n\n',
    b'data: {"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"a"}}\n\n',
    b'data: {"type":"content_block_delta","index":1234567890123456789012,"delta":{"type":"text_delta","text":"a"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\tb"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\\ud800"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\\x"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\xffb"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","b":"c"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"x":"y"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":\n"a"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}\r\n\r\n',
    b'event: message_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}\n\n',
])
async def test_any_other_shape_of_delta_is_left_to_the_general_way(monkeypatch, raw):
    """Near misses (spacing, numbers JSON refuses or cannot hold, invalid text, extra fields, other
    line ends or event names) are not read from their bytes, and end as the general way ends them."""
    assert deltas.read_text_delta(raw) is None
    events = _anthropic_stream([("text", ["x"])], "anthropic")
    events.insert(3, SSEEvent(raw))
    short, general = await _both_ways(monkeypatch, events)
    assert _raws(short) == _raws(general)
