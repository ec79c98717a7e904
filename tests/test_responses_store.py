"""Stored responses with the in-memory store: `previous_response_id` continues a conversation on any
upstream format, and the openai SDK's `responses.retrieve`, `input_items.list` and `delete` are
served from the store; its byte limit and TTL evict as documented."""
import asyncio
import json
import textwrap

import openai
import pytest

from proxy.config.model import ConfigError, StoreConfig, parse_config
from proxy.state.memory import MemoryStore
from tests.conftest import anthropic_config, client_for
from tests.test_responses_e2e import _tool_call_reply
from tests.upstreams.anthropic_upstream import Reply, text, thinking, tool_use

pytestmark = pytest.mark.timeout(60)
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def chat_config(upstream, store: str = "") -> str:
    return f"""
    upstreams:
      chat: {{base_url: "{upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      main: [chat/gpt-test]
    {store}
    """


@pytest.fixture
async def chat_client(openai_upstream, proxy_factory):
    return client_for(await proxy_factory(chat_config(openai_upstream)))


async def ask(client, stream: bool, **kwargs):
    if not stream:
        return await client.responses.create(model="main", **kwargs)
    async with client.responses.stream(model="main", **kwargs) as events:
        return await events.get_final_response()


def user_texts(messages):
    return [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
            for m in messages if m["role"] == "user"]


# ---- previous_response_id chains -------------------------------------------------------------------

async def test_a_three_turn_chain_through_a_chat_upstream_replays_the_conversation(chat_client, openai_upstream):
    first = await ask(chat_client, False, instructions="Be brief.", input="my name is Ada")
    openai_upstream.reply = "nice to meet you, Ada"
    second = await ask(chat_client, True, input="what is my name?", previous_response_id=first.id)
    openai_upstream.reply = "you said it twice"
    third = await ask(chat_client, False, input="and again?", previous_response_id=second.id)

    assert first.id.startswith("resp_byok_") and third.previous_response_id == second.id
    sent = openai_upstream.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert user_texts(sent) == ["my name is Ada", "what is my name?", "and again?"]
    assert [m["content"] for m in sent if m["role"] == "assistant"] == ["hello from upstream",
                                                                       "nice to meet you, Ada"]
    assert third.output_text == "you said it twice"


