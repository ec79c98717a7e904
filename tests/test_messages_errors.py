"""Every Anthropic error class, as the official anthropic SDK raises it through the real proxy, each
from the cause that should produce it: Anthropic's envelope `{"type": "error", "error": {"type",
"message"}}` with Anthropic's statuses, whether the proxy refused the request itself or an upstream
(Anthropic passed through, or an OpenAI-format chat upstream translated) did. Bad input is a 400 or
413 naming the field, never a 500."""
import asyncio

import aiohttp
import anthropic
import pytest

from tests.conftest import CLIENT_KEY, anthropic_client_for, anthropic_config
from tests.upstreams.anthropic_upstream import Reply, text

pytestmark = pytest.mark.timeout(60)
MODEL = "claude-sonnet-4-6"
QUESTION = [{"role": "user", "content": "hi"}]


def chat_config(openai_upstream, extra: str = "") -> str:
    return f"""
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      main: [chat/gpt-test]
    {extra}"""


@pytest.fixture
async def via_claude(anthropic_upstream, proxy_factory):
    return anthropic_client_for(await proxy_factory(anthropic_config(anthropic_upstream, MODEL)))


@pytest.fixture
async def via_chat(openai_upstream, proxy_factory):
    return anthropic_client_for(await proxy_factory(chat_config(openai_upstream)))


def assert_envelope(error: anthropic.APIStatusError, status: int, error_type: str) -> None:
    assert error.status_code == status
    assert error.body["type"] == "error" and error.body["error"]["type"] == error_type, error.body
    assert error.body["error"]["message"]


# ---- 400 invalid_request_error --------------------------------------------------------------------

