"""SIGTERM drains `python -m proxy serve`: readiness goes false, new connections
are refused, streams in flight finish (or, past shutdown_grace, end with an
error event), and the process exits 0."""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from openai import AsyncOpenAI

from proxy.server.lifecycle import drain
from tests.helpers import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.timeout(60)

LONG_MESSAGE = "one two three four five six seven eight nine ten eleven twelve"  # 13 words echoed back


def write_config(tmp_path: Path, *, chunk_delay_ms: int = 0, latency_ms: int = 0, grace: float = 30) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""
    health: {{enabled: false}}
    logging: {{format: json}}
    shutdown_grace: {grace}
    upstreams:
      demo:
        format: mock
        mock: {{chunk_delay_ms: {chunk_delay_ms}, latency_ms: {latency_ms}}}
    """))
    return path


@pytest.fixture
def serve(tmp_path):
    """Start `python -m proxy serve -c ...`; returns (process, port, log path)."""
    started = []

    def start(config: Path) -> tuple[subprocess.Popen, int, Path]:
        port = free_port()
        log_path = tmp_path / "proxy.log"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(port)],
                                       stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
        started.append(process)
        wait_for_port(port)
        return process, port, log_path

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def exit_code(process: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert process.poll() is not None, "the proxy did not exit"
    return process.returncode


async def test_sigterm_lets_a_long_stream_finish_refuses_new_connections_and_exits_0(tmp_path, serve):
    process, port, log_path = serve(write_config(tmp_path, chunk_delay_ms=120))
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(
        model="demo/m", messages=[{"role": "user", "content": LONG_MESSAGE}], stream=True)
    pieces = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            break
    process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert connection_refused(port), "a new connection was accepted while draining"
    finish_reason = None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish_reason = chunk.choices[0].finish_reason or finish_reason
    assert "".join(pieces) == f"echo: {LONG_MESSAGE}"
    assert finish_reason == "stop"
    assert await exit_code(process, timeout=20) == 0
    access = [json.loads(line) for line in log_path.read_text().splitlines() if '"byok.access"' in line]
    assert [(line["status"], line["stream"]) for line in access] == [(200, True)]


async def test_a_stream_outliving_shutdown_grace_ends_with_an_error_event(tmp_path, serve):
    process, port, _ = serve(write_config(tmp_path, chunk_delay_ms=300, grace=1))
    body = {"model": "demo/m", "messages": [{"role": "user", "content": LONG_MESSAGE * 2}], "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as response:
            assert response.status == 200
            received = b""
            async for data in response.content.iter_any():
                received += data
                if b'"content"' in received:
                    break
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            received += await response.content.read()
    events = [event for event in received.decode().split("\n\n") if event.strip()]
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "shutting_down" and "shutdown_grace" in last["error"]["message"]
    assert "[DONE]" not in received.decode()
    assert time.monotonic() - signalled < 10  # ended by the grace, not by the 8 s the stream still had to run
    assert await exit_code(process, timeout=20) == 0


async def test_a_plain_request_still_waiting_after_the_grace_gets_503(tmp_path, serve):
    process, port, _ = serve(write_config(tmp_path, latency_ms=20000, grace=0.5))
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
            "model": "demo/m", "messages": [{"role": "user", "content": "hi"}]}))
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        response = await pending
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "shutting_down"
    assert await exit_code(process, timeout=20) == 0


async def test_readiness_turns_false_at_once_and_the_server_stops_listening(proxy_factory):
    proxy = await proxy_factory("""
    health: {enabled: false}
    shutdown_grace: 5
    upstreams: {demo: {format: mock, mock: {chunk_delay_ms: 100}}}
    """)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/readyz") as response:
            assert response.status == 200
        stream = await session.post(f"{proxy.base_url}/chat/completions", json={
            "model": "demo/m", "messages": [{"role": "user", "content": "a b c d e f"}], "stream": True})
        await stream.content.readline()
        draining = asyncio.ensure_future(drain(proxy.runner, proxy.app))
        await asyncio.sleep(0.05)
        assert proxy.app.services.draining
        assert (await proxy.app.readyz(None)).status == 503
        port = int(proxy.url.rsplit(":", 1)[1])
        assert connection_refused(port)
        assert not draining.done()  # the stream is still being served
        rest = await stream.content.read()
        assert rest.endswith(b"data: [DONE]\n\n")
        await asyncio.wait_for(draining, 10)
