"""proxy.api is the one module a user plugin imports: its names are pinned, and a plugin
written against it alone works on every inbound API."""
import aiohttp
import anthropic
import openai
import pytest

import proxy.api
from tests.sample_api_plugin import CountingPlugin

ERRORS = {
    "ProxyError", "InvalidRequest", "AuthenticationFailed", "NotFound", "ModelNotFound", "RequestTooLarge",
    "RateLimited", "ServiceUnavailable", "UpstreamError", "UpstreamUnreachable", "UpstreamTimeout",
    "UpstreamProtocolError", "UpstreamAuthError", "UpstreamHTTPError",
}
PINNED = {
    "Middleware", "Handler", "PluginContext", "Services",
    "ProxyRequest", "ProxyResponse", "Target", "SSEEvent", "StreamWrapper",
} | ERRORS

CONFIG = """
upstreams:
  demo: {format: mock}
plugins:
  - path: tests.sample_api_plugin:CountingPlugin
    options: {refuse: demo/forbidden}
"""


def test_the_public_names_are_pinned():
    assert set(proxy.api.__all__) == PINNED
    for name in PINNED:
        assert getattr(proxy.api, name) is not None, name


def test_every_error_in_the_api_is_part_of_the_one_tree():
    for name in ERRORS:
        assert issubclass(getattr(proxy.api, name), proxy.api.ProxyError), name


async def test_a_plugin_on_the_public_api_wraps_chat_streams(proxy_factory):
    CountingPlugin.finished_streams.clear()
    server = await proxy_factory(CONFIG)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused")
    stream = await client.chat.completions.create(model="demo/m", stream=True,
                                                  messages=[{"role": "user", "content": "one two three"}])
    chunks = [chunk async for chunk in stream]
    assert chunks and CountingPlugin.finished_streams == [len(chunks) + 1]  # + the [DONE] event
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.base_url}/chat/completions",
                                json={"model": "demo/m", "messages": [{"role": "user", "content": "x"}]}) as response:
            assert response.headers["x-plugin-metrics"] == "true"


async def test_a_plugin_error_reaches_each_api_in_its_own_envelope(proxy_factory):
    server = await proxy_factory(CONFIG)
    chat = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        await chat.chat.completions.create(model="demo/forbidden", messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["code"] == "refused" and refused.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError, match="refused by policy"):
        await chat.responses.create(model="demo/forbidden", input="x")
    messages = anthropic.AsyncAnthropic(base_url=server.base_url.removesuffix("/v1"), api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused_messages:
        await messages.messages.create(model="demo/forbidden", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert refused_messages.value.body["error"]["type"] == "invalid_request_error"
    assert "refused by policy" in refused_messages.value.body["error"]["message"]


def test_a_middleware_owned_section_is_declared_beside_its_plugin():
    from plugins.reasoning import ReasoningSettings
    from proxy.config.model import parse_config
    config = parse_config("upstreams:\n  demo: {format: mock}\nreasoning:\n  budgets: {high: 20000}\n")
    assert isinstance(config.reasoning, ReasoningSettings)
    assert config.reasoning.budgets["high"] == 20000
