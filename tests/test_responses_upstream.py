"""`format: responses` upstreams, against the Responses-format test upstream (written to OpenAI's
documented wire format and checked with the openai SDK in test_responses_upstream_fidelity.py):
Responses clients pass through byte-faithfully; Chat Completions clients (the openai SDK) are
translated both ways, event by event; ids the upstream made stay in the upstream's store."""
import json
import textwrap

import aiohttp
import openai
from aiohttp import web
import pytest

from proxy.cli import check_upstreams
from proxy.config.model import parse_config
from proxy.config.urls import BaseURLError, normalize_base_url
from tests.conftest import CLIENT_KEY, client_for
from tests.upstreams.responses_upstream import ResponsesUpstream

pytestmark = pytest.mark.timeout(60)
KEY = "sk-responses-upstream-key"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


def config(upstream: ResponsesUpstream, extra: str = "") -> str:
    return f"""
    upstreams:
      oai: {{base_url: "{upstream.url}/v1/responses", format: responses, api_key: {KEY}, discover_models: false}}
      demo: {{format: mock}}
      chat: {{base_url: "{upstream.url}/v1", api_key: {KEY}, discover_models: false}}
    models:
      main: [oai/gpt-test]
      echo: [demo/echo-1]
      chatty: [chat/gpt-test]
    {extra}
    """


@pytest.fixture
async def upstream():
    server = await ResponsesUpstream(api_key=KEY).start()
    yield server
    await server.close()


@pytest.fixture
async def proxy(upstream, proxy_factory):
    return await proxy_factory(config(upstream))


@pytest.fixture
def client(proxy):
    return client_for(proxy)


async def post_raw(proxy, body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/responses", data=body, headers={
                "Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}) as answer:
            return answer.status, await answer.read()


# ---- Responses clients: passthrough ------------------------------------------------------------------

async def test_the_upstream_receives_the_clients_body_with_only_the_model_rewritten(proxy, client, upstream):
    first = await client.responses.create(model="main", input="remember 42")
    sent = {"model": "main", "previous_response_id": first.id, "store": True,
            "input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB-opaque-token"},
                      {"role": "user", "content": [{"type": "input_text", "text": "what number?"}]}],
            "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}],
            "include": ["reasoning.encrypted_content"], "a_future_field": {"nested": [1, 2.5, None]}}
    status, _ = await post_raw(proxy, json.dumps(sent).encode())
    assert status == 200
    received = upstream.last
    assert received.path == "/v1/responses" and received.json == {**sent, "model": "gpt-test"}
    assert received.headers["Authorization"] == f"Bearer {KEY}"  # the proxy's key, never the client's


async def test_streamed_events_reach_the_client_byte_identical(proxy, upstream):
    upstream.reasoning = "thinking it over"
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Rome"}}
    upstream.text_with_tools = True
    status, body = await post_raw(proxy, json.dumps({"model": "main", "input": "hi", "stream": True}).encode())
    assert status == 200
    expected = b"".join(b"event: " + event["type"].encode() + b"\ndata: "
                        + json.dumps(event, separators=(",", ":")).encode() + b"\n\n" for event in upstream.emitted)
    assert body == expected


