"""Fuzzing the Anthropic translators with what a broken or hostile upstream could send: deep
nesting, unhashable values where strings belong, numbers past 64 bits, invalid UTF-8, bytes
split anywhere. The only way out is OpenAI chunks ending in [DONE], or a ProxyError; no other
exception, no hang. (tests/test_anthropic_stream.py holds the well-formed properties.)"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import UpstreamConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent, SSEParser
from proxy.wire.anthropic import adapter as anthropic

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UPSTREAM = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic")
TARGET = Target(upstream=UPSTREAM, model="claude-sonnet-4-6")
BODY = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def request(include_usage: bool) -> ProxyRequest:
    body = {**BODY, **({"stream_options": {"include_usage": True}} if include_usage else {})}
    return ProxyRequest(request_id="fuzz", method="POST", path="chat/completions", body=body, stream=True,
                        client_wants_usage=include_usage)


def deep(levels: int, leaf=1):
    value = leaf
    for index in range(levels):
        value = [value] if index % 2 else {"k": value}
    return value


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=12), st.just([]), st.just({}),
    st.integers(-(2**80), 2**80), st.sampled_from([2**64 - 1, 2**63, -(2**63), 2**53 + 1]),  # orjson's int edges
    st.integers(250, 400).map(deep), st.integers(250, 400).map(lambda n: {"k": deep(n)}),  # past dumps' nesting limit
    st.integers(2, 30).map(deep))
VALUES = st.recursive(HOSTILE, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
EVENT_TYPES = st.sampled_from(["message_start", "message_delta", "message_stop", "content_block_start",
                               "content_block_delta", "content_block_stop", "ping", "error"])
BLOCK_TYPES = st.sampled_from(["text", "thinking", "redacted_thinking", "tool_use", "server_tool_use"])
DELTA_TYPES = st.sampled_from(["text_delta", "thinking_delta", "signature_delta", "input_json_delta"])
EVENTS = st.fixed_dictionaries({"type": EVENT_TYPES | VALUES}, optional={
    "index": st.integers(0, 3) | VALUES,
    "message": st.fixed_dictionaries({}, optional={"id": VALUES, "model": VALUES, "usage": VALUES}) | VALUES,
    "content_block": st.fixed_dictionaries({"type": BLOCK_TYPES | VALUES}, optional={
        "text": VALUES, "thinking": VALUES, "signature": VALUES, "id": VALUES, "name": VALUES,
        "input": VALUES, "data": VALUES}) | VALUES,
    "delta": st.fixed_dictionaries({"type": DELTA_TYPES | VALUES}, optional={
        "text": VALUES, "thinking": VALUES, "signature": VALUES, "partial_json": VALUES,
        "stop_reason": st.sampled_from(["end_turn", "tool_use", "max_tokens"]) | VALUES,
        "stop_sequence": VALUES}) | VALUES,
    "usage": st.dictionaries(st.sampled_from(["input_tokens", "output_tokens", "cache_read_input_tokens",
                                              "cache_creation_input_tokens", "output_tokens_details"]),
                             VALUES) | VALUES,
    "error": st.fixed_dictionaries({}, optional={"type": VALUES, "message": VALUES}) | VALUES})


def encode(event) -> bytes:
    name = event.get("type") if isinstance(event, dict) else "x"
    return f"event: {name if isinstance(name, str) else 'x'}\ndata: {json.dumps(event)}\n\n".encode()




def skeleton(block_kinds: list[str]) -> list[dict]:
    """A well-formed stream: message_start, each block start/delta/stop, message_delta, message_stop."""
    events = [{"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3}}}]
    for index, kind in enumerate(block_kinds):
        start = {"text": {"type": "text", "text": ""}, "thinking": {"type": "thinking", "thinking": "", "signature": ""},
                 "tool_use": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                 "redacted_thinking": {"type": "redacted_thinking", "data": "abc"}}[kind]
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        delta = {"text": {"type": "text_delta", "text": "hi"}, "thinking": {"type": "thinking_delta", "thinking": "hm"},
                 "tool_use": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
                 "redacted_thinking": None}[kind]
        if delta is not None:
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        if kind == "thinking":
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": "sig"}})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}})
    events.append({"type": "message_stop"})
    return events


def _paths(value, prefix=()):
    """Every (path) to a value inside an event, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))


def _replace(value, path, new):
    if not path:
        return new
    copy = dict(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@st.composite
def corrupted_streams(draw) -> list[bytes]:
    """A well-formed stream with a few values swapped for hostile ones, events dropped or repeated."""
    kinds = draw(st.lists(st.sampled_from(["text", "thinking", "tool_use", "redacted_thinking"]), max_size=4))
    events = skeleton(kinds)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(events) - 1))
        action = draw(st.sampled_from(["corrupt", "corrupt", "corrupt", "drop", "repeat", "add_field"]))
        if action == "drop" and len(events) > 1:
            events.pop(position)
        elif action == "repeat":
            events.insert(position, events[position])
        elif action == "add_field":
            name = draw(st.sampled_from(["stop_reason", "usage", "index", "id", "model", "signature", "input"]))
            events[position] = {**events[position], name: draw(HOSTILE)}
        else:
            path = draw(st.sampled_from(list(_paths(events[position]))[1:] or [("type",)]))
            events[position] = _replace(events[position], path, draw(HOSTILE | VALUES))
    return [encode(event) for event in events]


