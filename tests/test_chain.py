"""The middleware chain: one contract, built once, the transport as its fixed end."""
import aiohttp

from proxy.config.model import parse_config
from proxy.core.chain import BUILTIN_ORDER, PluginContext, assemble, build_chain
from proxy.server.services import create_services
from proxy.upstream.transport import Transport

PLUGIN_CONFIG = """
upstreams:
  demo: {format: mock}
plugins:
  - path: tests.sample_plugin:TagRequests
    options: {tag: blue}
"""


def test_builtin_order_is_pinned():
    assert [name for name in BUILTIN_ORDER if name != "plugins.observe"] == [
        "plugins.fallback", "plugins.concurrency", "plugins.reasoning", "plugins.headers", "plugins.streaming"]


def test_user_plugins_sit_between_concurrency_and_reasoning():
    config = parse_config(PLUGIN_CONFIG)
    middlewares = assemble(PluginContext(config, create_services(config)))
    names = [type(m).__module__ for m in middlewares]
    assert names.index("tests.sample_plugin") == names.index("plugins.concurrency") + 1
    assert names.index("tests.sample_plugin") < names.index("plugins.reasoning")


async def test_chain_ends_in_the_transport():
    config = parse_config(PLUGIN_CONFIG)
    transport = Transport(config)
    middlewares = assemble(PluginContext(config, create_services(config)))
    handler = build_chain(middlewares, transport)
    layers = []
    while hasattr(handler, "middleware"):
        layers.append(handler.middleware)
        handler = handler.call_next
    assert handler is transport
    assert layers == middlewares


async def test_user_plugin_from_dotted_path_rewrites_request_and_response(openai_upstream, proxy_factory):
    proxy = await proxy_factory(f"""
    upstreams:
      oa: {{base_url: "{openai_upstream.url}", api_key: k-123456}}
    plugins:
      - path: tests.sample_plugin:TagRequests
        options: {{tag: green}}
    """)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions",
                                json={"model": "oa/m", "messages": [{"role": "user", "content": "x"}]}) as response:
            assert response.status == 200
            assert response.headers["x-plugin-tag"] == "green"
    assert openai_upstream.last.json["plugin_tag"] == "green"


def test_a_missing_plugin_is_a_clear_startup_error():
    import pytest

    from proxy.core.chain import PluginLoadError
    config = parse_config("upstreams:\n  demo: {format: mock}\nplugins: [tests.no_such_module.Thing]\n")
    with pytest.raises(PluginLoadError, match="tests.no_such_module.Thing"):
        assemble(PluginContext(config, create_services(config)))
