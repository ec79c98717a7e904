"""The Anthropic test upstream, checked with the official `anthropic` SDK so it is faithful
to the real API: messages, streams with text/thinking/tool_use, pagination and error classes."""
import anthropic
import pytest

from tests.upstreams import anthropic_rules as rules
from tests.upstreams.anthropic_upstream import (DEFAULT_KEY, AnthropicUpstream, Reply, redacted, text, thinking,
                                                 tool_use)

pytestmark = pytest.mark.timeout(60)
MODEL = "claude-sonnet-4-6"
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture
async def upstream():
    server = await AnthropicUpstream().start()
    yield server
    await server.close()


def sdk(upstream, api_key=DEFAULT_KEY, **kwargs):
    return anthropic.AsyncAnthropic(base_url=upstream.base_url, api_key=api_key, max_retries=0, **kwargs)


async def test_messages_create_returns_a_message_the_sdk_parses(upstream):
    upstream.script(Reply(blocks=[text("Hello, world")], usage={"input_tokens": 12, "cache_read_input_tokens": 4}))
    message = await sdk(upstream).messages.create(model=MODEL, max_tokens=64,
                                                  messages=[{"role": "user", "content": "hi"}])
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.content[0].text == "Hello, world"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 12 and message.usage.cache_read_input_tokens == 4
    assert upstream.requests[-1].headers["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION


async def test_stream_with_thinking_text_and_signature_accumulates_in_the_sdk(upstream):
    upstream.script(Reply(blocks=[thinking("Let me think it over."), text("The answer is 4.")], ping_every=2))
    async with sdk(upstream).messages.stream(
            model=MODEL, max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "2+2?"}]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "thinking" in kinds and "signature" in kinds and "text" in kinds
    assert final.content[0].type == "thinking" and final.content[0].thinking == "Let me think it over."
    assert final.content[0].signature == rules.sign("Let me think it over.")
    assert final.content[1].text == "The answer is 4."


async def test_stream_with_parallel_tool_use_gives_each_block_complete_input(upstream):
    upstream.script(Reply(blocks=[text("Checking."), tool_use("get_weather", {"city": "Paris, France"}),
                                  tool_use("get_time", {})], chunk_size=3))
    async with sdk(upstream).messages.stream(model=MODEL, max_tokens=512, tools=[WEATHER, TIME],
                                             messages=[{"role": "user", "content": "weather and time?"}]) as stream:
        final = await stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert [(call.name, call.input) for call in calls] == [("get_weather", {"city": "Paris, France"}), ("get_time", {})]
    assert final.stop_reason == "tool_use"


async def test_thinking_and_redacted_blocks_are_accepted_back_only_unmodified(upstream):
    upstream.script(Reply(blocks=[thinking("plan"), redacted(), tool_use("get_time", {})]))
    client = sdk(upstream)
    first = await client.messages.create(model=MODEL, max_tokens=4096, tools=[TIME],
                                         thinking={"type": "enabled", "budget_tokens": 1024},
                                         messages=[{"role": "user", "content": "time?"}])
    assert [block.type for block in first.content] == ["thinking", "redacted_thinking", "tool_use"]
    history = [{"role": "user", "content": "time?"},
               {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[2].id, "content": "noon"}]}]
    second = await client.messages.create(model=MODEL, max_tokens=4096, tools=[TIME], messages=history,
                                          thinking={"type": "enabled", "budget_tokens": 1024})
    assert second.content[-1].text.startswith("echo:")
    history[1]["content"][0]["thinking"] = "plan (edited)"
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        await client.messages.create(model=MODEL, max_tokens=4096, tools=[TIME], messages=history,
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    without_thinking = [history[0], {"role": "assistant", "content": [history[1]["content"][2]]}, history[2]]
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        await client.messages.create(model=MODEL, max_tokens=4096, tools=[TIME], messages=without_thinking,
                                     thinking={"type": "enabled", "budget_tokens": 1024})


@pytest.mark.parametrize("thinking_config, extra, message", [
    ({"type": "enabled", "budget_tokens": 1000}, {}, "greater than or equal to 1024"),
    ({"type": "enabled", "budget_tokens": 4096}, {}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"type": "enabled", "budget_tokens": 2048}, {"temperature": 0.5}, "`temperature` may only be set to 1"),
    ({"type": "adaptive"}, {"top_k": 5}, "`top_k` must be unset"),
    ({"type": "enabled", "budget_tokens": 2048}, {"top_p": 0.5}, "`top_p` must be greater than or equal to 0.95"),
    ({"type": "enabled", "budget_tokens": 2048}, {"tool_choice": {"type": "any"}, "tools": [TIME]},
     "Thinking may not be enabled when tool_choice forces tool use"),
])
async def test_invalid_thinking_settings_are_refused_like_the_real_api(upstream, thinking_config, extra, message):
    client = sdk(upstream, default_headers={"anthropic-version": "2023-06-01"})  # still takes sampling parameters
    with pytest.raises(anthropic.BadRequestError, match=message) as caught:
        await client.messages.create(model=MODEL, max_tokens=4096, thinking=thinking_config,
                                     messages=[{"role": "user", "content": "hi"}],
                                     extra_body={k: v for k, v in extra.items() if k not in ("tool_choice", "tools")},
                                     **{k: v for k, v in extra.items() if k in ("tool_choice", "tools")})
    assert caught.value.type == "invalid_request_error" and caught.value.status_code == 400


