"""The official openai SDK's Responses API through the real proxy, to each upstream format that
exists: the built-in mock, an OpenAI-format chat upstream and an Anthropic upstream. Requests are
translated to the chain's chat vocabulary and answers and streams back, event by event."""
import json

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import anthropic_config, client_for
from tests.upstreams import anthropic_rules as rules
from tests.upstreams.anthropic_upstream import Reply, text, thinking, tool_use

pytestmark = pytest.mark.timeout(60)
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files"}


@pytest.fixture
async def mock_client(proxy_factory):
    return client_for(await proxy_factory("""
    upstreams:
      demo: {format: mock}
    models:
      main: [demo/echo-1]
    """))


@pytest.fixture
async def chat_client(openai_upstream, proxy_factory):
    return client_for(await proxy_factory(f"""
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      main: [chat/gpt-test]
    """))


@pytest.fixture
async def claude_client(anthropic_upstream, proxy_factory):
    return client_for(await proxy_factory(anthropic_config(anthropic_upstream)))


async def test_the_mock_answers_a_responses_request_and_a_stream(mock_client):
    response = await mock_client.responses.create(model="main", input="hello there")
    assert response.status == "completed" and response.output_text == "echo: hello there"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    async with mock_client.responses.stream(model="main", input="stream me please") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert final.output_text == "echo: stream me please"
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") >= 3  # word by word, not collected


async def test_a_chat_upstream_receives_chat_and_the_client_gets_a_response(chat_client, openai_upstream):
    response = await chat_client.responses.create(model="main", instructions="Be brief.", input="hi",
                                                  max_output_tokens=50, temperature=0.2, metadata={"k": "v"})
    assert response.output_text == "hello from upstream" and response.model == "main"
    assert response.metadata == {"k": "v"} and response.max_output_tokens == 50
    sent = openai_upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    body = sent.json
    assert body["model"] == "gpt-test" and body["temperature"] == 0.2
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 50


async def test_a_chat_upstream_stream_arrives_as_typed_events(chat_client, openai_upstream):
    async with chat_client.responses.stream(model="main", input="hi") as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "hello from upstream"
    assert final.usage is not None and final.usage.total_tokens > 0
    assert openai_upstream.requests[-1].json["stream"] is True


