"""Hostile or broken requests get OpenAI's error envelope with a fitting status, never a 500."""
import json

import aiohttp
import openai
import pytest

from tests.conftest import client_for

CONFIG = """
upstreams:
  demo: {format: mock}
models:
  main: [demo/echo]
limits: {max_body_bytes: 65536, max_json_depth: 16, max_messages: 50}
"""


async def raw_post(proxy, data, content_type="application/json", path="chat/completions"):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/{path}", data=data,
                                headers={"Content-Type": content_type}) as response:
            return response.status, await response.json(content_type=None)


def assert_envelope(payload, error_type):
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "code", "param"}
    assert payload["error"]["type"] == error_type
    assert payload["error"]["message"]


@pytest.mark.parametrize("data, words", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b'{"model": "main", "messages": [{"role": "user", "content": "x"}], "n": NaN}', "not valid JSON"),
    (b'{"model": "main", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "UTF-8"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "'model' is required"),
    (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "'model' must be a non-empty string"),
    (b'{"model": "main", "messages": "hello"}', "'messages' must be a non-empty array"),
    (b'{"model": "main", "messages": []}', "'messages' must be a non-empty array"),
    (b'{"model": "main", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
    (b'{"model": "main", "messages": [{"role": "user", "content": 5}]}', "content"),
    (b'{"model": "main", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "'stream' must be a boolean"),
    (b'{"model": "main", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}', "'max_tokens' must be an integer"),
    (b'{"model": "main", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}', "JSON"),
    (b'{"model": "main", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "'temperature' must be a number"),
])
async def test_malformed_and_mistyped_bodies_are_400(proxy_factory, data, words):
    proxy = await proxy_factory(CONFIG)
    status, payload = await raw_post(proxy, data)
    assert status == 400, payload
    assert_envelope(payload, "invalid_request_error")
    assert words in payload["error"]["message"]


async def test_deep_nesting_is_400(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    nested = "[" * 40 + "]" * 40
    data = ('{"model": "main", "messages": [{"role": "user", "content": "x"}], "extra": %s}' % nested).encode()
    status, payload = await raw_post(proxy, data)
    assert status == 400 and "nests deeper" in payload["error"]["message"]


async def test_too_many_messages_is_400(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}] * 51}
    status, payload = await raw_post(proxy, json.dumps(body).encode())
    assert status == 400 and "limit is 50" in payload["error"]["message"]


async def test_oversized_body_is_413(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    body = {"model": "main", "messages": [{"role": "user", "content": "x" * 100_000}]}
    status, payload = await raw_post(proxy, json.dumps(body).encode())
    assert status == 413
    assert_envelope(payload, "invalid_request_error")
    assert payload["error"]["code"] == "request_too_large"


async def test_unknown_model_is_404_with_close_matches(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    with pytest.raises(openai.NotFoundError) as caught:
        await client_for(proxy).chat.completions.create(model="mian", messages=[{"role": "user", "content": "x"}])
    error = caught.value.body
    assert error["code"] == "model_not_found" and "main" in error["message"]


async def test_unknown_upstream_prefix_is_404(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    with pytest.raises(openai.NotFoundError):
        await client_for(proxy).chat.completions.create(model="nope/echo", messages=[{"role": "user", "content": "x"}])


async def test_unrouted_paths_and_methods_get_the_envelope(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/not-a-route") as response:
            assert response.status == 404
            assert_envelope(await response.json(), "invalid_request_error")
        async with session.delete(f"{proxy.url}/healthz") as response:
            assert response.status == 405
            assert_envelope(await response.json(), "invalid_request_error")


async def test_the_proxy_keeps_serving_after_hostile_input(proxy_factory):
    proxy = await proxy_factory(CONFIG)
    for data in (b"\x00\x01\x02", b"{" * 5000, b'{"model":' + b"9" * 5000 + b"}"):
        status, payload = await raw_post(proxy, data)
        assert status in (400, 413)
    completion = await client_for(proxy).chat.completions.create(model="main", messages=[{"role": "user", "content": "ok"}])
    assert completion.choices[0].message.content == "echo: ok"