async def test_invalid_request_error_400_from_anthropic_reaches_the_client_with_its_words(anthropic_upstream,
                                                                                         via_claude):
    anthropic_upstream.script(Reply(status=400, error_type="invalid_request_error",
                                    error_message="messages.0.content: the prompt is too long"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        await via_claude.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 400, "invalid_request_error")
    assert "the prompt is too long" in caught.value.body["error"]["message"]


async def test_invalid_request_error_400_from_a_chat_upstream_keeps_its_status(openai_upstream, via_chat):
    openai_upstream.fail_status = 400
    openai_upstream.fail_body = {"error": {"message": "context length exceeded", "type": "invalid_request_error",
                                           "param": "messages", "code": "context_length_exceeded"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await via_chat.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 400, "invalid_request_error")
    assert "context length exceeded" in caught.value.body["error"]["message"]


# Each bad body, and the field its 400 must name. Checked before any upstream is called, whichever
# format serves the model.
BAD_BODIES = [
    pytest.param({"messages": [{"role": "user", "content": [{"type": "bogus", "text": "x"}]}]},
                 "messages[0].content[0].type", id="unknown-block-type"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
                 "messages[0].content[0].text", id="text-block-without-text"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
                 "messages[0].content[0].source", id="image-without-data"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
                 "messages[0].content[0].tool_use_id", id="tool-result-without-id"),
    pytest.param({"messages": [{"role": "user", "content": [7]}]}, "messages[0].content[0]", id="block-not-an-object"),
    pytest.param({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", id="unknown-role"),
    pytest.param({"messages": "nope"}, "messages", id="messages-not-a-list"),
    pytest.param({"messages": QUESTION, "max_tokens": "ten"}, "max_tokens", id="max-tokens-a-string"),
    pytest.param({"messages": QUESTION, "temperature": "hot"}, "temperature", id="temperature-a-string"),
    pytest.param({"messages": QUESTION, "system": 5}, "system", id="system-a-number"),
    pytest.param({"messages": QUESTION, "tools": {"name": "x"}}, "tools", id="tools-not-a-list"),
    pytest.param({"messages": QUESTION, "tool_choice": {"type": "sometimes"}}, "tool_choice.type",
                 id="unknown-tool-choice"),
    pytest.param({"messages": QUESTION, "stream": "yes"}, "stream", id="stream-a-string"),
]


@pytest.fixture(params=["anthropic", "chat"])
async def via_either(request, anthropic_upstream, openai_upstream, proxy_factory):
    """A client whose model `main` an Anthropic upstream serves, then one a chat upstream serves."""
    if request.param == "anthropic":
        return anthropic_client_for(await proxy_factory(anthropic_config(anthropic_upstream, MODEL)))
    return anthropic_client_for(await proxy_factory(chat_config(openai_upstream)))


@pytest.mark.parametrize("bad,field", BAD_BODIES)
async def test_bad_input_is_a_400_in_anthropics_envelope_naming_the_field(via_either, bad, field):
    with pytest.raises(anthropic.BadRequestError) as caught:  # as extra_body: the SDK would refuse some itself
        await via_either.messages.create(model="main", max_tokens=10, messages=QUESTION, extra_body=bad)
    assert_envelope(caught.value, 400, "invalid_request_error")
    assert field in caught.value.body["error"]["message"]


async def test_a_body_that_is_not_json_is_a_400_not_a_500(via_chat):
    async with aiohttp.ClientSession() as session:  # the SDK always sends valid JSON
        async with session.post(str(via_chat.base_url).rstrip("/") + "/v1/messages", data=b'{"model": "main", ',
                                headers={"x-api-key": CLIENT_KEY, "content-type": "application/json",
                                         "anthropic-version": "2023-06-01"}) as answer:
            status, body = answer.status, await answer.json()
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


# ---- 413 request_too_large --------------------------------------------------------------------------

async def test_an_oversized_body_is_a_413_request_too_large(openai_upstream, proxy_factory):
    client = anthropic_client_for(await proxy_factory(chat_config(openai_upstream, "limits: {max_body_bytes: 4096}")))
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        await client.messages.create(model="main", max_tokens=10, messages=[{"role": "user", "content": "x" * 8000}])
    assert_envelope(caught.value, 413, "request_too_large")
    assert openai_upstream.requests == []


# ---- 401 authentication_error -------------------------------------------------------------------------

async def test_authentication_error_401_for_a_wrong_proxy_key_and_both_headers_accepted(proxy_factory):
    proxy = await proxy_factory("""
    auth: {api_keys: [right-key]}
    upstreams: {demo: {format: mock}}
    """)
    ask = {"model": "demo/x", "max_tokens": 10, "messages": QUESTION}
    for wrong in (anthropic_client_for(proxy, api_key="wrong"),
                  anthropic_client_for(proxy, api_key=None, auth_token="wrong")):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await wrong.messages.create(**ask)
        assert_envelope(caught.value, 401, "authentication_error")
    by_key = await anthropic_client_for(proxy, api_key="right-key").messages.create(**ask)  # x-api-key
    by_bearer = await anthropic_client_for(proxy, api_key=None, auth_token="right-key").messages.create(**ask)
    assert by_key.content[0].text == by_bearer.content[0].text == "echo: hi"


async def test_anthropic_refusing_the_proxys_key_is_not_the_clients_401(anthropic_upstream, proxy_factory):
    """Claude Code asks its user to log in again on a 401; the proxy's key is not theirs to fix."""
    config = anthropic_config(anthropic_upstream, MODEL).replace(f"api_key: {anthropic_upstream.api_key}",
                                                                 "api_key: sk-ant-revoked")
    client = anthropic_client_for(await proxy_factory(config))
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 502, "api_error")
    assert "claude" in caught.value.body["error"]["message"]  # names the upstream that refused


# ---- 404 not_found_error ----------------------------------------------------------------------------------

async def test_not_found_error_404_for_a_model_no_upstream_serves(anthropic_upstream, via_claude):
    with pytest.raises(anthropic.NotFoundError) as caught:
        await via_claude.messages.create(model="claude-opus-9", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 404, "not_found_error")
    assert "claude-opus-9" in caught.value.body["error"]["message"]
    assert anthropic_upstream.requests == []


async def test_not_found_error_404_when_anthropic_does_not_know_the_model(anthropic_upstream, proxy_factory):
    client = anthropic_client_for(await proxy_factory(anthropic_config(anthropic_upstream, "claude-retired-1")))
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 404, "not_found_error")


# ---- 429 rate_limit_error with retry-after -------------------------------------------------------------

async def test_rate_limit_error_429_with_retry_after_when_the_concurrency_queue_is_full(anthropic_upstream,
                                                                                       proxy_factory):
    config = anthropic_config(anthropic_upstream, MODEL).replace(
        "format: anthropic", "format: anthropic\n        max_concurrent_requests: 1\n        queue_timeout: 0.2")
    client = anthropic_client_for(await proxy_factory(config))
    anthropic_upstream.script(Reply(blocks=[text("slow " * 20)], delay=0.1))  # holds the one slot ~3 s

    async def hold_the_slot():
        async with client.messages.stream(model="main", max_tokens=100, messages=QUESTION) as stream:
            return await stream.get_final_message()

    holder = asyncio.create_task(hold_the_slot())
    while not anthropic_upstream.requests:
        await asyncio.sleep(0.01)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 429, "rate_limit_error")
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert (await holder).content[0].text.startswith("slow")
    assert len(anthropic_upstream.requests) == 1  # the refused request never reached Anthropic


async def test_rate_limit_error_429_from_anthropic_keeps_its_retry_after(anthropic_upstream, via_claude):
    anthropic_upstream.script(Reply(status=429, error_type="rate_limit_error", error_message="Number of request "
                                    "tokens has exceeded your per-minute rate limit", headers={"retry-after": "120"}))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await via_claude.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 429, "rate_limit_error")
    assert caught.value.response.headers["retry-after"] == "120"


