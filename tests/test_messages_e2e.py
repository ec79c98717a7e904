"""The official anthropic SDK's Messages API through the real proxy: passed through to an Anthropic
upstream as it is (cache_control, signed thinking, versions), and translated for an OpenAI-format
chat upstream and the built-in mock; count_tokens exact from Anthropic, estimated elsewhere. Every
error class: tests/test_messages_errors.py."""
import aiohttp
import anthropic
import pytest

from tests.conftest import CLIENT_KEY, anthropic_client_for, anthropic_config
from tests.upstreams import anthropic_rules as rules
from tests.upstreams.anthropic_upstream import DEFAULT_KEY, Reply, count_input_tokens, text, thinking, tool_use

pytestmark = pytest.mark.timeout(60)
MODEL = "claude-sonnet-4-6"
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
async def via_claude(anthropic_upstream, proxy_factory):
    return anthropic_client_for(await proxy_factory(anthropic_config(anthropic_upstream, MODEL)))


@pytest.fixture
async def via_chat(openai_upstream, proxy_factory):
    return anthropic_client_for(await proxy_factory(f"""
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
      demo: {{format: mock}}
    models:
      main: [chat/gpt-test]
      echo: [demo/echo-1]
    """))


async def test_cache_control_on_every_block_reaches_anthropic_exactly_as_sent(anthropic_upstream, via_claude):
    cached = {"type": "ephemeral"}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "weather?", "cache_control": cached}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Rome"}, "cache_control": cached}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain",
                                      "cache_control": cached},
                                     {"type": "text", "text": "so?", "cache_control": cached}]}]
    system = [{"type": "text", "text": "Be brief.", "cache_control": cached}]
    tools = [{**WEATHER, "cache_control": cached}]
    anthropic_upstream.script(Reply(blocks=[text("Umbrella.")], usage={"cache_read_input_tokens": 40}))
    answer = await via_claude.messages.create(model="main", max_tokens=100, system=system, tools=tools,
                                              messages=messages, metadata={"user_id": "u-1"},
                                              extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert answer.content[0].text == "Umbrella." and answer.usage.cache_read_input_tokens == 40
    received = anthropic_upstream.requests[-1]
    assert received.body["system"] == system and received.body["tools"] == tools
    assert received.body["messages"] == messages and received.body["metadata"] == {"user_id": "u-1"}
    assert received.body["model"] == MODEL
    assert received.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert received.headers["x-api-key"] == DEFAULT_KEY  # the proxy's key, not the client's


# Features only Anthropic serves: a server tool, a document with citations, an MCP server.
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
DOCUMENT = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
            "title": "Sky", "citations": {"enabled": True}}
MCP = [{"type": "url", "url": "https://mcp.example.com/sse", "name": "example"}]


async def test_server_tools_documents_and_mcp_servers_pass_through_to_anthropic(anthropic_upstream, via_claude):
    messages = [{"role": "user", "content": [DOCUMENT, {"type": "text", "text": "What colour is the sky?"}]}]
    answer = await via_claude.messages.create(model="main", max_tokens=100, tools=[WEB_SEARCH], messages=messages,
                                              extra_body={"mcp_servers": MCP})
    assert answer.content[0].text.startswith("echo: ")
    received = anthropic_upstream.requests[-1].body
    assert (received["tools"], received["messages"], received["mcp_servers"]) == ([WEB_SEARCH], messages, MCP)


@pytest.mark.parametrize("feature,field", [
    ({"tools": [WEB_SEARCH]}, "tools[0].type"),
    ({"messages": [{"role": "user", "content": [DOCUMENT]}]}, "messages[0].content[0].type"),
    ({"mcp_servers": MCP}, "mcp_servers"),
])
async def test_features_only_anthropic_serves_are_refused_for_a_chat_upstream(via_chat, openai_upstream, feature,
                                                                              field):
    with pytest.raises(anthropic.BadRequestError) as caught:
        await via_chat.messages.create(model="main", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                       extra_body=feature)
    message = caught.value.body["error"]["message"]
    assert message.startswith(field) or f"'{field}'" in message
    assert "Anthropic upstream" in message and openai_upstream.requests == []


