import anthropic
import pytest
from openai import AsyncOpenAI

from tests.helpers import start_proxy
from tests.upstreams.anthropic_upstream import DEFAULT_KEY as ANTHROPIC_KEY
from tests.upstreams.anthropic_upstream import AnthropicUpstream
from tests.upstreams.openai_upstream import OpenAIUpstream
from tests.upstreams.responses_upstream import ResponsesUpstream

CLIENT_KEY = "sk-client-key-that-must-not-travel"
RESPONSES_KEY = "sk-responses-test-key"


@pytest.fixture
async def openai_upstream():
    upstream = await OpenAIUpstream().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def anthropic_upstream():
    upstream = await AnthropicUpstream().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def responses_upstream():
    """A Responses-format upstream that takes RESPONSES_KEY."""
    upstream = await ResponsesUpstream(api_key=RESPONSES_KEY).start()
    yield upstream
    await upstream.close()


def anthropic_config(upstream: AnthropicUpstream, model: str = "claude-sonnet-4-6") -> str:
    """A proxy config with `upstream` as the Anthropic upstream `claude` (thinking on), behind the alias `main`."""
    return f"""
    upstreams:
      claude:
        base_url: {upstream.base_url}
        format: anthropic
        api_key: {ANTHROPIC_KEY}
        models:
          {model}: {{thinking: true}}
    models:
      main: [claude/{model}]
    """


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


_open_clients: list[AsyncOpenAI | anthropic.AsyncAnthropic] = []


def client_for(proxy, api_key: str = CLIENT_KEY, **kwargs) -> AsyncOpenAI:
    """An AsyncOpenAI client for a running proxy; closed automatically after the test."""
    client = AsyncOpenAI(base_url=proxy.base_url, api_key=api_key, max_retries=0, **kwargs)
    _open_clients.append(client)
    return client


def anthropic_client_for(proxy, api_key: str = CLIENT_KEY, **kwargs) -> anthropic.AsyncAnthropic:
    """An AsyncAnthropic client for a running proxy (the SDK appends /v1/messages to the origin);
    `auth_token=` instead of `api_key` sends the key as a Bearer token. Closed after the test."""
    client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=api_key, max_retries=0, **kwargs)
    _open_clients.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_sdk_clients():
    yield
    while _open_clients:
        await _open_clients.pop().close()
