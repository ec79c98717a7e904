"""The official openai SDK through the real proxy to an Anthropic-format upstream (`format: anthropic`):
requests, answers, streams, thinking round trips, errors and the model list, streaming and not."""
import asyncio
import json

import aiohttp
import openai
import pytest

from tests.conftest import CLIENT_KEY, client_for
from tests.upstreams import anthropic_rules as rules
from tests.upstreams.anthropic_upstream import DEFAULT_KEY, AnthropicUpstream, Reply, redacted, text, thinking, tool_use

pytestmark = pytest.mark.timeout(60)
MODEL = "claude-sonnet-4-6"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
async def upstream():
    server = await AnthropicUpstream().start()
    yield server
    await server.close()


def config(upstream, extra_upstream: str = "", model_settings: str = "{thinking: true}") -> str:
    return f"""
    upstreams:
      claude:
        base_url: {upstream.base_url}
        format: anthropic
        api_key: {DEFAULT_KEY}
        queue_timeout: 1
        headers: {{anthropic-beta: "interleaved-thinking-2025-05-14"}}
        {extra_upstream}
        models:
          {MODEL}: {model_settings}
    models:
      main: [claude/{MODEL}]
    """


@pytest.fixture
async def client(upstream, proxy_factory):
    return client_for(await proxy_factory(config(upstream)))


def sent(upstream):
    return upstream.requests[-1]