async def test_only_the_leading_anthropic_targets_take_what_only_anthropic_serves(anthropic_upstream, openai_upstream,
                                                                                 proxy_factory):
    client = anthropic_client_for(await proxy_factory(f"""
    upstreams:
      claude: {{base_url: "{anthropic_upstream.base_url}", format: anthropic, api_key: {DEFAULT_KEY}}}
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      claude-first: [claude/{MODEL}, chat/gpt-test]
      chat-first: [chat/gpt-test, claude/{MODEL}]
    """))
    question = [{"role": "user", "content": "hi"}]
    anthropic_upstream.script(Reply(status=529), Reply(status=529), Reply(status=529))
    plain = await client.messages.create(model="claude-first", max_tokens=10, messages=question)
    assert plain.content[0].text == "hello from upstream"  # a plain request falls back to the chat upstream
    with pytest.raises(anthropic.OverloadedError):  # one with a server tool cannot
        await client.messages.create(model="claude-first", max_tokens=10, messages=question, tools=[WEB_SEARCH])
    with pytest.raises(anthropic.OverloadedError):  # nor can a count: a chat upstream has no exact one
        await client.messages.count_tokens(model="claude-first", messages=question)
    assert len(openai_upstream.requests) == 1
    estimated = await client.messages.count_tokens(model="chat-first", messages=question)
    assert estimated.input_tokens >= 1 and len(anthropic_upstream.requests) == 3 and len(openai_upstream.requests) == 1


async def test_cached_token_counts_come_back_through_a_passed_through_stream(anthropic_upstream, via_claude):
    anthropic_upstream.script(Reply(blocks=[text("Cached.")], usage={"cache_read_input_tokens": 40,
                                                                     "cache_creation_input_tokens": 12}))
    async with via_claude.messages.stream(model="main", max_tokens=100, messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]) as stream:
        final = await stream.get_final_message()
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (40, 12)
    assert anthropic_upstream.requests[-1].body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chat_upstreams_cached_prompt_tokens_come_back_as_cache_read_input_tokens(via_chat, openai_upstream,
                                                                                        stream):
    openai_upstream.cached_tokens = 3  # of its 5 prompt tokens
    ask = {"model": "main", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        async with via_chat.messages.stream(**ask) as events:
            answer = await events.get_final_message()
    else:
        answer = await via_chat.messages.create(**ask)
    # Messages counts cache reads apart from input_tokens; chat counts them inside prompt_tokens
    assert (answer.usage.input_tokens, answer.usage.cache_read_input_tokens) == (2, 3)


async def test_the_clients_bytes_reach_anthropic_as_sent_but_for_the_model(anthropic_upstream, proxy_factory):
    proxy = await proxy_factory(anthropic_config(anthropic_upstream, MODEL))
    body = ('{ "messages" : [ {"role": "user", "content": "caf\u00e9 — \\"quoted\\"\\n  code { }"} ],\n'
            '  "model":"main",  "max_tokens": 64, "metadata" : {"user_id": "u-2"} }').encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/messages", data=body,
                                headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01",
                                         "x-api-key": CLIENT_KEY}) as response:
            assert response.status == 200, await response.text()
    assert anthropic_upstream.requests[-1].raw == body.replace(b'"model":"main"', f'"model":"{MODEL}"'.encode())


