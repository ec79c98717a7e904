"""Hot reload of a running `python -m proxy serve` under steady traffic.

SIGHUP, an in-place file edit and a Kubernetes-style ConfigMap symlink swap
each add an upstream while clients keep streaming through the proxy: no
request fails, streams begun before the swap finish, and the new upstream
answers. An invalid config keeps the old one serving, logged and counted.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from openai import AsyncOpenAI
from tests.helpers import ROOT, free_port, wait_for_port
from tests.upstreams.openai_upstream import OpenAIUpstream

pytestmark = pytest.mark.timeout(90)

MESSAGES = [{"role": "user", "content": "keep talking"}]
RELOAD_WAIT = 15.0  # seconds a reload may take to show (polling is once a second)


def config_text(upstream_url: str, *, extra: bool) -> str:
    """The base config; with `extra`, a mock upstream `added` and an alias `later` that uses it."""
    added = """
      added:
        format: mock
        models: {echo-1: {}}""" if extra else ""
    alias = "\n      later: [added/echo-1]" if extra else ""
    return textwrap.dedent(f"""
    health: {{enabled: false}}
    logging: {{format: json}}
    upstreams:
      primary:
        base_url: {upstream_url}/v1
        discover_models: false
        models: {{gpt-test: {{}}}}{added}
    models:
      chat: [primary/gpt-test]{alias}
    """)


@dataclass
class Traffic:
    """Clients streaming and asking through the proxy until told to stop."""

    base_url: str
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self, streams: int = 3, plain: int = 1) -> "Traffic":
        self._tasks = [asyncio.ensure_future(self._loop(stream=True)) for _ in range(streams)]
        self._tasks += [asyncio.ensure_future(self._loop(stream=False)) for _ in range(plain)]
        return self

    async def _loop(self, stream: bool) -> None:
        client = AsyncOpenAI(base_url=self.base_url, api_key="unused", max_retries=0)
        while not self._stop.is_set():
            try:
                if stream:
                    chunks = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
                    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
                else:
                    reply = await client.chat.completions.create(model="chat", messages=MESSAGES)
                    text = reply.choices[0].message.content
                if text != "hello from upstream":
                    self.failures.append(f"wrong answer: {text!r}")
                self.completed += 1
            except Exception as exc:  # every failure is the test's finding, listed at the end
                self.failures.append(f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.fixture
async def slow_upstream():
    upstream = await OpenAIUpstream(chunk_delay=0.08).start()  # each stream lasts a few hundred ms
    yield upstream
    await upstream.close()


@dataclass
class ProxyProcess:
    port: int
    process: subprocess.Popen
    log_path: Path

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def proxy_process(tmp_path):
    """`python -m proxy serve` as a subprocess; its log goes to a file (a pipe nobody reads would fill)."""
    started: list[ProxyProcess] = []

    def start(config_path: Path) -> ProxyProcess:
        port = free_port()
        log_path = tmp_path / f"proxy-{port}.log"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config_path),
                                        "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
        started.append(ProxyProcess(port, process, log_path))
        try:
            wait_for_port(port)
        except TimeoutError:
            raise AssertionError(f"proxy did not start: {log_path.read_text()}") from None
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
        running.process.wait(timeout=10)


async def answers_from_added(port: int) -> bool:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                json={"model": "later", "messages": MESSAGES}) as response:
            return response.status == 200 and (await response.json())["choices"][0]["message"]["content"] == \
                "echo: keep talking"


async def wait_until_added(port: int) -> None:
    await wait_for(lambda: answers_from_added(port), what="the added upstream to answer")


async def reload_counts(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    counts = {}
    for line in text.splitlines():
        if line.startswith("byok_config_reloads_total{"):
            result = line.split('result="')[1].split('"')[0]
            counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


async def wait_for(predicate, timeout: float = RELOAD_WAIT, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def under_traffic(port: int, change) -> Traffic:
    """Run `change()` while clients stream; return the traffic record once the change is live."""
    traffic = Traffic(f"http://127.0.0.1:{port}/v1").start()

    async def flowing() -> bool:
        return traffic.completed >= 4

    await wait_for(flowing, what="traffic to flow")
    before = traffic.completed
    await change()
    await wait_until_added(port)
    after_reload = traffic.completed

    async def still_flowing() -> bool:
        return traffic.completed >= after_reload + 4

    await wait_for(still_flowing, what="traffic on the new config")
    await traffic.stop()
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.completed > before
    return traffic


async def test_sighup_adds_an_upstream_without_failing_a_request(tmp_path, slow_upstream, proxy_process):
    path = tmp_path / "config.yaml"
    path.write_text(config_text(slow_upstream.url, extra=False))
    proxy = proxy_process(path)
    port = proxy.port
    assert not await answers_from_added(port)

    async def change():
        path.write_text(config_text(slow_upstream.url, extra=True))
        proxy.send_signal(signal.SIGHUP)

    await under_traffic(port, change)
    assert (await reload_counts(port))["success"] >= 1


async def test_editing_the_file_reloads_it_without_a_signal(tmp_path, slow_upstream, proxy_process):
    path = tmp_path / "config.yaml"
    path.write_text(config_text(slow_upstream.url, extra=False))
    port = proxy_process(path).port

    async def change():
        replacement = tmp_path / "config.yaml.new"
        replacement.write_text(config_text(slow_upstream.url, extra=True))
        os.replace(replacement, path)  # how editors and config management save

    await under_traffic(port, change)
    assert await reload_counts(port) == {"success": 1.0, "failure": 0.0}


async def test_a_configmap_symlink_swap_is_seen(tmp_path, slow_upstream, proxy_process):
    """The layout kubelet writes: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>/;
    an update writes a new timestamped directory and renames a new ..data link over the old."""
    mount = tmp_path / "configmap"
    first = mount / "..2024_01_01_00_00_00.000000001"
    first.mkdir(parents=True)
    (first / "config.yaml").write_text(config_text(slow_upstream.url, extra=False))
    (mount / "..data").symlink_to(first.name)
    (mount / "config.yaml").symlink_to("..data/config.yaml")
    port = proxy_process(mount / "config.yaml").port

    async def change():
        second = mount / "..2024_01_01_00_01_00.000000002"
        second.mkdir()
        (second / "config.yaml").write_text(config_text(slow_upstream.url, extra=True))
        (mount / "..data_tmp").symlink_to(second.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        for leftover in first.iterdir():
            leftover.unlink()
        first.rmdir()

    await under_traffic(port, change)
    assert (await reload_counts(port))["success"] == 1


async def test_an_invalid_config_keeps_the_old_one_serving(tmp_path, slow_upstream, proxy_process):
    path = tmp_path / "config.yaml"
    path.write_text(config_text(slow_upstream.url, extra=False))
    proxy = proxy_process(path)
    port = proxy.port
    traffic = Traffic(f"http://127.0.0.1:{port}/v1").start(streams=2, plain=1)
    path.write_text(config_text(slow_upstream.url, extra=False).replace("[primary/gpt-test]", "[nowhere/gpt-test]"))
    proxy.send_signal(signal.SIGHUP)

    async def refused() -> bool:
        return (await reload_counts(port)).get("failure", 0) >= 1

    await wait_for(refused, what="the reload to fail")
    await asyncio.sleep(1.5)  # the watcher sees the same bad content and must not retry it
    await traffic.stop()
    assert traffic.failures == [] and traffic.completed > 0
    assert await reload_counts(port) == {"success": 0.0, "failure": 1.0}
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(timeout=30) == 0
    log = proxy.log
    assert "config reload (SIGHUP)" in log and "failed" in log
    assert "models.chat.targets[0] (line " in log and "no upstream named 'nowhere'" in log


async def test_a_stream_longer_than_shutdown_grace_finishes_on_the_old_config(tmp_path, proxy_process):
    """The old generation stays open for its streams, however long they take (within their timeouts)."""
    upstream = await OpenAIUpstream(chunks=[f"p{index} " for index in range(8)], chunk_delay=0.3).start()
    try:
        path = tmp_path / "config.yaml"
        path.write_text(config_text(upstream.url, extra=False) + "shutdown_grace: 0.5\n")
        proxy = proxy_process(path)
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{proxy.port}/v1", api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        pieces = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                break
        path.write_text(config_text(upstream.url, extra=True) + "shutdown_grace: 0.5\n")
        proxy.send_signal(signal.SIGHUP)
        await wait_until_added(proxy.port)
        async for chunk in stream:  # about two seconds more, four times the grace
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
        assert "".join(pieces) == "".join(f"p{index} " for index in range(8))
    finally:
        await upstream.close()