async def test_a_three_turn_chain_through_an_anthropic_upstream_keeps_signed_thinking(anthropic_upstream,
                                                                                      proxy_factory):
    client = client_for(await proxy_factory(anthropic_config(anthropic_upstream)))
    anthropic_upstream.script(Reply(blocks=[thinking("they want weather"), tool_use("get_weather", {"city": "Rome"})]))
    first = await ask(client, True, input="weather in Rome?", tools=[WEATHER], reasoning={"effort": "medium"})
    call = first.output[-1]
    assert call.type == "function_call" and "encrypted_content" not in first.output[0].model_dump(exclude_none=True)

    anthropic_upstream.script(Reply(blocks=[thinking("sunny it is"), text("It is sunny in Rome.")]))
    second = await ask(client, False, previous_response_id=first.id, tools=[WEATHER], reasoning={"effort": "medium"},
                       input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    sent = anthropic_upstream.requests[-1].body
    assistant = [m for m in sent["messages"] if m["role"] == "assistant"][0]
    kinds = [block["type"] for block in assistant["content"]]
    assert kinds == ["thinking", "tool_use"], "the stored turn hands its signed thinking back"
    assert assistant["content"][0]["signature"] and "thinking" in sent

    third = await ask(client, True, input="thanks!", previous_response_id=second.id)
    sent = anthropic_upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert second.output_text == "It is sunny in Rome." and third.output_text == "echo: thanks!"


async def test_an_unknown_previous_response_id_is_openais_400(chat_client):
    with pytest.raises(openai.BadRequestError) as caught:
        await chat_client.responses.create(model="main", input="hi", previous_response_id="resp_byok_nope")
    assert caught.value.body["code"] == "previous_response_not_found"
    assert caught.value.body["param"] == "previous_response_id"


async def test_store_false_keeps_nothing(chat_client):
    response = await chat_client.responses.create(model="main", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await chat_client.responses.retrieve(response.id)


# ---- retrieve, input_items, delete ----------------------------------------------------------------

async def test_retrieve_returns_the_response_as_the_client_saw_it(chat_client):
    created = await chat_client.responses.create(model="main", input="hi", metadata={"k": "v"})
    retrieved = await chat_client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()


async def test_input_items_list_the_whole_conversation_paged_as_openai_does(chat_client):
    first = await chat_client.responses.create(model="main", input="one")
    second = await chat_client.responses.create(model="main", previous_response_id=first.id,
                                                input=[{"role": "user", "content": "two"},
                                                       {"role": "user", "content": [{"type": "input_text",
                                                                                     "text": "three"}]}])
    page = await chat_client.responses.input_items.list(second.id, limit=2)
    assert [item.content[0].text for item in page.data] == ["three", "two"]  # newest first by default
    assert page.has_more is True and page.first_id == page.data[0].id and page.last_id == page.data[1].id
    everything = [item async for item in chat_client.responses.input_items.list(second.id, limit=2, order="asc")]
    assert [item.type for item in everything] == ["message", "message", "message", "message"]
    assert [item.role for item in everything] == ["user", "assistant", "user", "user"]
    assert everything[1].id == first.output[0].id
    before = await chat_client.responses.input_items.list(second.id, order="asc",
                                                       extra_query={"before": everything[2].id})
    assert [item.id for item in before.data] == [everything[0].id, everything[1].id]


async def test_input_items_refuse_a_bad_limit(chat_client):
    created = await chat_client.responses.create(model="main", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        await chat_client.responses.input_items.list(created.id, limit=500)
    assert caught.value.body["param"] == "limit"


async def test_delete_removes_it_and_then_everything_is_a_404(chat_client):
    created = await chat_client.responses.create(model="main", input="hi")
    await chat_client.responses.delete(created.id)
    for call in (chat_client.responses.retrieve(created.id), chat_client.responses.delete(created.id),
                 chat_client.responses.input_items.list(created.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert caught.value.body == {"message": f"Response with id '{created.id}' not found.",
                                     "type": "invalid_request_error", "code": None, "param": None}


async def test_stored_responses_need_the_proxy_key(chat_client, proxy_factory, openai_upstream):
    proxy = await proxy_factory(chat_config(openai_upstream) + "\n    auth: {api_keys: [sk-proxy]}")
    created = await client_for(proxy, api_key="sk-proxy").responses.create(model="main", input="hi")
    with pytest.raises(openai.AuthenticationError):
        await client_for(proxy, api_key="wrong").responses.retrieve(created.id)


# ---- bounds -----------------------------------------------------------------------------------------

async def test_the_memory_store_evicts_the_oldest_past_max_bytes(openai_upstream, proxy_factory):
    openai_upstream.reply = "x" * 600
    client = client_for(await proxy_factory(chat_config(openai_upstream,
                                                        "responses: {store: {max_bytes: 4KiB}}")))
    made = [await client.responses.create(model="main", input=f"turn {n}") for n in range(6)]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(made[0].id)
    assert (await client.responses.retrieve(made[-1].id)).output_text == "x" * 600
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="main", input="more", previous_response_id=made[0].id)
    assert caught.value.body["code"] == "previous_response_not_found"


async def test_the_memory_store_forgets_after_its_ttl(openai_upstream, proxy_factory):
    client = client_for(await proxy_factory(chat_config(openai_upstream, "responses: {store: {ttl: 0.3}}")))
    created = await client.responses.create(model="main", input="hi")
    assert (await client.responses.retrieve(created.id)).id == created.id
    await asyncio.sleep(0.4)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


async def test_memory_store_accounting_ttl_and_oldest_first():
    now = [0.0]
    store = MemoryStore(StoreConfig(ttl=10, max_bytes="2KiB"), clock=lambda: now[0])
    assert await store.put("a", b"a" * 1000) and await store.put("b", b"b" * 1000)
    assert await store.put("c", b"c" * 100)  # no room for all three: "a", the oldest, goes
    assert await store.get("a") is None and await store.get("b") == b"b" * 1000 and store.size == 1100
    assert not await store.put("huge", b"h" * 4096)  # larger than the whole store: never kept
    now[0] = 10.0
    assert await store.get("b") is None and await store.get("c") is None and store.size == 0
    assert await store.put("d", b"d") and await store.delete("d") and not await store.delete("d")


def test_store_settings_are_validated_at_load():
    with pytest.raises(ConfigError) as caught:
        parse_config("responses: {store: {backend: redis, max_bytes: lots, ttl: 0}}")
    message = str(caught.value)
    assert "responses.store.url" in message and "responses.store.max_bytes" in message
    assert "responses.store.ttl" in message
    assert parse_config("responses: {store: {max_bytes: 1048576}}").responses.store.max_bytes_count == 1048576
    assert parse_config("").responses.store.max_bytes_count == 256 * 1024 * 1024


async def test_the_function_output_of_a_stored_tool_call_continues_it(chat_client, openai_upstream):
    openai_upstream.override = _tool_call_reply("get_weather", {"city": "Rome"})
    first = await chat_client.responses.create(model="main", input="weather?", tools=[WEATHER])
    openai_upstream.override = None
    await chat_client.responses.create(model="main", previous_response_id=first.id, tools=[WEATHER],
                                       input=[{"type": "function_call_output", "call_id": "call_1",
                                               "output": "sunny"}])
    sent = openai_upstream.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Rome"}


async def test_a_reload_that_changes_the_store_settings_starts_a_new_store(openai_upstream, proxy_factory):
    proxy = await proxy_factory(chat_config(openai_upstream))
    client = client_for(proxy)
    kept = await client.responses.create(model="main", input="hi")
    same = parse_config(textwrap.dedent(chat_config(openai_upstream)))
    await proxy.app.swap(same)
    assert (await client.responses.retrieve(kept.id)).id == kept.id, "an unchanged store survives a reload"
    await proxy.app.swap(parse_config(textwrap.dedent(chat_config(openai_upstream, "responses: {store: {ttl: 60}}"))))
    assert proxy.app.services.responses_store.settings.ttl == 60
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(kept.id)
