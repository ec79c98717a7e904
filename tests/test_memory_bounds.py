"""The proxy's memory stays within a documented bound (docs/security.md, "Hostile upstreams")
through an endless answer, gzip bombs as JSON and as SSE, and 200 clients that hang up
mid-stream. The proxy runs as a subprocess; its peak and current RSS come from /proc."""
from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp
import pytest

from tests.helpers import free_port, spawn_proxy, wait_for_port
from tests.upstreams.hostile_upstream import HostileUpstream, chunk, endless, gzip_bomb

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")]

MiB = 1024 * 1024
MAX_RESPONSE = 8 * MiB
SSE_EVENT_CAP = 16 * MiB  # proxy.streams.sse.SSEParser's default
# The documented bound: above its warmed-up peak, the proxy's peak RSS grows by at most what it
# may hold (max_response_bytes of an answer, twice the event cap while one SSE event is joined)
# plus 32 MiB for the allocator's fragmentation and the connections' buffers. Measured on the
# 2-core dev machine: +10 MiB for the endless answer, +8 for the JSON bomb, +34 for the SSE bomb.
BOUND = MAX_RESPONSE + 2 * SSE_EVENT_CAP + 32 * MiB
BOMB = 512 * MiB  # inflated size: unbounded decompression would show as hundreds of MiB
CHAT = {"model": "main", "messages": [{"role": "user", "content": "hi"}]}


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak), in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


@pytest.fixture
async def running(tmp_path):
    upstream = await HostileUpstream().start()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
upstreams:
  hostile:
    base_url: {upstream.url}
    api_key: sk-memory-bounds-0123456789abcdef
    discover_models: false
    timeout: {{connect: 5, first_byte: 10, total: 20}}
    circuit: {{failures: 1000}}
models:
  main: [hostile/gpt-test]
limits: {{max_response_bytes: {MAX_RESPONSE}}}
health: {{enabled: false}}
logging: {{level: warning}}
""")
    port = free_port()
    process = spawn_proxy(str(config), port, env={"PYTHONPATH": os.getcwd()})
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_port, port, 30.0, process)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            yield session, f"http://127.0.0.1:{port}/v1/chat/completions", upstream, process
    finally:
        process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, process.communicate, None, 30)
        await upstream.close()


async def ask(session: aiohttp.ClientSession, url: str, stream: bool = False) -> tuple[int, bytes]:
    async with session.post(url, json={**CHAT, "stream": stream}) as response:
        return response.status, await response.read()


async def hang_up_mid_stream(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url, json={**CHAT, "stream": True}) as response:
        assert response.status == 200
        await response.content.readline()  # the first event has begun to arrive; then the client goes away
        response.close()


async def test_memory_stays_bounded_through_endless_bodies_bombs_and_disconnects(running):
    session, url, upstream, process = running
    for _ in range(20):  # warm up: pools, imports, caches
        assert (await ask(session, url))[0] == 200
        assert (await ask(session, url, stream=True))[0] == 200
    baseline = memory(process.pid)
    print(f"warmed up: {baseline}")

    upstream.then(endless(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                          b'{"filler": "' + b"x" * 60000 + b'"}'))
    status, body = await ask(session, url)
    assert status == 502 and b"limits.max_response_bytes" in body
    print(f"after the endless body: {memory(process.pid)}")
    upstream.then(gzip_bomb(b'{"id": "', b"x", BOMB, b"application/json"))
    status, body = await ask(session, url)
    assert status == 502 and b"limits.max_response_bytes" in body
    print(f"after the JSON bomb: {memory(process.pid)}")
    upstream.then(gzip_bomb(b"data: ", b"x", BOMB, b"text/event-stream"))
    status, body = await ask(session, url, stream=True)
    assert b"size limit" in body
    after_bombs = memory(process.pid)
    print(f"after the endless body and the bombs: {after_bombs}")

    sse_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    for batch in range(20):
        upstream.then(*[endless(sse_head, chunk("more " * 200)) for _ in range(10)])
        await asyncio.gather(*(hang_up_mid_stream(session, url) for _ in range(10)))
    for _ in range(100):  # the upstream streams are cancelled, not left running
        if not upstream.misbehaving:
            break
        await asyncio.sleep(0.1)
    after_disconnects = memory(process.pid)
    print(f"after 200 mid-stream disconnects: {after_disconnects}")

    assert (await ask(session, url))[0] == 200 and (await ask(session, url, stream=True))[0] == 200
    assert not upstream.misbehaving, f"{upstream.misbehaving} upstream streams still open"
    growth = after_disconnects["VmHWM"] - baseline["VmHWM"]
    assert growth <= BOUND, f"peak RSS grew by {growth / MiB:.0f} MiB (bound {BOUND / MiB:.0f} MiB)"
    assert after_disconnects["VmRSS"] - after_bombs["VmRSS"] <= 16 * MiB, "200 disconnects left memory behind"