async def test_the_sdk_stream_through_passthrough_is_typed_and_complete(client, upstream):
    upstream.reply = "streamed through"
    async with client.responses.stream(model="main", input="hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "streamed through" and final.model == "gpt-test"


async def test_upstream_ids_are_retrieved_listed_and_deleted_at_the_upstream(client, upstream):
    created = await client.responses.create(model="main", input="keep me upstream")
    assert not created.id.startswith("resp_byok_") and created.id in upstream.stored
    assert (await client.responses.retrieve(created.id)).id == created.id
    items = await client.responses.input_items.list(created.id)
    assert items.data[0].content[0].text == "keep me upstream"
    await client.responses.delete(created.id)
    assert created.id not in upstream.stored
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


async def test_a_proxy_stored_conversation_continues_on_a_responses_upstream(client, upstream):
    first = await client.responses.create(model="echo", input="my name is Ada")
    assert first.id.startswith("resp_byok_")
    await client.responses.create(model="main", input="what is my name?", previous_response_id=first.id)
    sent = upstream.last.json
    assert "previous_response_id" not in sent, "the upstream never saw the proxy's id"
    assert [item.get("role") for item in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][1]["content"][0]["text"] == "echo: my name is Ada"


async def test_an_upstream_id_cannot_continue_on_another_format(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="chatty", input="hi", previous_response_id="resp_0123456789abcdef")
    assert caught.value.body["code"] == "previous_response_not_found"


async def test_an_upstream_failure_before_the_answer_falls_back(upstream, proxy_factory):
    upstream.fail_status = 503
    client = client_for(await proxy_factory(config(upstream).replace("main: [oai/gpt-test]",
                                                                     "main: [oai/gpt-test, demo/echo-1]")))
    answer = await client.responses.create(model="main", input="still here")
    assert answer.output_text == "echo: still here"


# ---- Chat Completions clients: translated ----------------------------------------------------------

async def test_a_chat_client_gets_text_and_usage_from_a_responses_upstream(client, upstream):
    upstream.input_tokens, upstream.cached_tokens, upstream.output_tokens = 30, 10, 5
    answer = await client.chat.completions.create(
        model="main", max_tokens=64, temperature=0.5,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "hello from upstream"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (30, 5, 35)
    assert answer.usage.prompt_tokens_details.cached_tokens == 10
    sent = upstream.last.json
    assert sent["input"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["model"] == "gpt-test" and sent["max_output_tokens"] == 64 and sent["temperature"] == 0.5
    assert sent["store"] is False


async def test_a_chat_client_streams_from_a_responses_upstream_event_by_event(client, upstream):
    upstream.chunks = ["one ", "two ", "three"]
    stream = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "count"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["one ", "two ", "three"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert upstream.last.json["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chat_tool_round_trip_through_a_responses_upstream(client, upstream, stream):
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Rome"}, "call_id": "call_abc"}
    messages = [{"role": "user", "content": "weather in Rome?"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(model="main", messages=messages,
                                                                         tools=[WEATHER], stream=True)]
        calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
        call_id, name = calls[0].id, calls[0].function.name
        arguments = "".join(call.function.arguments or "" for call in calls)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        answer = await client.chat.completions.create(model="main", messages=messages, tools=[WEATHER])
        call = answer.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        finish = [answer.choices[0].finish_reason]
    assert (call_id, name, json.loads(arguments), finish) == ("call_abc", "get_weather", {"city": "Rome"},
                                                               ["tool_calls"])
    assert upstream.last.json["tools"] == [{"type": "function", "name": "get_weather",
                                            "description": "Weather in a city", "strict": False,
                                            "parameters": WEATHER["function"]["parameters"]}]
    upstream.tool_call = None
    await client.chat.completions.create(model="main", tools=[WEATHER], messages=[
        *messages, {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"}])
    assert upstream.last.json["input"][1:] == [
        {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": arguments},
        {"type": "function_call_output", "call_id": "call_abc", "output": "sunny"}]


async def test_a_chat_client_gets_reasoning_and_its_effort_reaches_the_upstream(client, upstream):
    upstream.reasoning = "weighing the options"
    answer = await client.chat.completions.create(model="main", reasoning_effort="high",
                                                  messages=[{"role": "user", "content": "think"}])
    assert answer.choices[0].message.model_extra["reasoning_content"] == "weighing the options"
    assert upstream.last.json["reasoning"] == {"effort": "high"}
    assert answer.usage.completion_tokens_details.reasoning_tokens == 3
    stream = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "think"}],
                                                  stream=True)
    chunks = [chunk async for chunk in stream]
    thought = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks if c.choices)
    assert thought == "weighing the options"


@pytest.mark.parametrize("status, error", [(429, openai.RateLimitError), (401, openai.APIStatusError),
                                           (400, openai.BadRequestError)])
async def test_upstream_errors_reach_a_chat_client_as_for_any_upstream(client, upstream, status, error):
    upstream.fail_status = status
    with pytest.raises(error) as caught:
        await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == (502 if status == 401 else status)
    assert "oai" in caught.value.body["message"]


async def test_a_failure_mid_stream_ends_the_chat_stream_with_an_error(client, upstream):
    upstream.fail_mid_stream = 2
    stream = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_an_incomplete_answer_is_finish_reason_length(client, upstream):
    upstream.incomplete = True
    answer = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].finish_reason == "length"


# ---- config, catalog, check ------------------------------------------------------------------------

def test_a_trailing_responses_is_stripped_only_for_this_format():
    assert normalize_base_url("https://api.openai.com/v1/responses", "responses") == "https://api.openai.com/v1"
    with pytest.raises(BaseURLError, match="set `format: responses`"):
        normalize_base_url("https://api.openai.com/v1/responses", "openai")


async def test_check_lists_the_catalog_and_probes_through_the_responses_wire(upstream):
    parsed = parse_config(textwrap.dedent(f"""
    upstreams:
      oai: {{base_url: "{upstream.url}/v1", format: responses, api_key: {KEY}, models: {{gpt-test: {{}}}}}}
    health: {{timeout: 5}}
    """))
    [report] = await check_upstreams(parsed, ["oai"])
    assert report.status == "ok" and report.models == 1
    probe = upstream.last.json
    assert upstream.last.path == "/v1/responses" and probe["max_output_tokens"] == 16



async def test_a_messages_client_is_translated_for_a_responses_upstream(proxy, upstream):
    import anthropic
    client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0)
    try:
        answer = await client.messages.create(model="main", max_tokens=100, system="Be brief.",
                                              messages=[{"role": "user", "content": "hi"}])
        async with client.messages.stream(model="main", max_tokens=100,
                                          messages=[{"role": "user", "content": "again"}]) as stream:
            streamed = await stream.get_final_message()
    finally:
        await client.close()
    assert answer.content[0].text == "hello from upstream" and streamed.content[0].text == "hello from upstream"
    assert upstream.last.json["input"] == [{"role": "user", "content": "again"}]
    assert upstream.last.path == "/v1/responses"


async def test_a_passthrough_stream_cut_short_ends_with_one_numbered_error_event(proxy, upstream):
    async def cut_short(request):
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        for number, kind in enumerate(("response.created", "response.output_text.delta")):
            payload = json.dumps({"type": kind, "sequence_number": number, "delta": "hi"})
            await stream.write(f"event: {kind}\ndata: {payload}\n\n".encode())
        request.transport.close()
        return stream

    upstream.override = cut_short
    status, body = await post_raw(proxy, json.dumps({"model": "main", "input": "hi", "stream": True}).encode())
    events = [block for block in body.decode().split("\n\n") if block]
    assert status == 200 and len(events) == 3
    last = json.loads(events[-1].split("data: ", 1)[1])
    assert events[-1].startswith("event: error") and last["type"] == "error" and last["sequence_number"] == 2


async def test_a_stored_conversation_follows_fallback_to_another_format(upstream, proxy_factory):
    client = client_for(await proxy_factory(config(upstream).replace("main: [oai/gpt-test]",
                                                                     "main: [oai/gpt-test, demo/echo-1]")))
    first = await client.responses.create(model="echo", input="first words")
    upstream.fail_status = 503
    second = await client.responses.create(model="main", input="second words", previous_response_id=first.id)
    assert second.output_text == "echo: second words" and second.id.startswith("resp_byok_")
    assert upstream.last.json["input"][0]["content"][0]["text"] == "first words", "tried the Responses upstream first"
    third = await client.responses.create(model="echo", input="third", previous_response_id=second.id)
    items = [item async for item in client.responses.input_items.list(third.id, order="asc")]
    assert [item.role for item in items] == ["user", "assistant", "user", "assistant", "user"]


async def test_passthrough_streams_count_time_to_first_token_and_tokens(proxy, upstream):
    upstream.input_tokens, upstream.output_tokens = 12, 7
    status, _ = await post_raw(proxy, json.dumps({"model": "main", "input": "hi", "stream": True}).encode())
    assert status == 200
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/metrics") as answer:
            metrics = await answer.text()
    lines = [line for line in metrics.splitlines() if 'upstream="oai"' in line]
    assert any(line.startswith("byok_time_to_first_token_seconds_count") and line.endswith(" 1.0") for line in lines)
    assert any(line.startswith("byok_tokens_total") and 'direction="out"' in line and line.endswith(" 7.0")
               for line in lines), lines
