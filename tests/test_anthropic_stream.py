"""Anthropic SSE -> OpenAI chunks, event by event: the translator on its own, fed the exact
event flow the test upstream produces (and, in property tests, arbitrary event sequences)."""
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import UpstreamConfig
from proxy.core.errors import ProxyError, UpstreamHTTPError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent
from proxy.wire.anthropic import adapter as anthropic
from tests.upstreams.anthropic_upstream import Reply, build_message, redacted, stream_events, text, thinking, tool_use

pytestmark = pytest.mark.timeout(120)
UPSTREAM = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic")
TARGET = Target(upstream=UPSTREAM, model="claude-sonnet-4-6")
BODY = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}


def request(include_usage=False):
    body = {**BODY, "stream": True, **({"stream_options": {"include_usage": True}} if include_usage else {})}
    return ProxyRequest(request_id="r1", method="POST", path="chat/completions", body=body, stream=True,
                        client_wants_usage=include_usage)


async def _events(items):
    for item in items:
        yield item


def sse(name: str, data: Any) -> SSEEvent:
    return SSEEvent(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())


async def translate(events, req=None):
    out = []
    async for event in anthropic.ADAPTER.translate_stream(_events(events), req or request(), TARGET):
        out.append(event)
    return out


def upstream_stream(reply: Reply) -> list[SSEEvent]:
    message = build_message(BODY, reply)
    return [sse(name, data) for name, data in stream_events(message, reply)]


def assemble(events: list[SSEEvent]) -> dict[str, Any]:
    """What an OpenAI client makes of the chunks (the way the openai SDK's stream helpers merge them)."""
    assert events[-1].raw == b"data: [DONE]\n\n"
    message: dict[str, Any] = {"content": "", "reasoning_content": "", "tool_calls": {}, "thinking_blocks": []}
    finish, usage = None, None
    for event in events[:-1]:
        chunk = event.json()
        assert chunk["object"] == "chat.completion.chunk"
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            message["content"] += delta.get("content") or ""
            message["reasoning_content"] += delta.get("reasoning_content") or ""
            message["thinking_blocks"] += delta.get("thinking_blocks") or []
            for call in delta.get("tool_calls") or []:
                slot = message["tool_calls"].setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] += (call.get("function") or {}).get("name") or ""
                slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return {"message": message, "finish_reason": finish, "usage": usage}


