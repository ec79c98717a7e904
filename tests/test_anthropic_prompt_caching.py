"""Prompt caching for translated requests to an Anthropic upstream: a Responses client cannot
spell `cache_control`, so the proxy marks the last tool, the system prompt and the last turn
(wire/anthropic/caching.py). Anthropic's cache-read count comes back as `cached_tokens`."""
import openai
import pytest

from tests.conftest import ANTHROPIC_KEY
from tests.upstreams.anthropic_upstream import Reply, text

pytestmark = pytest.mark.timeout(60)
TOOLS = [{"type": "function", "name": "read", "parameters": {"type": "object"}},
         {"type": "function", "name": "write", "parameters": {"type": "object"}}]
CHAT_TOOLS = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]
EPHEMERAL = {"type": "ephemeral"}


def config(upstream, setting: str | None) -> str:
    caching = f"prompt_caching: {setting}, " if setting else ""
    return f"""
    upstreams:
      claude: {{base_url: "{upstream.base_url}", format: anthropic, api_key: {ANTHROPIC_KEY}, {caching}discover_models: false}}
    models:
      main: [claude/claude-sonnet-4-6]
    """


async def client(proxy_factory, upstream, setting=None) -> openai.AsyncOpenAI:
    proxy = await proxy_factory(config(upstream, setting))
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)


def breakpoints(body: dict) -> list[str]:
    found = [f"tools[{i}]" for i, tool in enumerate(body.get("tools", [])) if "cache_control" in tool]
    if isinstance(body.get("system"), list):
        found += [f"system[{i}]" for i, block in enumerate(body["system"]) if "cache_control" in block]
    for m, message in enumerate(body["messages"]):
        if isinstance(message["content"], list):
            found += [f"messages[{m}].content[{b}]" for b, block in enumerate(message["content"])
                      if "cache_control" in block]
    return found


async def test_a_responses_request_gets_breakpoints_and_reads_back_cached_tokens(anthropic_upstream, proxy_factory):
    anthropic_upstream.script(Reply(blocks=[text("ok")], usage={"cache_read_input_tokens": 1200}))
    responses = await client(proxy_factory, anthropic_upstream)
    answer = await responses.responses.create(model="main", instructions="You are terse.", tools=TOOLS, input=[
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"}])
    body = anthropic_upstream.requests[-1].body
    assert breakpoints(body) == ["tools[1]", "system[0]", "messages[2].content[0]"]
    assert body["system"][0]["cache_control"] == EPHEMERAL and body["system"][0]["text"] == "You are terse."
    assert answer.usage.input_tokens_details.cached_tokens == 1200
    assert answer.usage.input_tokens > 1200  # OpenAI counts cached tokens inside input_tokens; Anthropic beside them


async def test_off_marks_nothing(anthropic_upstream, proxy_factory):
    responses = await client(proxy_factory, anthropic_upstream, "off")
    await responses.responses.create(model="main", instructions="Be brief.", tools=TOOLS, input="hi")
    assert breakpoints(anthropic_upstream.requests[-1].body) == []


async def test_chat_clients_are_marked_only_with_all(anthropic_upstream, proxy_factory):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    chat = await client(proxy_factory, anthropic_upstream)
    await chat.chat.completions.create(model="main", messages=messages, tools=CHAT_TOOLS)
    assert breakpoints(anthropic_upstream.requests[-1].body) == []
    chat_all = await client(proxy_factory, anthropic_upstream, "all")
    await chat_all.chat.completions.create(model="main", messages=messages, tools=CHAT_TOOLS)
    assert breakpoints(anthropic_upstream.requests[-1].body) == ["tools[0]", "system[0]", "messages[0].content[0]"]


async def test_a_client_that_marked_its_own_breakpoint_is_left_as_it_is(anthropic_upstream, proxy_factory):
    chat = await client(proxy_factory, anthropic_upstream, "all")
    await chat.chat.completions.create(model="main", messages=[
        {"role": "system", "content": [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "hi"}])
    assert breakpoints(anthropic_upstream.requests[-1].body) == ["system[0]"]