async def test_signed_thinking_survives_a_tool_round_trip_through_passthrough(anthropic_upstream, via_claude):
    anthropic_upstream.script(Reply(blocks=[thinking("I need the weather tool."), tool_use("get_weather", {"city": "Rome"})]),
                  Reply(blocks=[text("Take an umbrella.")]))
    thinking_on = {"type": "enabled", "budget_tokens": 2048}
    async with via_claude.messages.stream(model="main", max_tokens=4096, thinking=thinking_on, tools=[WEATHER],
                                          messages=[{"role": "user", "content": "weather in Rome?"}]) as stream:
        first = await stream.get_final_message()
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature == rules.sign("I need the weather tool.")
    call = first.content[1]
    second = await via_claude.messages.create(
        model="main", max_tokens=4096, thinking=thinking_on, tools=[WEATHER],
        messages=[{"role": "user", "content": "weather in Rome?"},
                  {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain"}]}])
    assert second.content[0].text == "Take an umbrella."
    replayed = anthropic_upstream.requests[-1].body["messages"][1]["content"][0]
    assert replayed["signature"] == rules.sign("I need the weather tool.")


async def test_a_chat_upstream_stream_arrives_as_messages_events(via_chat, openai_upstream):
    async with via_chat.messages.stream(model="main", max_tokens=100,
                                        messages=[{"role": "user", "content": "hi"}]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert final.content[0].text == "hello from upstream" and final.stop_reason == "end_turn"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.usage.input_tokens > 0
    sent = openai_upstream.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.json["max_tokens"] == 100


async def test_the_mock_answers_messages_and_count_tokens_estimates(via_chat):
    answer = await via_chat.messages.create(model="echo", max_tokens=50,
                                            messages=[{"role": "user", "content": "hello there"}])
    assert answer.content[0].text == "echo: hello there"
    counted = await via_chat.messages.count_tokens(model="echo", messages=[{"role": "user", "content": "a " * 400}])
    assert 100 <= counted.input_tokens <= 1000


async def test_count_tokens_is_anthropics_exact_count_when_anthropic_serves_the_model(anthropic_upstream, via_claude):
    request = {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
               "tools": [WEATHER], "messages": [{"role": "user", "content": "weather in Rome?"}]}
    counted = await via_claude.messages.count_tokens(
        model="main", **request, extra_headers={"anthropic-version": "2026-10-21", "anthropic-beta": "token-efficient-tools"})
    received = anthropic_upstream.requests[-1]
    assert received.path == "/v1/messages/count_tokens" and received.body == {"model": MODEL, **request}
    assert counted.input_tokens == count_input_tokens(received.body)
    assert received.headers["x-api-key"] == DEFAULT_KEY  # the upstream's key, not the client's
    assert (received.headers["anthropic-version"], received.headers["anthropic-beta"]) == ("2026-10-21",
                                                                                          "token-efficient-tools")


async def test_count_tokens_refusals_come_back_in_anthropics_envelope(anthropic_upstream, via_claude):
    question = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError) as caught:  # Anthropic's own refusal, its words
        await via_claude.messages.count_tokens(model="main", messages=question, extra_body={"max_tokens": 10})
    assert "max_tokens: Extra inputs are not permitted" in caught.value.body["error"]["message"]
    anthropic_upstream.script(Reply(status=529))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await via_claude.messages.count_tokens(model="main", messages=question)
    assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"
    sent = len(anthropic_upstream.requests)
    with pytest.raises(anthropic.NotFoundError):  # the proxy's own refusals: nothing is sent
        await via_claude.messages.count_tokens(model="nope", messages=question)
    with pytest.raises(anthropic.BadRequestError) as malformed:
        await via_claude.messages.count_tokens(model="main", messages=[{"role": "user", "content": [{"type": 7}]}])
    assert "messages[0].content[0]" in malformed.value.body["error"]["message"]
    assert len(anthropic_upstream.requests) == sent


async def test_models_list_in_anthropics_shape_when_asked_with_anthropic_version(via_chat):
    page = await via_chat.models.list()
    assert [model.id for model in page.data] == ["main", "echo"]
    async with aiohttp.ClientSession() as session:
        url = str(via_chat.base_url).rstrip("/") + "/v1/models"
        async with session.get(url, headers={"anthropic-version": "2023-06-01", "x-api-key": CLIENT_KEY}) as answer:
            listed = await answer.json()
        async with session.get(url, headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as answer:
            openai_shaped = await answer.json()
    assert listed["has_more"] is False and (listed["first_id"], listed["last_id"]) == ("main", "echo")
    assert listed["data"][0]["type"] == "model" and listed["data"][0]["created_at"].endswith("Z")
    assert openai_shaped["object"] == "list"


async def test_metrics_count_messages_under_their_api(via_chat):
    await via_chat.messages.create(model="echo", max_tokens=50, messages=[{"role": "user", "content": "count me"}])
    async with aiohttp.ClientSession() as session:
        async with session.get(str(via_chat.base_url).rstrip("/") + "/metrics") as answer:
            exposition = await answer.text()
    assert 'byok_requests_total{api="messages",model="echo-1",status="200",upstream="demo"} 1.0' in exposition


async def test_no_default_thinking_beside_a_forced_tool_on_a_request_only_anthropic_serves(anthropic_upstream,
                                                                                          proxy_factory):
    # Anthropic refuses thinking when tool_choice forces a tool. A request with a document is passed
    # through untranslated; the alias's reasoning default must still see the client's forced choice.
    client = anthropic_client_for(await proxy_factory(anthropic_config(anthropic_upstream, MODEL).replace(
        f"main: [claude/{MODEL}]", f"main: {{targets: [claude/{MODEL}], reasoning_effort: high}}")))
    messages = [{"role": "user", "content": [DOCUMENT, {"type": "text", "text": "Weather where the sky is?"}]}]
    for choice in ({"type": "any"}, {"type": "tool", "name": "get_weather"}):
        await client.messages.create(model="main", max_tokens=100, tools=[WEATHER], tool_choice=choice,
                                     messages=messages)
        assert "thinking" not in anthropic_upstream.requests[-1].body, choice
    await client.messages.create(model="main", max_tokens=100, tools=[WEATHER], tool_choice={"type": "auto"},
                                 messages=messages)
    assert anthropic_upstream.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
