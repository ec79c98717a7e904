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
from proxy.core import jsonutil
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, Target
from proxy.inbound.messages import stream as messages_stream
from proxy.inbound.messages.events import StreamTranslator
from proxy.inbound.messages.request import MessagesContext
from proxy.inbound.responses import stream as responses_stream
from proxy.inbound.responses.answer import ResponseState
from proxy.inbound.responses.request import ResponsesContext
from proxy.inbound.responses.stream_items import MessageItem
from proxy.streams.sse import SSEEvent
from proxy.wire.anthropic import deltas
from proxy.wire.anthropic import stream as anthropic_stream
from proxy.wire.chat_chunks import ChunkTemplate, TextChunk, TextReader, text_of

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


# ---- chat upstream -> Responses and Messages events ----------------------------------------------

def _chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-x",
            **extra.pop("before", {}),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


# One step of an answer: mostly text, and now and then anything else a chunk may carry.
steps = st.lists(st.one_of(
    texts.map(lambda text: {"content": text}), texts.map(lambda text: {"content": text}),
    texts.map(lambda text: {"content": text}), texts.map(lambda text: {"reasoning_content": text}),
    texts.map(lambda text: {"refusal": text}), st.just({}), st.just({"role": "assistant", "content": ""}),
    texts.map(lambda text: {"content": text, "reasoning_content": None, "role": "assistant"}),
    st.builds(lambda name, arguments: {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                       "function": {"name": name, "arguments": arguments}}]},
              st.sampled_from(["f", "g"]), st.sampled_from(['{"a":', '1}', '{"b":"c"}']))),
    min_size=1, max_size=14)
# How an upstream writes its chunks: compact (most), spaced, \u-escaped, or with a field that
# changes on every chunk (an obfuscation pad), which leaves nothing for a TextReader to learn.
chat_styles = st.sampled_from(["compact", "spaced", "ascii", "padded", "fingerprinted"])


def _chat_event(chunk: dict[str, Any], style: str, position: int) -> SSEEvent:
    if style == "padded":
        chunk = {**chunk, "obfuscation": "x" * (position % 5)}
    elif style == "fingerprinted":
        chunk = {"system_fingerprint": "fp_1", **chunk, "usage": None}
    if style == "spaced":
        data = json.dumps(chunk).encode()
    elif style == "ascii":
        data = json.dumps(chunk, separators=(",", ":")).encode()
    else:
        data = orjson.dumps(chunk)
    return SSEEvent(b"data: " + data + b"\n\n")


def _chat_stream(deltas: list[dict[str, Any]], style: str, finish: str = "stop", usage: bool = True) -> list[SSEEvent]:
    chunks = [_chat_chunk({"role": "assistant", "content": ""}), *(_chat_chunk(delta) for delta in deltas),
              _chat_chunk({}, finish)]
    if usage:
        chunks.append({"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-x",
                       "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    return [_chat_event(chunk, style, position) for position, chunk in enumerate(chunks)] + [SSEEvent(b"data: [DONE]\n\n")]


class _NeverAChunk:
    """What TextChunk is replaced by to turn the short ways off: no event is one."""


class _ReadsNothing:
    def read(self, raw: bytes) -> None:
        return None

    def learn(self, raw: bytes, text: str) -> None:
        pass


def _general_responses(patched) -> None:
    patched.setattr(responses_stream, "TextChunk", _NeverAChunk)
    patched.setattr(responses_stream, "TextReader", _ReadsNothing)
    patched.setattr(responses_stream, "text_of", lambda chunk: None)


def _general_messages(patched) -> None:
    patched.setattr(messages_stream.ChatToMessagesStream, "_more_text", lambda self, event: None)


async def _client_events(stream: Any) -> list[bytes] | type:
    try:
        return [event.raw async for event in stream]
    except ProxyError as exc:
        return type(exc)


def _to_responses(chunks: Any) -> Any:
    return responses_stream.ChatToResponsesStream(chunks, ResponsesContext(model="m"), "resp_test", 1700000000, "up")


def _to_messages(chunks: Any, stop_sequences: tuple[str, ...] = ()) -> Any:
    context = MessagesContext(model="claude-x", max_tokens=256, estimated_input_tokens=42, thinking=True,
                              stop_sequences=stop_sequences)
    return messages_stream.ChatToMessagesStream(chunks, context, upstream="up")


async def _client_both_ways(monkeypatch, to_client, general, events) -> tuple[Any, Any]:
    short = await _client_events(to_client(_iterate(events)))
    with monkeypatch.context() as patched:
        general(patched)
        return short, await _client_events(to_client(_iterate(events)))


def _text_sent(events: list[bytes], marker: bytes) -> int:
    return sum(1 for raw in events if raw.startswith(marker))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deltas=steps, style=chat_styles)
async def test_responses_events_of_a_chat_stream_are_the_same_either_way(monkeypatch, deltas, style):
    short, general = await _client_both_ways(monkeypatch, _to_responses, _general_responses,
                                             _chat_stream(deltas, style))
    assert short == general


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deltas=steps, style=chat_styles, stop=st.sampled_from([(), ("END",), ("a", "longer stop")]),
       ending=st.sampled_from(["", "END", "longer stop"]), usage=st.booleans())
