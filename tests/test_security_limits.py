"""Each limit answers with a clear error in OpenAI's envelope: body size, header size, request
time, connections. Raw sockets where a normal client would refuse to send the request at all."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest

from tests.conftest import client_for

pytestmark = pytest.mark.timeout(120)

KEY = "proxy-key-limits-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
GOOD = {"model": "up/gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def proxy(proxy_factory, openai_upstream):
    return await proxy_factory(f"""
        auth: {{api_keys: [{KEY}]}}
        upstreams:
          up:
            base_url: {openai_upstream.url}/v1
            api_key: sk-upstream-limits
            discover_models: false
        limits: {{max_body_bytes: 4096, max_header_bytes: 1024, request_timeout: 1.5, max_connections: 3}}
        health: {{enabled: false}}
    """)


def address(proxy) -> tuple[str, int]:
    host, port = proxy.url.removeprefix("http://").split(":")
    return host, int(port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, leaving the connection open."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 30)
    return int(status_line.split(" ")[1]), headers, body


async def raw_exchange(proxy, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(*address(proxy))
    try:
        writer.write(data)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


def envelope(body: bytes) -> dict:
    payload = json.loads(body)
    assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "code", "param"}
    return payload["error"]


# ---- body size -------------------------------------------------------------------------------------------

async def test_a_body_over_max_body_bytes_is_413_through_the_sdk(proxy):
    client = client_for(proxy, api_key=KEY)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="up/gpt-test", messages=[{"role": "user", "content": "x" * 5000}])
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    assert "4096" in caught.value.body["message"]


async def test_a_chunked_body_over_the_limit_is_413_without_reading_it_all(proxy, openai_upstream):
    async def chunks():
        for _ in range(64):
            yield b"x" * 1024
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/v1/chat/completions", data=chunks(), headers=HEADERS) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "request_too_large"
    assert [r for r in openai_upstream.requests if r.method == "POST"] == []


async def test_a_body_at_the_limit_passes(proxy):
    padding = 4096 - len(json.dumps({**GOOD, "user": ""}))
    body = json.dumps({**GOOD, "user": "u" * padding}).encode()
    assert len(body) == 4096
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/v1/chat/completions", data=body,
                                headers={**HEADERS, "Content-Type": "application/json"}) as response:
            assert response.status == 200


# ---- header size -------------------------------------------------------------------------------------------

async def test_an_oversized_header_is_431_in_the_envelope_and_not_echoed(proxy):
    secret_looking = f"Bearer {KEY}" + "x" * 2000
    status, _, body = await raw_exchange(proxy, (
        "GET /v1/models HTTP/1.1\r\nHost: proxy\r\n"
        f"Authorization: {secret_looking}\r\n\r\n").encode())
    assert status == 431
    error = envelope(body)
    assert error["code"] == "header_too_large" and "max_header_bytes (1024" in error["message"]
    assert KEY.encode() not in body and b"xxxx" not in body


async def test_an_oversized_request_line_is_431(proxy):
    status, _, body = await raw_exchange(proxy, f"GET /v1/{'a' * 3000} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
    assert status == 431
    assert envelope(body)["code"] == "header_too_large"
    assert b"aaaa" not in body


async def test_too_many_headers_is_a_400_envelope(proxy):
    many = "".join(f"X-Filler-{index}: {index}\r\n" for index in range(300))
    status, _, body = await raw_exchange(proxy, f"GET /healthz HTTP/1.1\r\nHost: proxy\r\n{many}\r\n".encode())
    assert status == 400
    assert envelope(body)["code"] == "bad_http_request"


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS ClientHello
    b"NOT-HTTP at all\r\n\r\n",
    b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n12345",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
async def test_unparseable_http_is_a_400_envelope_that_quotes_nothing(proxy, garbage):
    status, _, body = await raw_exchange(proxy, garbage)
    assert status == 400
    error = envelope(body)
    assert error["type"] == "invalid_request_error"
    for fragment in (b"NOT-HTTP", b"Bad Header", b"9.9", b"zz"):
        assert fragment not in body


# ---- request time ------------------------------------------------------------------------------------------

async def test_an_upstream_slower_than_request_timeout_is_504_naming_the_limit(proxy, openai_upstream):
    openai_upstream.delay_before_headers = 10
    client = client_for(proxy, api_key=KEY)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(**GOOD)
    assert time.monotonic() - started < 8  # generous: the limit is 1.5 s, the upstream would take 10
    assert caught.value.status_code == 504
    assert "limits.request_timeout (1.5s)" in caught.value.body["message"]


async def test_a_stream_that_goes_silent_ends_with_an_error_event_at_request_timeout(proxy, openai_upstream):
    openai_upstream.chunks = ["one", " two", " three"]
    openai_upstream.chunk_delay = 4.0  # first content arrives after 4 s, long past the 1.5 s limit
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/v1/chat/completions", json={**GOOD, "stream": True},
                                headers=HEADERS) as response:
            status = response.status
            text = (await response.read()).decode()
    assert time.monotonic() - started < 8
    if status == 200:  # the stream had begun: the error is its last event, and there is no [DONE]
        assert "limits.request_timeout" in text and "[DONE]" not in text
        assert text.rstrip().splitlines()[-1].startswith('data: {"error"')
    else:
        assert status == 504 and "limits.request_timeout" in text


async def test_a_stream_that_trickles_past_request_timeout_is_cut_with_an_error_event(proxy, openai_upstream):
    openai_upstream.chunks = [f" {i}" for i in range(20)]
    openai_upstream.chunk_delay = 0.25  # 5 s in all, content from the first quarter second
    client = client_for(proxy, api_key=KEY)
    received = []
    stream = await client.chat.completions.create(**GOOD, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert 0 < len([piece for piece in received if piece]) < 20
    assert "limits.request_timeout" in str(caught.value)


async def test_a_body_that_trickles_in_is_408(proxy):
    reader, writer = await asyncio.open_connection(*address(proxy))
    try:
        writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {KEY}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo".encode())
        await writer.drain()
        status, _, body = await read_response(reader)
    finally:
        writer.close()
    assert status == 408
    assert envelope(body)["code"] == "request_timeout"


# ---- connections ------------------------------------------------------------------------------------------

async def test_connections_beyond_max_connections_get_503_and_probes_still_answer(proxy):
    held = []
    try:
        for _ in range(3):  # fill the limit with keep-alive connections that stay open
            reader, writer = await asyncio.open_connection(*address(proxy))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
            status, _, _ = await read_response(reader)
            assert status == 200
            held.append((reader, writer))
        status, headers, body = await raw_exchange(proxy, (
            f"GET /v1/models HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {KEY}\r\n\r\n").encode())
        assert status == 503
        assert envelope(body)["code"] == "too_many_connections"
        assert headers["retry-after"] == "1" and headers.get("connection", "").lower() == "close"
        status, _, _ = await raw_exchange(proxy, b"GET /readyz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        assert status == 200
        # the connections inside the limit keep working
        reader, writer = held[0]
        writer.write(f"GET /v1/models HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
        status, _, _ = await read_response(reader)
        assert status == 200
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.2)
    client = client_for(proxy, api_key=KEY)
    completion = await client.chat.completions.create(**GOOD)
    assert completion.choices[0].message.content


async def test_a_connection_over_the_limit_that_sends_nothing_is_closed(proxy):
    held = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection(*address(proxy))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
            assert (await read_response(reader))[0] == 200
            held.append(writer)
        reader, writer = await asyncio.open_connection(*address(proxy))
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed without a word (it asked nothing)
        assert time.monotonic() - started < 20  # generous: the grace is 5 s
        writer.close()
    finally:
        for held_writer in held:
            held_writer.close()
