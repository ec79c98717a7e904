"""A real Prometheus scrapes the proxy, and PromQL sees the traffic.

Debian's `prometheus` binary runs on a free loopback port with a temporary
config (scraping the proxy every second) and a temporary storage directory.
After traffic through the proxy with the openai SDK, queries through
Prometheus's HTTP API return the request count and a time-to-first-token
quantile.
"""
from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time

import aiohttp
import pytest

from tests.conftest import client_for
from tests.helpers import free_port

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed")]

CHUNK_DELAY_MS = 200  # each streamed word waits this long, so time to first token is at least 0.2 s
STREAMS, PLAIN = 6, 4


@pytest.fixture
async def prometheus(tmp_path):
    """Start Prometheus; yields a function that points it at a proxy and returns its API URL."""
    processes = []

    async def start(target_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: byok
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
""")
        log = open(tmp_path / "prometheus.log", "w")
        processes.append((subprocess.Popen([
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT), log))
        url = f"http://127.0.0.1:{port}"
        await wait_until(lambda: ready(url), 20, "prometheus to start", tmp_path)
        return url

    yield start
    for process, log in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/-/ready") as response:
                return response.status == 200
    except aiohttp.ClientError:
        return False


async def query(url: str, promql: str) -> float | None:
    """The single value of an instant query, or None when the result is empty."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/query", params={"query": promql}) as response:
            payload = await response.json()
    assert payload["status"] == "success", payload
    result = payload["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


async def wait_until(check, timeout: float, what: str, tmp_path=None) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            log = (tmp_path / "prometheus.log").read_text() if tmp_path is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        await asyncio.sleep(0.25)


async def test_prometheus_scrapes_request_counts_and_a_ttft_quantile(proxy_factory, prometheus):
    proxy = await proxy_factory(f"""
    health: {{enabled: false}}
    upstreams:
      demo:
        format: mock
        mock: {{chunk_delay_ms: {CHUNK_DELAY_MS}}}
        models: {{echo-1: {{}}}}
    """)
    api = await prometheus(int(proxy.url.rsplit(":", 1)[1]))

    async def scraped() -> bool:
        return await query(api, 'up{job="byok"}') == 1.0

    await wait_until(scraped, 15, "the first scrape of the proxy")

    client = client_for(proxy)

    async def streamed() -> None:
        stream = await client.chat.completions.create(
            model="demo/echo-1", messages=[{"role": "user", "content": "two words"}], stream=True)
        async for _ in stream:
            pass

    await asyncio.gather(*(streamed() for _ in range(STREAMS)),
                         *(client.chat.completions.create(model="demo/echo-1",
                                                          messages=[{"role": "user", "content": "hi"}])
                           for _ in range(PLAIN)))
    count_query = 'sum(byok_requests_total{upstream="demo", model="echo-1", status="200"})'

    async def counted() -> bool:
        return await query(api, count_query) == STREAMS + PLAIN

    await wait_until(counted, 15, "Prometheus to see every request")
    ttft_query = ('histogram_quantile(0.5, sum by (le) '
                  '(rate(byok_time_to_first_token_seconds_bucket{upstream="demo", model="echo-1"}[1m])))')
    ttft_p50 = await query(api, ttft_query)
    assert ttft_p50 is not None and math.isfinite(ttft_p50), ttft_p50
    assert CHUNK_DELAY_MS / 1000 / 2 <= ttft_p50 <= 5.0  # the first word waited for the injected delay
    assert await query(api, 'sum(byok_time_to_first_token_seconds_count{upstream="demo"})') == STREAMS
    assert await query(api, 'sum(byok_tokens_total{upstream="demo", direction="out"})') > 0