async def test_messages_events_of_a_chat_stream_are_the_same_either_way(monkeypatch, deltas, style, stop, ending,
                                                                        usage):
    """Stop sequences (the text's tail is kept to tell which one ended it) and a stream without usage
    (the output is then counted from the text) included."""
    chunks = _chat_stream(deltas + [{"content": ending}], style, usage=usage)
    short, general = await _client_both_ways(monkeypatch, lambda events: _to_messages(events, stop),
                                             _general_messages, chunks)
    assert short == general


async def test_text_chunks_like_the_earlier_ones_are_read_from_their_bytes(monkeypatch):
    """The short way is taken: after the first text chunk teaches the reader, the others are not decoded."""
    decoded = []
    original = SSEEvent.json

    def counting(event):
        decoded.append(event.raw)
        return original(event)

    events = _chat_stream([{"content": f"piece {n} é \"q\"\n"} for n in range(20)], "compact")
    monkeypatch.setattr(SSEEvent, "json", counting)
    for to_client in (_to_responses, _to_messages):
        decoded.clear()
        out = await _client_events(to_client(_iterate(events)))
        # the role chunk, the first text and the reader's check of what it learnt from it, finish, usage
        assert isinstance(out, list) and len(decoded) == 5


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=blocks, style=st.sampled_from(["anthropic", "ascii"]))
async def test_an_anthropic_stream_reaches_responses_and_messages_clients_the_same_either_way(
        monkeypatch, blocks, style):
    events = _anthropic_stream(blocks, style)
    clock = time.time()
    for to_client, general in ((_to_responses, _general_responses), (_to_messages, _general_messages)):
        outcomes = []
        for short_way in (True, False):
            with monkeypatch.context() as patched:
                patched.setattr(anthropic_stream.time, "time", lambda: clock)
                if not short_way:
                    _without_short_ways(patched)
                    general(patched)
                outcomes.append(await _client_events(to_client(
                    anthropic_stream.translate(_iterate(events), _chat_request(), TARGET))))
        assert outcomes[0] == outcomes[1]


# ---- the bytes written from templates are the encodings of their payloads ----------------------

@given(texts.filter(bool), st.integers(0, 3), st.booleans())
def test_a_responses_text_delta_is_the_encoding_of_its_event(text, output_index, after_refusal):
    state = ResponseState(ResponsesContext(model="m"), "resp_abc", 1)
    state.sequence_number = 17
    item = MessageItem(state, output_index)
    if after_refusal:
        item.delta("refusal", "no")
    item.delta("output_text", "first")
    number, content_index = state.sequence_number, len(item.parts) - 1
    written = item.more_text(text)
    state.sequence_number = number
    expected = state.event("response.output_text.delta", item_id=item.id, output_index=output_index,
                           content_index=content_index, delta=text, logprobs=[])
    assert written.raw == expected.raw and state.sequence_number == number + 1


@given(texts.filter(bool), st.integers(0, 12))
def test_a_messages_text_delta_is_the_encoding_of_its_payload(text, index):
    translator = StreamTranslator(MessagesContext(model="m", max_tokens=9, estimated_input_tokens=1))
    translator.feed(_chat_chunk({"content": "a"}))
    translator._index = index  # as if blocks had come before it
    written = translator.more_text(text, jsonutil.dumps(text))
    expected = SSEEvent.from_json({"type": "content_block_delta", "index": index,
                                   "delta": {"type": "text_delta", "text": text}}, event="content_block_delta")
    assert written.raw == expected.raw