async def complete(client, stream: bool, **kwargs):
    """One answer as a dict, read the way an application would (accumulating a stream)."""
    kwargs.setdefault("model", "main")
    if not stream:
        completion = await client.chat.completions.create(**kwargs)
        choice = completion.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        return {"message": message, "finish_reason": choice.finish_reason, "usage": completion.usage,
                "id": completion.id, "model": completion.model, "created": completion.created}
    chunks = [chunk async for chunk in await client.chat.completions.create(stream=True, **kwargs)]
    message = {"role": "assistant", "content": "", "reasoning_content": "", "thinking_blocks": [], "tool_calls": {}}
    finish, usage = None, None
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta.model_dump(exclude_none=True)
            message["content"] += delta.get("content") or ""
            message["reasoning_content"] += delta.get("reasoning_content") or ""
            message["thinking_blocks"] += delta.get("thinking_blocks") or []
            for call in delta.get("tool_calls") or []:
                slot = message["tool_calls"].setdefault(call["index"], {"id": "", "type": "function",
                                                                        "function": {"name": "", "arguments": ""}})
                slot["id"] = call.get("id") or slot["id"]
                slot["function"]["name"] += call.get("function", {}).get("name") or ""
                slot["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            finish = choice.finish_reason or finish
    message["tool_calls"] = [message["tool_calls"][index] for index in sorted(message["tool_calls"])]
    message = {key: value for key, value in message.items() if value or key == "content"}
    return {"message": message, "finish_reason": finish, "usage": usage, "id": chunks[0].id,
            "model": chunks[0].model, "created": chunks[0].created, "chunks": chunks}


# ---- requests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_request_reaches_v1_messages_with_x_api_key_version_and_configured_headers(upstream, client, stream):
    answer = await complete(client, stream, messages=[{"role": "user", "content": "hello"}])
    assert answer["message"]["content"] == "echo: hello"
    request = sent(upstream)
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == DEFAULT_KEY and "authorization" not in request.headers
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert CLIENT_KEY not in json.dumps(request.headers)
    assert request.body == {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": "hello"}],
                            **({"stream": True} if stream else {})}


async def test_bearer_auth_and_a_configured_version_change_the_headers_and_the_body(upstream, proxy_factory):
    proxy = await proxy_factory(config(upstream, "auth: bearer\n        anthropic_version: '2026-10-21'"))
    answer = await complete(client_for(proxy), False, messages=[{"role": "user", "content": "hi"}], temperature=0.2)
    assert answer["message"]["content"] == "echo: hi"
    request = sent(upstream)
    assert request.headers["authorization"] == f"Bearer {DEFAULT_KEY}" and "x-api-key" not in request.headers
    assert request.headers["anthropic-version"] == "2026-10-21"
    assert "temperature" not in request.body  # that version refuses sampling parameters


@pytest.mark.parametrize("stream", [False, True])
async def test_a_whole_conversation_translates_into_the_messages_shape(upstream, client, stream):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    await complete(client, stream, max_completion_tokens=900, temperature=0.4, stop=["END", "\n"], user="user-7",
                   tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                   parallel_tool_calls=False, seed=3, frequency_penalty=0.2,
                   response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
                   messages=[
                       {"role": "system", "content": "You are terse."},
                       {"role": "developer", "content": "Answer in JSON."},
                       {"role": "user", "content": [
                           {"type": "text", "text": "What is in these?"},
                           {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                           {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
                       {"role": "user", "content": "And the weather?"},
                       {"role": "assistant", "content": "Checking.", "tool_calls": [
                           {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                           {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                       {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
                       {"role": "tool", "tool_call_id": "call_b", "content": "noon"}])
    body = sent(upstream).body
    assert body["system"] == "You are terse.\n\nAnswer in JSON."
    assert body["max_tokens"] == 900 and body["temperature"] == 0.4 and body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-7"}
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert body["tools"][0] == {"name": "get_weather", "description": "Weather in a city",
                                "input_schema": WEATHER["function"]["parameters"]}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    first = body["messages"][0]["content"]
    assert first[1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert first[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert first[3] == {"type": "text", "text": "And the weather?"}
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_a", "content": "rain"},
                                              {"type": "tool_result", "tool_use_id": "call_b", "content": "noon"}]
    assert not {"seed", "frequency_penalty", "response_format", "user", "parallel_tool_calls"} & set(body)


@pytest.mark.parametrize("extra, param", [({"n": 2}, "n"), ({"logprobs": True}, "logprobs")])
async def test_parameters_anthropic_cannot_honour_are_refused_with_400(upstream, client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}], **extra)
    assert caught.value.body["param"] == param and "Anthropic" in caught.value.body["message"]
    assert upstream.requests == []


# ---- answers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_text_answer_with_id_created_model_and_usage_counting_cache(upstream, client, stream):
    upstream.script(Reply(blocks=[text("Hello, "), text("world.")],
                          usage={"input_tokens": 11, "output_tokens": 5, "cache_read_input_tokens": 100,
                                 "cache_creation_input_tokens": 20}))
    answer = await complete(client, stream, messages=[{"role": "user", "content": "hi"}],
                            **({"stream_options": {"include_usage": True}} if stream else {}))
    assert answer["message"]["content"] == "Hello, world."
    assert answer["finish_reason"] == "stop"
    assert answer["id"].startswith("msg_") and answer["model"] == MODEL and answer["created"] > 1_600_000_000
    usage = answer["usage"]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (131, 5, 136)
    assert usage.prompt_tokens_details.cached_tokens == 100


@pytest.mark.parametrize("stream", [False, True])
async def test_two_parallel_tool_calls_each_with_own_index_id_name_and_arguments(upstream, client, stream):
    upstream.script(Reply(blocks=[text("Let me look."),
                                  tool_use("get_weather", {"city": "Paris, France", "detail": {"hourly": True}}),
                                  tool_use("get_time", {})], chunk_size=4))
    answer = await complete(client, stream, tools=[WEATHER, CLOCK], messages=[{"role": "user", "content": "go"}])
    calls = answer["message"]["tool_calls"]
    assert len(calls) == 2 and calls[0]["id"] != calls[1]["id"] and all(c["id"].startswith("toolu_") for c in calls)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris, France", "detail": {"hourly": True}}
    assert json.loads(calls[1]["function"]["arguments"]) == {}
    assert answer["finish_reason"] == "tool_calls" and answer["message"]["content"] == "Let me look."
    if stream:
        starts = [(call.index, call.id) for chunk in answer["chunks"] for choice in chunk.choices
                  for call in choice.delta.tool_calls or [] if call.id]
        assert starts == [(0, calls[0]["id"]), (1, calls[1]["id"])]


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_comes_back_as_reasoning_content_and_signed_thinking_blocks(upstream, client, stream):
    upstream.script(Reply(blocks=[thinking("First, consider the sky."), redacted(), text("Blue.")]))
    answer = await complete(client, stream, messages=[{"role": "user", "content": "sky?"}], reasoning_effort="low")
    message = answer["message"]
    assert message["content"] == "Blue." and message["reasoning_content"] == "First, consider the sky."
    signed, hidden = message["thinking_blocks"]
    assert signed == {"type": "thinking", "thinking": "First, consider the sky.",
                      "signature": rules.sign("First, consider the sky.")}
    assert hidden["type"] == "redacted_thinking" and hidden["data"]
    assert sent(upstream).body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    if stream:  # usage the proxy asked for (for its metrics) does not reach a client that did not ask
        assert all(chunk.choices for chunk in answer["chunks"])


@pytest.mark.parametrize("stream", [False, True])
async def test_multi_turn_tool_use_with_thinking_sends_the_signed_blocks_back(upstream, client, stream):
    upstream.script(Reply(blocks=[thinking("I need the weather tool."), tool_use("get_weather", {"city": "Rome"})]),
                    Reply(blocks=[thinking("It rains, so: umbrella."), text("Take an umbrella.")]))
    history = [{"role": "user", "content": "Umbrella in Rome?"}]
    first = await complete(client, stream, tools=[WEATHER], messages=history, reasoning_effort="medium")
    assert first["finish_reason"] == "tool_calls"
    assistant = {key: first["message"][key] for key in ("role", "tool_calls", "reasoning_content", "thinking_blocks")}
    history += [assistant, {"role": "tool", "tool_call_id": first["message"]["tool_calls"][0]["id"], "content": "rain"}]
    second = await complete(client, stream, tools=[WEATHER], messages=history, reasoning_effort="medium")
    assert second["message"]["content"] == "Take an umbrella."
    body = sent(upstream).body
    assert body["thinking"]["type"] == "enabled"
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "I need the weather tool.",
                                                 "signature": rules.sign("I need the weather tool.")}
    assert body["messages"][1]["content"][1]["type"] == "tool_use"


async def test_a_client_that_drops_thinking_blocks_still_gets_an_answer(upstream, client):
    upstream.script(Reply(blocks=[thinking("tool first"), tool_use("get_time", {})]))
    first = await complete(client, False, tools=[CLOCK], messages=[{"role": "user", "content": "time?"}],
                           reasoning_effort="low")
    bare = {"role": "assistant", "content": None, "tool_calls": first["message"]["tool_calls"]}
    second = await complete(client, False, tools=[CLOCK], reasoning_effort="low", messages=[
        {"role": "user", "content": "time?"}, bare,
        {"role": "tool", "tool_call_id": bare["tool_calls"][0]["id"], "content": "noon"}])
    assert second["message"]["content"] == "echo: time?"
    assert sent(upstream).body["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("stop_reason, finish", [("max_tokens", "length"), ("refusal", "content_filter"),
                                                 ("stop_sequence", "stop")])
async def test_stop_reasons_become_finish_reasons(upstream, client, stream, stop_reason, finish):
    upstream.script(Reply(blocks=[text("cut")], stop_reason=stop_reason))
    answer = await complete(client, stream, messages=[{"role": "user", "content": "go"}])
    assert answer["finish_reason"] == finish


async def test_stream_bytes_role_first_no_pings_usage_on_request_then_done(upstream, proxy_factory):
    proxy = await proxy_factory(config(upstream))
    upstream.script(Reply(blocks=[text("ab")], chunk_size=1, ping_every=1))
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}], "stream": True,
            "stream_options": {"include_usage": True}}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = await response.read()
    events = [event for event in raw.decode().split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events) and "ping" not in raw.decode()
    chunks = [json.loads(event[6:]) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "ab"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert events[-1] == "data: [DONE]"


async def test_an_error_event_after_content_ends_the_stream_with_an_openai_error_event(upstream, proxy_factory):
    proxy = await proxy_factory(config(upstream))
    upstream.script(Reply(blocks=[text("partial answer here")], chunk_size=3, error_after=6))
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body) as response:
            assert response.status == 200
            raw = (await response.read()).decode()
    events = [event for event in raw.split("\n\n") if event]
    error = json.loads(events[-1][len("data: "):])["error"]
    assert error["type"] == "overloaded_error" and "claude" in error["message"] and "Overloaded" in error["message"]
    said = "".join(json.loads(event[6:])["choices"][0]["delta"].get("content") or "" for event in events[:-1])
    assert "[DONE]" not in raw and said and "partial answer here".startswith(said)
    upstream.script(Reply(blocks=[text("partial answer here")], chunk_size=3, error_after=6))
    client = client_for(proxy)
    with pytest.raises(openai.APIError, match="Overloaded"):
        async for _ in await client.chat.completions.create(model="main", stream=True,
                                                            messages=[{"role": "user", "content": "x"}]):
            pass


async def test_an_error_event_before_any_content_is_an_http_error(upstream, client):
    upstream.script(Reply(blocks=[text("never seen")], error_after=2, error_type="api_error", error_message="boom"))
    with pytest.raises(openai.APIStatusError) as caught:
        await complete(client, True, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502 and "boom" in caught.value.message


# ---- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status, error_type, client_status, openai_type", [
    (400, "invalid_request_error", 400, "invalid_request_error"),
    (404, "not_found_error", 404, "invalid_request_error"),
    (413, "request_too_large", 413, "invalid_request_error"),
    (429, "rate_limit_error", 429, "rate_limit_error"),
    (500, "api_error", 502, "server_error"),
    (529, "overloaded_error", 503, "overloaded_error"),
])
async def test_anthropic_errors_reach_the_client_in_openais_envelope(upstream, client, stream, status, error_type,
                                                                     client_status, openai_type):
    upstream.script(*[Reply(status=status, error_type=error_type, error_message=f"the {error_type} text",
                            headers={"retry-after": "9"} if status == 429 else {})] * 2)
    with pytest.raises(openai.APIStatusError) as caught:
        await complete(client, stream, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == client_status
    assert caught.value.body["type"] == openai_type
    assert f"the {error_type} text" in caught.value.body["message"] and "claude" in caught.value.body["message"]
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "9"


@pytest.mark.parametrize("problem", ["key", "permission"])
async def test_upstream_auth_and_permission_failures_are_502_naming_the_upstream(upstream, proxy_factory, problem):
    if problem == "key":
        proxy = await proxy_factory(config(upstream).replace(f"api_key: {DEFAULT_KEY}", "api_key: sk-ant-revoked"))
    else:
        upstream.forbidden_models = (MODEL,)
        proxy = await proxy_factory(config(upstream))
    with pytest.raises(openai.APIStatusError) as caught:
        await client_for(proxy).chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_auth_error"
    assert "'claude'" in caught.value.body["message"] and "sk-ant-revoked" not in caught.value.body["message"]


async def test_the_anthropic_model_list_feeds_the_catalog_with_context_windows(upstream, proxy_factory):
    proxy = await proxy_factory(config(upstream))
    client = client_for(proxy)
    ids: dict = {}
    for _ in range(100):  # the first catalog fetch runs in the background right after startup
        ids = {model.id: model for model in (await client.models.list()).data}
        if "claude/claude-opus-4-8" in ids:
            break
        await asyncio.sleep(0.05)
    assert {"claude/claude-opus-4-8", "claude/claude-haiku-4-5", f"claude/{MODEL}", "main"} <= set(ids)
    assert ids["claude/claude-opus-4-8"].model_extra["context_window"] == 1000000
    assert ids["claude/claude-opus-4-8"].owned_by == "claude"


async def test_a_non_streaming_upstream_replays_the_answer_as_a_stream_thinking_included(upstream, proxy_factory):
    proxy = await proxy_factory(config(upstream, "streaming: false"))
    upstream.script(Reply(blocks=[thinking("Look it up."), tool_use("get_weather", {"city": "Lima"})]))
    answer = await complete(client_for(proxy), True, tools=[WEATHER], reasoning_effort="low",
                            messages=[{"role": "user", "content": "Lima?"}])
    assert "stream" not in sent(upstream).body
    assert answer["message"]["thinking_blocks"] == [{"type": "thinking", "thinking": "Look it up.",
                                                     "signature": rules.sign("Look it up.")}]
    assert json.loads(answer["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Lima"}
    assert answer["finish_reason"] == "tool_calls"