async def test_sampling_parameters_follow_the_api_version(upstream):
    legacy = sdk(upstream, default_headers={"anthropic-version": "2023-06-01"})
    ok = await legacy.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}],
                                      extra_body={"temperature": 0.2})
    assert ok.content[0].text == "echo: hi"
    with pytest.raises(anthropic.BadRequestError, match="cannot both be specified"):
        await legacy.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}],
                                     extra_body={"temperature": 0.2, "top_p": 0.9})
    with pytest.raises(anthropic.BadRequestError, match="not supported in anthropic-version 2026-10-21"):
        await sdk(upstream).messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}],
                                            extra_body={"temperature": 1})


async def test_unknown_parameters_and_unpaired_tool_use_are_refused(upstream):
    client = sdk(upstream)
    with pytest.raises(anthropic.BadRequestError, match="frequency_penalty: Extra inputs are not permitted"):
        await client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}],
                                     extra_body={"frequency_penalty": 0.1})
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks immediately after"):
        await client.messages.create(model=MODEL, max_tokens=16, tools=[TIME], messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}]},
            {"role": "user", "content": "well?"}])
    with pytest.raises(anthropic.BadRequestError, match="each stop sequence must contain non-whitespace"):
        await client.messages.create(model=MODEL, max_tokens=16, stop_sequences=["\n"],
                                     messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("reply, error_class, status", [
    (Reply(status=429, error_type="rate_limit_error", error_message="slow down", headers={"retry-after": "7"}),
     anthropic.RateLimitError, 429),
    (Reply(status=529, error_type="overloaded_error", error_message="Overloaded"), anthropic.OverloadedError, 529),
    (Reply(status=500, error_type="api_error", error_message="Internal server error"), anthropic.InternalServerError, 500),
    (Reply(status=413, error_type="request_too_large", error_message="too big"), anthropic.ContentTooLargeError, 413),
])
async def test_scripted_http_errors_map_to_the_sdk_error_classes(upstream, reply, error_class, status):
    upstream.script(reply)
    with pytest.raises(error_class) as caught:
        await sdk(upstream).messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == status and caught.value.type == reply.error_type
    assert caught.value.api_message == reply.error_message and caught.value.request_id.startswith("req_")


async def test_auth_permission_and_unknown_model_errors(upstream):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await sdk(upstream, api_key="sk-wrong").messages.create(model=MODEL, max_tokens=16,
                                                                messages=[{"role": "user", "content": "hi"}])
    assert caught.value.type == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        await sdk(upstream).messages.create(model="claude-nope", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    guarded = await AnthropicUpstream(forbidden_models=(MODEL,)).start()
    try:
        with pytest.raises(anthropic.PermissionDeniedError):
            await sdk(guarded).messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    finally:
        await guarded.close()


async def test_mid_stream_error_event_raises_in_the_sdk_after_partial_text(upstream):
    upstream.script(Reply(blocks=[text("partial answer that goes on")], error_after=5, chunk_size=3))
    seen = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with sdk(upstream).messages.stream(model=MODEL, max_tokens=64,
                                                 messages=[{"role": "user", "content": "hi"}]) as stream:
            async for piece in stream.text_stream:
                seen.append(piece)
    assert seen and caught.value.type == "overloaded_error"


async def test_models_list_paginates_with_after_and_before_ids(upstream):
    client = sdk(upstream)
    page = await client.models.list(limit=2)
    assert [model.id for model in page.data] == ["claude-opus-4-8", "claude-sonnet-4-6"]
    assert page.has_more and page.first_id == "claude-opus-4-8" and page.last_id == "claude-sonnet-4-6"
    every = [model.id async for model in await client.models.list(limit=1)]
    assert every == [model["id"] for model in upstream.models]
    before = await client.models.list(limit=5, before_id="claude-haiku-4-5")
    assert [model.id for model in before.data] == ["claude-opus-4-8", "claude-sonnet-4-6"] and not before.has_more
    one = await client.models.retrieve("claude-haiku-4-5")
    assert one.display_name == "Claude Haiku 4.5" and one.max_input_tokens == 200000