# ---- TextReader ------------------------------------------------------------------------------------

# Top-level fields around `choices`, as providers add them (some holding `"content":` themselves).
extra_fields = st.dictionaries(st.sampled_from(["system_fingerprint", "service_tier", "x", "content", "usage"]),
                               st.one_of(st.none(), st.text(max_size=8), st.just('"content":"a"'),
                                         st.just({"content": "a"}), st.integers(-2**63, 2**63 - 1)), max_size=3)


def _shadowed(raw: bytes, text: str, shadow: str) -> bytes:
    """`raw` with the same text under another "content" key: before the real one at the top level,
    nested, after it, or in the delta itself where the real key overrides it."""
    quoted = b'"content":' + orjson.dumps(text)
    if shadow == "top":
        return raw.replace(b'data: {', b'data: {' + quoted + b",", 1)
    if shadow == "nested":
        return raw.replace(b'data: {', b'data: {"x":{' + quoted + b"},", 1)
    if shadow == "after":
        return raw[:-3] + b"," + quoted + b"}\n\n"
    if shadow == "duplicate":
        return raw.replace(b'"delta":{', b'"delta":{' + quoted + b",", 1)
    return raw


@settings(max_examples=300, deadline=None)
@given(first=texts.filter(bool), later=texts, before=extra_fields, after=extra_fields, style=chat_styles,
       shadow=st.sampled_from(["", "top", "nested", "after", "duplicate"]), swap=st.booleans(),
       cut=st.integers(0, 400), byte=st.integers(0, 255), space=st.sampled_from([b" ", b"\n", b"\r", b"\t"]))
def test_a_text_reader_reads_only_what_decoding_reads(first, later, before, after, style, shadow, swap, cut, byte,
                                                       space):
    """Whatever a reader has learnt, what it reads from a chunk is that chunk's text as decoding
    finds it (and nothing when decoding finds other news): on chunks like the first, on chunks
    with other text, and on chunks with one byte changed anywhere; with the same text under other
    "content" keys that decoding does not take it from."""
    reader = TextReader()
    learnt = _chat_event(_chat_chunk({"content": first}, before=before, **after), style, 0)
    learnt = SSEEvent(_shadowed(learnt.raw, first, shadow) if style == "compact" else learnt.raw)
    try:
        chunk = learnt.json()
    except ValueError:
        return
    if text_of(chunk) is not None:
        reader.learn(learnt.raw, text_of(chunk))
    real, shadowing = (first, later) if swap else (later, first)  # swapped: the other key's text changes
    later_raw = _chat_event(_chat_chunk({"content": real}, before=before, **after), style, 1).raw
    later_raw = _shadowed(later_raw, shadowing, shadow) if style == "compact" else later_raw
    changed = later_raw[:cut] + bytes([byte]) + later_raw[cut + 1:]
    spaced = [later_raw.replace(b'{"content":', b'{"content":' + space, 1),  # JSON's whitespace; a line break to SSE
              later_raw.replace(b'"},"logprobs"', b'"' + space + b'},"logprobs"', 1)]
    for raw in (learnt.raw, later_raw, changed, *spaced):
        read = reader.read(raw)
        if read is None:
            continue
        text, quoted = read
        assert text_of(SSEEvent(raw).json()) == text and quoted == jsonutil.dumps(text)


# ---- Messages passthrough --------------------------------------------------------------------------

sse_lines = st.lists(st.one_of(
    st.sampled_from(["event: content_block_delta", "event: message_delta", "event:error", "event: ping",
                     "event: message_stop", "data: {}", ": comment", "event:  error", "id: 1"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)), max_size=5)


@given(lines=sse_lines, ending=st.sampled_from(["\n", "\r\n", "\r"]))
def test_an_event_whose_bytes_name_no_watched_event_is_none_of_them(lines, ending):
    """watch_native passes an event on unread when its bytes hold neither "message_" nor "error":
    its name, made of its bytes, is then none of the names it watches for."""
    raw = (ending.join(lines) + ending * 2).encode()
    if raw.find(b"message_") < 0 and raw.find(b"error") < 0:
        assert SSEEvent(raw).event not in ("error", "message_start", "message_delta", "message_stop")
