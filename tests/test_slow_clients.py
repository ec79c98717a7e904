"""A deadline on every phase of a client's request: the head (`limits.header_timeout`), the body
(`limits.body_timeout`), and idle keep-alive. Slow clients are closed while the others are served."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from proxy.config.model import ConfigError, LimitsConfig, parse_config

pytestmark = pytest.mark.timeout(120)

TRICKLERS = 50
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: 80\r\n"
BODY = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture
async def proxy(proxy_factory):
    return await proxy_factory("""
        upstreams: {demo: {format: mock}}
        limits: {header_timeout: 1, body_timeout: 2}
        health: {enabled: false}
    """)


def address(proxy) -> tuple[str, int]:
    host, port = proxy.url.removeprefix("http://").split(":")
    return host, int(port)


async def trickle(writer: asyncio.StreamWriter, data: bytes, pause: float) -> None:
    """One byte every `pause` seconds, until the data runs out or the proxy hangs up."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)
    except ConnectionError:
        pass


async def post(proxy, head: bytes = HEAD) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(*address(proxy))
    try:
        writer.write(head.replace(b"Content-Length: 80", b"Content-Length: %d" % len(BODY)) + b"\r\n" + BODY)
        status_line = await asyncio.wait_for(reader.readline(), 30)
        return int(status_line.split()[1]), await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()


async def test_fifty_slowloris_clients_are_closed_at_the_header_deadline_while_another_is_served(proxy):
    connections = [await asyncio.open_connection(*address(proxy)) for _ in range(TRICKLERS)]
    started = time.monotonic()
    # 0.5 s a byte: the head alone would take about 50 s, the whole request over 75 s.
    tricklers = [asyncio.create_task(trickle(writer, HEAD + b"\r\n" + BODY, 0.5)) for _, writer in connections]
    try:
        await asyncio.sleep(0.3)
        status, _ = await post(proxy)  # served while fifty heads trickle in
        assert status == 200
        answers = await asyncio.wait_for(asyncio.gather(*(reader.read() for reader, _ in connections)), 30)
        elapsed = time.monotonic() - started
    finally:
        for task in tricklers:
            task.cancel()
        for _, writer in connections:
            writer.close()
    assert elapsed < 10, f"closing the slow clients took {elapsed:.1f} s (the header deadline is 1 s)"
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"code":"request_timeout"' in answer
        assert b"limits.header_timeout (1s)" in answer
    status, _ = await post(proxy)
    assert status == 200


async def test_a_head_trickled_on_a_kept_alive_connection_is_closed_too(proxy):
    reader, writer = await asyncio.open_connection(*address(proxy))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 30)).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        slow = asyncio.create_task(trickle(writer, b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n", 0.5))
        answer = await asyncio.wait_for(reader.read(), 30)
        slow.cancel()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 10


async def test_a_head_in_several_pieces_within_the_deadline_is_served(proxy):
    reader, writer = await asyncio.open_connection(*address(proxy))
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n"
        for start in range(0, len(request), 8):
            writer.write(request[start:start + 8])
            await writer.drain()
            await asyncio.sleep(0.05)
        assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_a_body_that_trickles_past_body_timeout_is_408_naming_it(proxy):
    reader, writer = await asyncio.open_connection(*address(proxy))
    started = time.monotonic()
    slow = asyncio.create_task(trickle(writer, BODY, 0.5))
    try:
        writer.write(HEAD + b"\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        body = await asyncio.wait_for(reader.read(4096), 30)
    finally:
        slow.cancel()
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 ") and b"limits.body_timeout (2s)" in body
    assert time.monotonic() - started < 15


def test_the_deadlines_are_on_by_default_and_the_response_cap_is_generous():
    limits = LimitsConfig()
    assert (limits.header_timeout, limits.body_timeout, limits.request_timeout) == (10.0, 300.0, None)
    assert limits.max_response_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize("setting, message", [
    ("header_timeout: 0", "limits.header_timeout"),
    ("body_timeout: -1", "limits.body_timeout"),
    ("max_response_bytes: 100", "limits.max_response_bytes"),
    ("max_response_bytes: lots", "limits.max_response_bytes"),
])
def test_the_new_limits_are_checked_at_load(setting, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"upstreams: {{demo: {{format: mock}}}}\nlimits: {{{setting}}}\n")
    assert message in str(caught.value)