async def test_role_comes_first_then_text_then_finish_then_done():
    events = await translate(upstream_stream(Reply(blocks=[text("Hello there")], chunk_size=4)))
    chunks = [event.json() for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["Hell", "o th", "ere"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert events[-1].is_done
    assert len({chunk["id"] for chunk in chunks}) == 1 and chunks[0]["id"].startswith("msg_")


async def test_pings_and_unknown_events_are_ignored():
    plain = await translate(upstream_stream(Reply(blocks=[text("abc")], chunk_size=1)))
    noisy_reply = Reply(blocks=[text("abc")], chunk_size=1, ping_every=1)
    noisy = upstream_stream(noisy_reply)
    noisy.insert(3, sse("future_event", {"type": "future_event", "anything": [1]}))
    noisy.insert(2, SSEEvent(b": keep-alive comment\n\n"))
    assert len(await translate(noisy)) == len(plain)


async def test_thinking_streams_as_reasoning_and_closes_with_a_signed_block():
    events = await translate(upstream_stream(Reply(blocks=[thinking("step one, step two"), redacted(), text("42")],
                                                   chunk_size=6)))
    result = assemble(events)
    assert result["message"]["reasoning_content"] == "step one, step two"
    signed, hidden = result["message"]["thinking_blocks"]
    assert signed["type"] == "thinking" and signed["thinking"] == "step one, step two" and signed["signature"]
    assert hidden["type"] == "redacted_thinking" and hidden["data"]
    assert result["message"]["content"] == "42"


async def test_parallel_tool_calls_each_get_their_own_index_id_name_and_arguments():
    reply = Reply(blocks=[text("Looking."), tool_use("get_weather", {"city": "Paris", "units": "metric"}, "toolu_A"),
                          tool_use("get_time", {"tz": "Europe/Paris"}, "toolu_B")], chunk_size=3)
    result = assemble(await translate(upstream_stream(reply)))
    calls = result["message"]["tool_calls"]
    assert calls[0]["id"] == "toolu_A" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "units": "metric"}
    assert calls[1]["id"] == "toolu_B" and calls[1]["name"] == "get_time"
    assert json.loads(calls[1]["arguments"]) == {"tz": "Europe/Paris"}
    assert result["finish_reason"] == "tool_calls"


async def test_a_tool_without_parameters_gets_empty_object_arguments():
    result = assemble(await translate(upstream_stream(Reply(blocks=[tool_use("get_time", {})]))))
    assert result["message"]["tool_calls"][0]["arguments"] == "{}"


async def test_tool_indexes_follow_tool_order_even_after_other_blocks():
    reply = Reply(blocks=[thinking("t"), text("a"), tool_use("f", {"x": 1}), text("b"), tool_use("g", {"y": 2})])
    events = await translate(upstream_stream(reply))
    starts = [c["choices"][0]["delta"]["tool_calls"][0] for c in (e.json() for e in events[:-1])
              if c["choices"] and (c["choices"][0]["delta"].get("tool_calls") or [{}])[0].get("id")]
    assert [(start["index"], start["function"]["name"]) for start in starts] == [(0, "f"), (1, "g")]


@pytest.mark.parametrize("stop_reason, finish", [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                 ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                                 ("refusal", "content_filter")])
async def test_stop_reasons_map_to_finish_reasons(stop_reason, finish):
    result = assemble(await translate(upstream_stream(Reply(blocks=[text("x")], stop_reason=stop_reason))))
    assert result["finish_reason"] == finish


async def test_usage_chunk_only_when_asked_counting_cached_input():
    reply = Reply(blocks=[text("hi")], usage={"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 30,
                                              "cache_creation_input_tokens": 5})
    without = await translate(upstream_stream(reply))
    assert all(event.json()["choices"] for event in without[:-1])
    req = request(include_usage=True)
    usage = assemble(await translate(upstream_stream(reply), req))["usage"]
    assert usage["prompt_tokens"] == 45 and usage["completion_tokens"] == 7 and usage["total_tokens"] == 52
    assert usage["prompt_tokens_details"]["cached_tokens"] == 30
    assert (req.trace.prompt_tokens, req.trace.completion_tokens) == (45, 7)


async def test_usage_asked_by_the_streaming_middleware_is_sent_too():
    req = ProxyRequest(request_id="r", method="POST", path="chat/completions", stream=True,
                       body={**BODY, "stream_options": {"include_usage": True}}, client_wants_usage=False)
    events = await translate(upstream_stream(Reply(blocks=[text("hi")])), req)
    assert events[-2].json()["choices"] == [] and events[-2].json()["usage"]["completion_tokens"] >= 1


async def test_an_error_event_raises_the_mapped_error_after_what_was_already_said():
    stream = upstream_stream(Reply(blocks=[text("partial")], chunk_size=2))[:5]
    stream.append(sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    seen = []
    with pytest.raises(UpstreamHTTPError) as caught:
        async for event in anthropic.ADAPTER.translate_stream(_events(stream), request(), TARGET):
            seen.append(event)
    assert seen and not any(event.is_done for event in seen)
    assert caught.value.status == 503 and caught.value.envelope()["error"]["type"] == "overloaded_error"


async def test_a_stream_that_stops_before_message_stop_is_a_protocol_error():
    stream = upstream_stream(Reply(blocks=[text("cut short")]))[:-2]
    with pytest.raises(UpstreamProtocolError, match="before message_stop"):
        await translate(stream)


async def test_the_inner_stream_is_closed_when_the_client_goes_away():
    closed = []

    async def upstream():
        try:
            for event in upstream_stream(Reply(blocks=[text("a long answer")], chunk_size=1)):
                yield event
        finally:
            closed.append(True)

    outer = anthropic.ADAPTER.translate_stream(upstream(), request(), TARGET)
    await outer.__anext__()
    await outer.__anext__()
    await outer.aclose()
    assert closed == [True]


# ---- properties -------------------------------------------------------------------------------------

_words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                            max_leaves=8)
_blocks = st.lists(st.one_of(
    _words.map(text), _words.map(thinking), st.just(redacted()),
    st.builds(tool_use, st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
              st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), _json_values, max_size=4))),
    min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=_blocks, chunk_size=st.integers(1, 9), ping_every=st.integers(0, 3))
