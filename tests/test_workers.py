"""`byok-proxy serve --workers N`: N processes on one port (SO_REUSEPORT), drained together."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from bench.upstream import UpstreamServer

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


async def _wait_for(predicate, timeout: float = 15.0, step: float = 0.1):
    """Polls without blocking the loop the test upstream runs on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(step)
    return predicate()


@pytest.fixture
async def upstream_port():
    server = await UpstreamServer().start("127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _write_config(tmp_path: Path, upstream_port: int, extra: str = "") -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"upstreams:\n  bench:\n    base_url: http://127.0.0.1:{upstream_port}/v1\n"
                      f"    api_key: sk-test\n{extra}logging: {{level: warning}}\n")
    return config


def _serve(config: Path, port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(port),
                             "--workers", str(workers)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """Kill the supervisor and its workers (its own process group) whatever state they are in."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT") or not os.path.exists("/proc/self/task"),
                    reason="needs SO_REUSEPORT and /proc")
async def test_two_workers_share_one_port_and_drain_together_on_sigterm(tmp_path, upstream_port):
    port = _free_port()
    process = _serve(_write_config(tmp_path, upstream_port), port, workers=2)
    try:
        assert await _wait_for(lambda: len(_children(process.pid)) == 2 and _ready(port)), "two workers never came up"
        workers = _children(process.pid)
        for _ in range(10):  # a new client (connection) each time, spread over both workers by the kernel
            async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                                   timeout=10) as client:
                answer = await client.chat.completions.create(model="bench/bench",
                                                              messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content.startswith("Hello!")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
        assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in workers)
    finally:
        _stop(process)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc")
async def test_a_worker_that_dies_is_replaced(tmp_path, upstream_port):
    port = _free_port()
    process = _serve(_write_config(tmp_path, upstream_port), port, workers=2)
    try:
        assert await _wait_for(lambda: len(_children(process.pid)) == 2 and _ready(port))
        await asyncio.sleep(2.5)  # past the "died right after starting" window
        victim = _children(process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        replaced = await _wait_for(lambda: len(_children(process.pid)) == 2 and victim not in _children(process.pid))
        assert replaced, "the dead worker was not replaced"
        assert await _wait_for(lambda: _ready(port))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        finally:
            _stop(process)


def test_workers_refuse_a_local_concurrency_cap_they_could_not_keep_exact(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("upstreams:\n  capped:\n    base_url: http://127.0.0.1:9/v1\n    api_key: sk-test\n"
                      "    max_concurrent_requests: 4\n")
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(_free_port()),
                             "--workers", "2"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "capped" in result.stderr and "redis" in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
async def test_workers_do_not_outlive_a_killed_supervisor(tmp_path, upstream_port):
    port = _free_port()
    process = _serve(_write_config(tmp_path, upstream_port), port, workers=2)
    try:
        assert await _wait_for(lambda: len(_children(process.pid)) == 2 and _ready(port))
        workers = _children(process.pid)
        process.kill()  # SIGKILL: the supervisor cannot forward anything
        process.wait(10)
        assert await _wait_for(lambda: all(_state(pid) in ("gone", "Z") for pid in workers), timeout=35)
        assert not _ready(port)
    finally:
        _stop(process)