RAW_EVENTS = st.one_of(
    EVENTS.map(encode),
    st.binary(max_size=40).map(lambda raw: b"data: " + raw.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n\n"),
    st.just(b": keep-alive\n\n"),
    st.just(b'data: {"type": "message_start", "message": {"id": "\xff\xfe"}}\n\n'),
    st.just(b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "\\ud800"}}\n\n'),
    st.just(b'data: {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1e400}}\n\n'),
)
COMPLETE_ENDING = [encode({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
                   encode({"type": "message_stop"})]


async def _chunks(pieces: list[bytes]):
    for piece in pieces:
        yield piece


async def run(pieces: list[bytes], include_usage: bool) -> list[bytes] | str:
    """Upstream bytes -> the client's bytes, as the transport does it: SSEParser, then the adapter."""
    async def events():
        parser = SSEParser()
        async for piece in _chunks(pieces):
            for event in parser.feed(piece):
                yield event
        for event in parser.flush():
            yield event

    out = []
    try:
        async for event in anthropic.ADAPTER.translate_stream(events(), request(include_usage), TARGET):
            out.append(event.raw)
    except ProxyError as exc:
        return f"{type(exc).__name__}: {exc.message}"
    return out


def check_client_side(out: list[bytes]) -> None:
    assert out[-1] == b"data: [DONE]\n\n"
    for raw in out[:-1]:
        chunk = SSEEvent(raw).json()
        assert chunk["object"] == "chat.completion.chunk"
        assert isinstance(chunk["id"], str) and isinstance(chunk["model"], str)


@FUZZ
@given(st.lists(RAW_EVENTS, max_size=20), st.booleans(), st.booleans())
async def test_hostile_event_sequences_end_in_done_or_a_proxy_error(raws, include_usage, complete):
    stream = b"".join(raws + (COMPLETE_ENDING if complete else []))
    result = await run([stream], include_usage)
    if isinstance(result, list):
        check_client_side(result)


@FUZZ
@given(corrupted_streams(), st.booleans())
async def test_well_formed_streams_with_hostile_values_end_in_done_or_a_proxy_error(raws, include_usage):
    result = await run([b"".join(raws)], include_usage)
    if isinstance(result, list):
        check_client_side(result)


@FUZZ
@given(st.lists(RAW_EVENTS, max_size=12) | corrupted_streams(), st.booleans(), st.data())
async def test_byte_splits_of_the_upstream_stream_do_not_change_the_answer(raws, include_usage, data):
    stream = b"".join(raws + COMPLETE_ENDING)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    pieces = [stream[start:end] for start, end in zip([0] + cuts, cuts + [len(stream)])]
    whole, split = await run([stream], include_usage), await run(pieces, include_usage)
    if isinstance(whole, list) and isinstance(split, list):
        whole = [_without_created(raw) for raw in whole]
        split = [_without_created(raw) for raw in split]
    assert whole == split


def _without_created(raw: bytes) -> object:
    if raw.startswith(b"data: {"):
        chunk = SSEEvent(raw).json()
        chunk.pop("created", None)
        return chunk
    return raw


@st.composite
def corrupted_messages(draw) -> dict:
    """A whole Messages answer (what a non-streaming call returns) with hostile values swapped in."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
               "content": [{"type": "text", "text": "hi"}, {"type": "thinking", "thinking": "hm", "signature": "s"},
                           {"type": "redacted_thinking", "data": "abc"},
                           {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
               "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 5}}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([("id",), ("model",), ("stop_reason",), ("usage",), ("usage", "input_tokens"),
                                     ("usage", "output_tokens"), ("usage", "cache_read_input_tokens"),
                                     ("content",), ("content", 0), ("content", 1), ("content", 2), ("content", 3)]))
        field = draw(st.sampled_from(["text", "thinking", "signature", "data", "input", "id", "name", "type"]))
        new = draw(HOSTILE | VALUES)
        if path[0] == "content" and len(path) == 2:
            content = message["content"]
            if isinstance(content, list) and len(content) > path[1] and isinstance(content[path[1]], dict):
                content[path[1]] = {**content[path[1]], field: new}
        elif len(path) == 2:
            message[path[0]] = {**message[path[0]], path[1]: new} if isinstance(message[path[0]], dict) else new
        else:
            message[path[0]] = new
    return message


@FUZZ
@given(VALUES | EVENTS | corrupted_messages(), st.sampled_from([200, 400, 401, 403, 404, 413, 429, 500, 529]))
def test_whole_answers_and_error_bodies_decode_or_raise_a_proxy_error(payload, status):
    raw = json.dumps(payload).encode()
    req = ProxyRequest(request_id="fuzz", method="POST", path="chat/completions", body=BODY)
    try:
        answer = anthropic.ADAPTER.decode_chat(raw, req, TARGET)
        assert json.loads(answer)["object"] == "chat.completion"
    except ProxyError:
        pass
    error = anthropic.ADAPTER.decode_error(UPSTREAM, status, raw, {"Retry-After": "abc"})
    assert isinstance(error, ProxyError)
    assert set(error.envelope()["error"]) >= {"message", "type", "code", "param"}
    json.dumps(error.envelope())