async def test_property_streamed_and_whole_answers_agree(blocks, chunk_size, ping_every):
    reply = Reply(blocks=blocks, chunk_size=chunk_size, ping_every=ping_every)
    message = build_message(BODY, reply)
    streamed = assemble([event async for event in anthropic.ADAPTER.translate_stream(
        _events([sse(name, data) for name, data in stream_events(message, reply)]), request(), TARGET)])
    req = ProxyRequest(request_id="r", method="POST", path="chat/completions", body=BODY)
    whole = json.loads(anthropic.ADAPTER.decode_chat(json.dumps(message).encode(), req, TARGET))["choices"][0]
    expected = whole["message"]
    assert streamed["message"]["content"] == (expected["content"] or "")
    assert streamed["message"]["reasoning_content"] == expected.get("reasoning_content", "")
    assert streamed["message"]["thinking_blocks"] == expected.get("thinking_blocks", [])
    calls = [streamed["message"]["tool_calls"][i] for i in sorted(streamed["message"]["tool_calls"])]
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls] == \
        [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in expected.get("tool_calls", [])]
    assert streamed["finish_reason"] == whole["finish_reason"]


_event_types = st.sampled_from(["message_start", "message_delta", "message_stop", "content_block_start",
                                "content_block_delta", "content_block_stop", "ping", "error", "bogus"])
_delta = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["text_delta", "thinking_delta", "signature_delta", "input_json_delta",
                             "citations_delta", "x"]) | _json_values,
    "text": _json_values, "thinking": _json_values, "signature": _json_values, "partial_json": _json_values,
    "stop_reason": st.sampled_from(["end_turn", "tool_use", "max_tokens", "weird"]) | _json_values})
_block = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["text", "thinking", "redacted_thinking", "tool_use", "server_tool_use"]) | _json_values,
    "text": _json_values, "thinking": _json_values, "id": _json_values, "name": _json_values,
    "input": _json_values, "data": _json_values})
_event = st.fixed_dictionaries({"type": _event_types | _json_values}, optional={
    "index": st.integers(-1, 4) | _json_values, "delta": _delta | _json_values, "content_block": _block | _json_values,
    "message": st.fixed_dictionaries({}, optional={"id": _json_values, "model": _json_values,
                                                   "usage": st.dictionaries(st.sampled_from(
                                                       ["input_tokens", "output_tokens", "cache_read_input_tokens"]),
                                                       _json_values)}) | _json_values,
    "usage": st.dictionaries(st.sampled_from(["output_tokens", "input_tokens"]), _json_values) | _json_values,
    "error": _json_values})
_raw_event = st.one_of(_event.map(lambda data: sse(str(data.get("type")), data)),
                       _json_values.map(lambda data: sse("message_delta", data)),
                       st.binary(max_size=30).map(lambda raw: SSEEvent(b"data: " + raw.replace(b"\n", b" ") + b"\n\n")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(_raw_event, max_size=25), include_usage=st.booleans())
async def test_property_any_event_sequence_yields_chunks_or_raises_a_proxy_error(events, include_usage):
    try:
        out = await translate(events, request(include_usage))
    except ProxyError:
        return
    assert out[-1].is_done
    for event in out[:-1]:
        chunk = event.json()
        assert chunk["object"] == "chat.completion.chunk"
        json.dumps(chunk)