# ---- 529 overloaded_error -----------------------------------------------------------------------------------

async def test_overloaded_error_529_from_anthropic(anthropic_upstream, via_claude):
    anthropic_upstream.script(Reply(status=529, error_type="overloaded_error", error_message="Overloaded"))
    with pytest.raises(anthropic.OverloadedError) as caught:
        await via_claude.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 529, "overloaded_error")


async def test_overloaded_error_529_when_a_chat_upstream_is_unavailable(openai_upstream, via_chat):
    openai_upstream.fail_status = 503
    with pytest.raises(anthropic.OverloadedError) as caught:
        await via_chat.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 529, "overloaded_error")


# ---- api_error (500 family) -----------------------------------------------------------------------------------

async def test_api_error_500_when_the_proxy_itself_fails(openai_upstream, proxy_factory):
    client = anthropic_client_for(await proxy_factory(chat_config(openai_upstream, """
    plugins:
      - path: tests.sample_plugin:FailsInside
    """)))
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model="main", max_tokens=10, messages=QUESTION)
    assert_envelope(caught.value, 500, "api_error")
    assert "a bug in a plugin" not in caught.value.body["error"]["message"]  # the traceback stays in the log


@pytest.mark.parametrize("status", [500, 502])
async def test_api_error_when_an_upstream_fails_is_a_502_naming_it(anthropic_upstream, openai_upstream, via_claude,
                                                                  via_chat, status):
    """An upstream's 5xx is a gateway's 502 (errors.py says why not 500 or 529); the SDK raises
    InternalServerError for it either way, and retries it."""
    anthropic_upstream.script(Reply(status=status, error_type="api_error", error_message="Internal server error"))
    openai_upstream.fail_status = status
    for client, upstream in ((via_claude, "claude"), (via_chat, "chat")):
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(model="main", max_tokens=10, messages=QUESTION)
        assert_envelope(caught.value, 502, "api_error")
        assert f"upstream '{upstream}'" in caught.value.body["error"]["message"]