def _tool_call_reply(name: str, arguments: dict):
    async def handler(request: web.Request):
        body = await request.json()
        call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunks = [{"role": "assistant", "tool_calls": [{**call, "index": 0}]}]
            for delta in chunks:
                await response.write(b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                                                             "model": "gpt-test", "choices": [
                                                                 {"index": 0, "delta": delta,
                                                                  "finish_reason": None}]}).encode() + b"\n\n")
            await response.write(b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                                                         "model": "gpt-test", "choices": [
                                                             {"index": 0, "delta": {},
                                                              "finish_reason": "tool_calls"}]}).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            return response
        return web.json_response({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-test",
                                  "choices": [{"index": 0, "finish_reason": "tool_calls",
                                               "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
    return handler


@pytest.mark.parametrize("stream", [False, True])
async def test_a_function_tool_round_trip_through_a_chat_upstream(chat_client, openai_upstream, stream):
    openai_upstream.override = _tool_call_reply("get_weather", {"city": "Rome"})
    if stream:
        async with chat_client.responses.stream(model="main", input="weather in Rome?", tools=[WEATHER]) as events:
            first = await events.get_final_response()
    else:
        first = await chat_client.responses.create(model="main", input="weather in Rome?", tools=[WEATHER])
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Rome"}
    assert openai_upstream.requests[-1].json["tools"][0]["function"]["name"] == "get_weather"
    openai_upstream.override = None
    second = await chat_client.responses.create(
        model="main", tools=[WEATHER],
        input=[{"role": "user", "content": "weather in Rome?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    assert second.output_text == "hello from upstream"
    messages = openai_upstream.requests[-1].json["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "rain"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_custom_tool_comes_back_as_a_custom_tool_call(chat_client, openai_upstream, stream):
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hello\n*** End Patch\n"
    openai_upstream.override = _tool_call_reply("apply_patch", {"input": patch})
    if stream:
        async with chat_client.responses.stream(model="main", input="make a.txt", tools=[PATCH_TOOL]) as events:
            answer = await events.get_final_response()
    else:
        answer = await chat_client.responses.create(model="main", input="make a.txt", tools=[PATCH_TOOL])
    call = answer.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.input == patch
    declared = openai_upstream.requests[-1].json["tools"][0]["function"]
    assert declared["name"] == "apply_patch" and declared["parameters"]["required"] == ["input"]


async def test_anthropic_thinking_rides_in_encrypted_content_across_two_turns(anthropic_upstream, claude_client):
    anthropic_upstream.script(Reply(blocks=[thinking("I need the weather tool."), tool_use("get_weather", {"city": "Rome"})]),
                  Reply(blocks=[text("Take an umbrella.")]))
    first = await claude_client.responses.create(model="main", input="weather in Rome?", tools=[WEATHER], store=False,
                                                 include=["reasoning.encrypted_content"],
                                                 reasoning={"effort": "low", "summary": "auto"})
    reasoning, call = first.output[0], first.output[-1]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert call.type == "function_call" and call.name == "get_weather"
    items = [item.model_dump(exclude_none=True) for item in first.output]
    second = await claude_client.responses.create(
        model="main", tools=[WEATHER], store=False, include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
        input=[{"role": "user", "content": "weather in Rome?"}, *items,
               {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    assert second.output_text == "Take an umbrella."
    assistant = anthropic_upstream.requests[-1].body["messages"][1]
    assert assistant["content"][0] == {"type": "thinking", "thinking": "I need the weather tool.",
                                       "signature": rules.sign("I need the weather tool.")}


async def test_anthropic_stream_arrives_as_responses_events(anthropic_upstream, claude_client):
    anthropic_upstream.script(Reply(blocks=[thinking("Consider."), text("Blue sky.")]))
    async with claude_client.responses.stream(model="main", input="sky?", reasoning={"effort": "low",
                                                                                      "summary": "auto"}) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert final.output_text == "Blue sky." and final.output[0].type == "reasoning"
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds.index("response.reasoning_summary_text.delta") < kinds.index("response.output_text.delta")


@pytest.mark.parametrize("bad,param", [
    ({"input": [{"type": "bogus"}]}, "input[0].type"),
    ({"input": 7}, "input"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
    ({"input": "hi", "previous_response_id": "resp_x"}, "previous_response_id"),
])
async def test_bad_input_is_a_400_naming_the_field(mock_client, bad, param):
    with pytest.raises(openai.BadRequestError) as caught:
        await mock_client.responses.create(model="main", **bad)
    assert caught.value.body["param"] == param and caught.value.status_code == 400


async def test_an_upstream_error_reaches_the_client_in_openai_envelope(anthropic_upstream, claude_client):
    anthropic_upstream.script(Reply(status=429, error_type="rate_limit_error", error_message="slow down",
                        headers={"retry-after": "0"}))
    with pytest.raises(openai.RateLimitError) as caught:
        await claude_client.with_options(max_retries=0).responses.create(model="main", input="hi")
    assert "slow down" in caught.value.body["message"]


async def test_metrics_count_responses_requests_under_their_api(mock_client):
    await mock_client.responses.create(model="main", input="count me")
    await mock_client.chat.completions.create(model="main", messages=[{"role": "user", "content": "and me"}])
    async with aiohttp.ClientSession() as session:
        async with session.get(str(mock_client.base_url).replace("/v1/", "/metrics")) as answer:
            exposition = await answer.text()
    assert 'byok_requests_total{api="responses",model="echo-1",status="200",upstream="demo"} 1.0' in exposition
    assert 'byok_requests_total{api="chat",model="echo-1",status="200",upstream="demo"} 1.0' in exposition


@pytest.mark.parametrize("kind, keeps_reasoning_text", [("openai", False), ("deepseek", True)])
async def test_a_chat_upstream_gets_no_field_it_cannot_read(openai_upstream, proxy_factory, kind,
                                                            keeps_reasoning_text):
    """A second turn carries the first turn's reasoning back; the pivot holds it in fields that a
    strict OpenAI-format upstream would refuse. Only providers that read reasoning text get it."""
    from proxy.inbound.responses.thinking_token import encode_thinking_blocks
    client = client_for(await proxy_factory(f"""
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, kind: {kind}, discover_models: false}}
    models:
      main: [chat/gpt-test]
    """))
    signed = encode_thinking_blocks([{"type": "thinking", "thinking": "plan", "signature": "sig-1"}])
    await client.responses.create(model="main", store=False, input=[
        {"role": "user", "content": "first"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
         "encrypted_content": signed},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAAforeign-issuer-token"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "answer one"}]},
        {"role": "user", "content": "second"}])
    assistant = next(m for m in openai_upstream.last.json["messages"] if m["role"] == "assistant")
    assert "thinking_blocks" not in assistant and "reasoning_encrypted" not in assistant
    assert ("reasoning_content" in assistant) is keeps_reasoning_text


@pytest.mark.parametrize("kind, cap_field", [("openai", "max_completion_tokens"), ("vllm", "max_tokens")])
async def test_max_output_tokens_reaches_each_provider_under_the_name_it_reads(openai_upstream, proxy_factory, kind,
                                                                               cap_field):
    client = client_for(await proxy_factory(f"""
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, kind: {kind}, discover_models: false}}
    models:
      main: [chat/gpt-test]
    """))
    await client.responses.create(model="main", input="hi", max_output_tokens=77)
    sent = openai_upstream.last.json
    other = "max_tokens" if cap_field == "max_completion_tokens" else "max_completion_tokens"
    assert sent[cap_field] == 77 and other not in sent
