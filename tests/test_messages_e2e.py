"""The official anthropic SDK's Messages API through the real proxy: passed through to an Anthropic
upstream as it is (cache_control, signed thinking, versions), and translated for an OpenAI-format
chat upstream and the built-in mock; errors in Anthropic's envelope."""
import aiohttp
import anthropic
import pytest

from tests.conftest import CLIENT_KEY, anthropic_config
from tests.upstreams import anthropic_rules as rules
from tests.upstreams.anthropic_upstream import DEFAULT_KEY, Reply, text, thinking, tool_use

pytestmark = pytest.mark.timeout(60)
MODEL = "claude-sonnet-4-6"
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def sdk(proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.base_url.rsplit("/v1", 1)[0], api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
async def via_claude(anthropic_upstream, proxy_factory):
    return sdk(await proxy_factory(anthropic_config(anthropic_upstream, MODEL)))


@pytest.fixture
async def via_chat(openai_upstream, proxy_factory):
    return sdk(await proxy_factory(f"""
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


@pytest.mark.parametrize("bad,error_class", [
    ({"messages": [{"role": "user", "content": [{"type": "bogus"}]}]}, anthropic.BadRequestError),
    ({"messages": "nope"}, anthropic.BadRequestError),
    ({"messages": [{"role": "user", "content": "x"}], "model": "no-such-model"}, anthropic.NotFoundError),
])
async def test_bad_input_gets_anthropics_envelope(via_chat, bad, error_class):
    with pytest.raises(error_class) as caught:
        await via_chat.messages.create(**{"model": "main", "max_tokens": 10, **bad})
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["message"]


async def test_an_unauthenticated_request_gets_anthropics_401(proxy_factory):
    proxy = await proxy_factory("""
    auth: {api_keys: [right-key]}
    upstreams: {demo: {format: mock}}
    """)
    client = anthropic.AsyncAnthropic(base_url=proxy.base_url.rsplit("/v1", 1)[0], api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await client.messages.create(model="demo/x", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "authentication_error"


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
