"""Upstream failures map to clear errors in OpenAI's envelope; never a 500 or a hang."""
import asyncio
import json

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import client_for
from tests.helpers import free_port

BODY = {"messages": [{"role": "user", "content": "x"}]}


async def post(proxy, model, stream=False):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions",
                                json={**BODY, "model": model, "stream": stream}) as response:
            return response.status, await response.read(), response.headers


async def partial_stream(request):
    """An SSE answer that has begun: one content chunk, nothing after it yet."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    return response


def single(url, extra=""):
    return f"""
    upstreams:
      up:
        base_url: "{url}"
        api_key: sk-proxy-owned-999
        timeout: {{connect: 1, first_byte: 0.5, total: 5}}
        {extra}
    """


async def test_upstream_401_becomes_502_upstream_auth_error(openai_upstream, proxy_factory):
    openai_upstream.fail_status = 401
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m")
    error = json.loads(body)["error"]
    assert status == 502 and error["code"] == "upstream_auth_error" and "'up'" in error["message"]


async def test_upstream_500_becomes_502_naming_upstream(openai_upstream, proxy_factory):
    openai_upstream.fail_status = 500
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m")
    assert status == 502 and "'up'" in json.loads(body)["error"]["message"]


async def test_unreachable_upstream_is_502_naming_it(proxy_factory):
    proxy = await proxy_factory(single(f"http://127.0.0.1:{free_port()}"))
    status, body, _ = await post(proxy, "up/m")
    error = json.loads(body)["error"]
    assert status == 502 and error["type"] == "upstream_error" and "'up'" in error["message"]
    assert "cannot connect" in error["message"]


async def test_hanging_upstream_is_504_after_first_byte_timeout(openai_upstream, proxy_factory):
    openai_upstream.delay_before_headers = 3
    proxy = await proxy_factory(single(openai_upstream.url))
    started = asyncio.get_running_loop().time()
    status, body, _ = await post(proxy, "up/m")
    elapsed = asyncio.get_running_loop().time() - started
    error = json.loads(body)["error"]
    assert status == 504 and error["type"] == "upstream_timeout" and "first_byte" in error["message"]
    assert elapsed < 2.5


async def test_garbage_answer_is_502(openai_upstream, proxy_factory):
    async def garbage(request):
        return web.Response(text="<html>definitely not json", content_type="text/html")
    openai_upstream.override = garbage
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m")
    assert status == 502 and "not JSON" in json.loads(body)["error"]["message"]


async def test_connection_reset_before_answer_is_502(openai_upstream, proxy_factory):
    async def reset(request):
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response(text="never sent")
    openai_upstream.override = reset
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m")
    assert status == 502 and "closed" in json.loads(body)["error"]["message"]


async def test_mid_stream_drop_ends_with_error_event_and_no_done(openai_upstream, proxy_factory):
    async def drops(request):
        response = await partial_stream(request)
        await asyncio.sleep(0.05)
        request.transport.close()
        return response
    openai_upstream.override = drops
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m", stream=True)
    assert status == 200
    events = [e for e in body.decode().split("\n\n") if e.strip()]
    assert "partial" in events[0]
    assert json.loads(events[-1][len("data: "):])["error"]["type"] == "upstream_error"
    assert "[DONE]" not in body.decode()


async def test_sdk_raises_api_error_on_mid_stream_failure(openai_upstream, proxy_factory):
    async def ends_early(request):
        response = await partial_stream(request)
        return response  # ends cleanly but without finish_reason or [DONE]: a truncation
    openai_upstream.override = ends_early
    proxy = await proxy_factory(single(openai_upstream.url))
    stream = await client_for(proxy).chat.completions.create(model="up/m", messages=BODY["messages"], stream=True)
    with pytest.raises(openai.APIError, match="ended before the answer was complete"):
        async for _ in stream:
            pass


async def test_upstream_error_event_in_stream_becomes_error_event(openai_upstream, proxy_factory):
    async def error_event(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"error": {"message": "provider overloaded", "code": 503}}\n\n')
        return response
    openai_upstream.override = error_event
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m", stream=True)
    text = body.decode()
    assert "provider overloaded" in text and "[DONE]" not in text


async def test_streaming_false_upstream_is_replayed_as_sse(openai_upstream, proxy_factory):
    proxy = await proxy_factory(single(openai_upstream.url, "streaming: false"))
    stream = await client_for(proxy).chat.completions.create(model="up/m", messages=BODY["messages"], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "hello from upstream"
    assert "stream" not in openai_upstream.last.json


async def test_redirect_is_not_followed_and_says_so(openai_upstream, proxy_factory):
    async def redirect(request):
        return web.Response(status=307, headers={"Location": "https://elsewhere.example/v1/chat/completions"})
    openai_upstream.override = redirect
    proxy = await proxy_factory(single(openai_upstream.url))
    status, body, _ = await post(proxy, "up/m")
    message = json.loads(body)["error"]["message"]
    assert status == 502 and "redirect (HTTP 307" in message and "base_url" in message
