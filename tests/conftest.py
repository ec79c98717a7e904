import pytest
from openai import AsyncOpenAI

from tests.helpers import start_proxy
from tests.upstreams.openai_upstream import OpenAIUpstream

CLIENT_KEY = "sk-client-key-that-must-not-travel"


@pytest.fixture
async def openai_upstream():
    upstream = await OpenAIUpstream().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def proxy_factory():
    """Start real proxies from config text; all are stopped after the test."""
    started = []

    async def start(config_text: str, **kwargs):
        proxy = await start_proxy(config_text, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.close()


def client_for(proxy, api_key: str = CLIENT_KEY, **kwargs) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=proxy.base_url, api_key=api_key, max_retries=0, **kwargs)
