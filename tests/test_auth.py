"""Inbound auth: who may call the proxy, on which paths, and the refusal to listen openly."""
from __future__ import annotations

import subprocess

import aiohttp
import openai
import pytest

from tests.conftest import client_for
from tests.helpers import free_port, spawn_proxy, wait_for_port

pytestmark = pytest.mark.timeout(120)

KEY_ONE = "proxy-inbound-key-one-0123456789"
KEY_TWO = "proxy-inbound-key-two-9876543210"
UPSTREAM_KEY = "sk-upstream-key-for-auth-tests-42"
CHAT = {"model": "up/gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def config(upstream_url: str, protect_metrics: bool = False) -> str:
    return f"""
        auth:
          api_keys: ["{KEY_ONE}", "${{BYOK_TEST_SECOND_KEY}}"]
          protect_metrics: {str(protect_metrics).lower()}
        upstreams:
          up:
            base_url: {upstream_url}/v1
            api_key: {UPSTREAM_KEY}
            discover_models: false
        health: {{enabled: false}}
    """


@pytest.fixture
async def guarded(proxy_factory, openai_upstream):
    return await proxy_factory(config(openai_upstream.url), environ={"BYOK_TEST_SECOND_KEY": KEY_TWO})


@pytest.fixture
async def guarded_metrics(proxy_factory, openai_upstream):
    return await proxy_factory(config(openai_upstream.url, protect_metrics=True),
                               environ={"BYOK_TEST_SECOND_KEY": KEY_TWO})


def forwarded(upstream) -> list[str]:
    """Client requests that reached the upstream (the proxy's own catalog fetches aside)."""
    return [request.path for request in upstream.requests if request.method != "GET"]


async def fetch(proxy, method: str, path: str, headers: dict[str, str] | None = None,
                json: object = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, proxy.url + path, headers=headers or {}, json=json) as response:
            body = await response.read()
            is_json = response.content_type == "application/json"
            return response.status, (await response.json() if is_json else {"raw": body})


# ---- the OpenAI SDK, the way an application calls -------------------------------------------------

@pytest.mark.parametrize("key", [KEY_ONE, KEY_TWO])
async def test_sdk_with_a_configured_key_is_served(guarded, openai_upstream, key):
    client = client_for(guarded, api_key=key)
    completion = await client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content == openai_upstream.reply
    stream = await client.chat.completions.create(**CHAT, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == openai_upstream.reply
    # the upstream sees the proxy's own key, never the client's
    received = openai_upstream.last.headers
    assert received["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert key not in repr(received)


async def test_sdk_with_a_wrong_key_gets_401_in_the_envelope_and_nothing_reaches_upstream(guarded, openai_upstream):
    client = client_for(guarded, api_key="proxy-inbound-key-one-0123456788")
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "authentication_error"
    assert caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    assert forwarded(openai_upstream) == []


# ---- headers by hand --------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY_ONE}"},
    {"Authorization": f"bearer {KEY_TWO}"},
    {"Authorization": f"Bearer   {KEY_ONE}  "},
    {"x-api-key": KEY_ONE},
    {"X-API-Key": KEY_TWO},
])
async def test_accepted_credentials(guarded, headers):
    status, body = await fetch(guarded, "POST", "/v1/chat/completions", headers, CHAT)
    assert status == 200, body
    status, _ = await fetch(guarded, "GET", "/v1/models", headers)
    assert status == 200


@pytest.mark.parametrize("headers, message", [
    ({}, "missing API key"),
    ({"Authorization": "Bearer "}, "missing API key"),  # an empty bearer is no key at all
    ({"Authorization": f"Basic {KEY_ONE}"}, "missing API key"),
    ({"Authorization": f"Bearer {KEY_ONE[:-1]}"}, "invalid API key"),
    ({"Authorization": f"Bearer {KEY_ONE}x"}, "invalid API key"),
    ({"Authorization": f"Bearer {KEY_ONE.upper()}"}, "invalid API key"),
    ({"x-api-key": ""}, "invalid API key"),
    ({"api-key": KEY_ONE}, "missing API key"),
    ({"Authorization": "Bearer wrong", "x-api-key": KEY_ONE}, "invalid API key"),
])
async def test_refused_credentials(guarded, openai_upstream, headers, message):
    for method, path, body in [("POST", "/v1/chat/completions", CHAT), ("GET", "/v1/models", None),
                               ("GET", "/v1/upstreams", None), ("POST", "/v1/embeddings", {"input": "x"})]:
        status, answer = await fetch(guarded, method, path, headers, body)
        assert status == 401, (path, answer)
        assert answer["error"]["type"] == "authentication_error"
        assert message in answer["error"]["message"]
        assert KEY_ONE not in repr(answer) and KEY_TWO not in repr(answer)
    assert forwarded(openai_upstream) == []


async def test_invalid_utf8_in_the_auth_header_is_a_401_not_a_crash(guarded):
    status_line = []
    for header in (b"Authorization: Bearer \xff\xfe\xc3\x28", b"x-api-key: \xff\xfe"):
        reader, writer = await _raw_connection(guarded)
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n" + header + b"\r\n\r\n")
        response = await reader.read()
        writer.close()
        status_line.append(response.split(b"\r\n", 1)[0])
        assert b'"authentication_error"' in response
    assert status_line == [b"HTTP/1.1 401 Unauthorized"] * 2


async def _raw_connection(proxy):
    import asyncio
    host, port = proxy.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


# ---- which paths are open ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_are_always_open(guarded, guarded_metrics, path):
    for proxy in (guarded, guarded_metrics):
        status, _ = await fetch(proxy, "GET", path)
        assert status == 200


@pytest.mark.parametrize("path", ["/metrics", "/"])
async def test_metrics_and_status_page_open_unless_protected(guarded, guarded_metrics, path):
    status, _ = await fetch(guarded, "GET", path)
    assert status == 200
    status, answer = await fetch(guarded_metrics, "GET", path)
    assert status == 401 and answer["error"]["type"] == "authentication_error"
    status, _ = await fetch(guarded_metrics, "GET", path, {"Authorization": f"Bearer {KEY_TWO}"})
    assert status == 200


async def test_without_configured_keys_everything_is_open_on_loopback(proxy_factory):
    proxy = await proxy_factory("""
        upstreams: {demo: {format: mock}}
        health: {enabled: false}
    """)
    client = client_for(proxy, api_key="anything-at-all")
    completion = await client.chat.completions.create(model="demo/m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "echo: x"


# ---- refusing to listen openly ---------------------------------------------------------------------

OPEN_CONFIG = "upstreams: {demo: {format: mock}}\nhealth: {enabled: false}\n"


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("host_args, config_text", [
    (["--host", "0.0.0.0"], OPEN_CONFIG),
    (["--host", "::"], OPEN_CONFIG),
    ([], "listen: {host: 0.0.0.0}\n" + OPEN_CONFIG),
])
def test_non_loopback_bind_without_keys_refuses_to_start(tmp_path, host_args, config_text):
    process = spawn_proxy(_write(tmp_path, config_text), free_port(), *host_args)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 2
    assert "refusing to listen" in stderr and "auth.api_keys" in stderr and "--allow-unauthenticated" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("extra_args, config_text", [
    (["--allow-unauthenticated"], OPEN_CONFIG),
    ([], f"auth: {{api_keys: [{KEY_ONE}]}}\n" + OPEN_CONFIG),
])
def test_non_loopback_bind_starts_when_the_operator_says_so_or_keys_exist(tmp_path, extra_args, config_text):
    port = free_port()
    process = spawn_proxy(_write(tmp_path, config_text), port, "--host", "0.0.0.0", *extra_args)
    try:
        wait_for_port(port, timeout=30, process=process)
        assert process.poll() is None
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
