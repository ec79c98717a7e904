"""Upstream health: the catalog fetch, timed, every interval; seen through GET /v1/upstreams and /metrics."""
from __future__ import annotations

import asyncio
import textwrap
import time

import aiohttp
import pytest

from proxy.config.model import parse_config
from tests import catalog_fixtures as fx
from tests.helpers import free_port
from tests.upstreams.scripted_upstream import Reply, ScriptedUpstream

pytestmark = pytest.mark.timeout(40)
UPSTREAM_KEY = "sk-health-test-key-0123456789"
FIELDS = {"name", "status", "latency_ms", "last_error", "checked_at", "circuit", "inflight", "queued", "models"}


async def upstreams(proxy) -> dict[str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.base_url + "/upstreams") as response:
            assert response.status == 200
            body = await response.json()
    return {entry["name"]: entry for entry in body["data"]}


async def wait_for_status(proxy, name: str, wanted: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        entry = (await upstreams(proxy))[name]
        if entry["status"] == wanted:
            return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} stayed {entry['status']} ({entry['last_error']}), never {wanted}")
        await asyncio.sleep(0.05)


async def test_health_goes_ok_then_degraded_then_unreachable_and_back(proxy_factory):
    port = free_port()
    slow = Reply(body=fx.OPENAI)
    upstream = await ScriptedUpstream().on("GET", "/v1/models", lambda seen: slow).start(port=port)
    proxy = await proxy_factory(f"""
upstreams:
  flaky: {{base_url: "http://127.0.0.1:{port}/v1", api_key: {UPSTREAM_KEY}}}
health: {{interval: 0.1, degraded_after: 0.4, timeout: 1.5}}
""")
    try:
        ok = await wait_for_status(proxy, "flaky", "ok")
        assert ok["last_error"] is None and ok["latency_ms"] < 400 and ok["models"] == 2

        slow.delay = 0.6  # slower than degraded_after, faster than the timeout
        degraded = await wait_for_status(proxy, "flaky", "degraded")
        assert degraded["latency_ms"] >= 400 and "degraded above 0.4 s" in degraded["last_error"]
        assert await health_gauge(proxy, "flaky") == "degraded"

        await upstream.close()  # it stops: nothing listens any more
        unreachable = await wait_for_status(proxy, "flaky", "unreachable")
        assert f"connection refused: nothing listens at 127.0.0.1:{port}" == unreachable["last_error"]
        assert unreachable["models"] == 2  # what it listed before stays usable
        assert await health_gauge(proxy, "flaky") == "unreachable"

        slow.delay = 0
        await upstream.start(port=port)
        back = await wait_for_status(proxy, "flaky", "ok")
        assert back["last_error"] is None
    finally:
        await upstream.close()


async def health_gauge(proxy, name: str) -> str:
    """The state whose byok_upstream_health sample is 1."""
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/metrics") as response:
            text = await response.text()
    states = [line.split('state="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith("byok_upstream_health{") and f'upstream="{name}"' in line and line.endswith(" 1.0")]
    assert len(states) == 1, text
    return states[0]


async def test_an_upstream_that_never_answers_is_unreachable_after_the_timeout(proxy_factory):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.OPENAI, delay=10)).start()
    try:
        proxy = await proxy_factory(f"""
upstreams:
  stuck: {{base_url: "{upstream.url}/v1"}}
health: {{timeout: 0.3}}
""")
        entry = await wait_for_status(proxy, "stuck", "unreachable")
        assert "within 0.3 s" in entry["last_error"]
    finally:
        await upstream.close()


async def test_startup_does_not_wait_for_the_first_check(proxy_factory):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.OPENAI, delay=5)).start()
    try:
        started = time.monotonic()
        proxy = await proxy_factory(f"""
upstreams:
  hanging: {{base_url: "{upstream.url}/v1"}}
health: {{timeout: 8}}
""")
        entry = (await upstreams(proxy))["hanging"]
        assert time.monotonic() - started < 3  # generous: the upstream holds its answer for 5 s
        assert entry["status"] == "unknown" and entry["checked_at"] is None
        await proxy.close()  # drops the pending fetch, so the upstream's handler is cancelled at once
    finally:
        await upstream.close()


async def test_upstreams_endpoint_has_the_documented_fields_and_never_a_key(proxy_factory):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(
        status=401, body={"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}",
                                    "type": "invalid_request_error", "code": "invalid_api_key"}})).start()
    try:
        proxy = await proxy_factory(f"""
upstreams:
  refused: {{base_url: "{upstream.url}/v1", api_key: {UPSTREAM_KEY}, models: {{m1: {{}}, m2: {{}}}}}}
  demo: {{format: mock}}
""")
        entry = await wait_for_status(proxy, "refused", "unreachable")
        assert set(entry) == FIELDS
        assert "API key is invalid or revoked (HTTP 401)" in entry["last_error"]
        assert "Incorrect API key provided" in entry["last_error"]
        assert UPSTREAM_KEY not in entry["last_error"]
        assert entry["circuit"] == "closed" and entry["inflight"] == 0 and entry["queued"] == 0
        assert entry["models"] == 2
        assert entry["checked_at"].endswith("Z")
        demo = await wait_for_status(proxy, "demo", "ok")
        assert set(demo) == FIELDS
    finally:
        await upstream.close()


async def test_inflight_and_queued_come_from_the_concurrency_slots(proxy_factory):
    proxy = await proxy_factory("""
upstreams:
  demo: {format: mock, max_concurrent_requests: 1, queue_timeout: 10, mock: {latency_ms: 700}}
""")
    async with aiohttp.ClientSession() as session:
        body = {"model": "demo/x", "messages": [{"role": "user", "content": "hi"}]}
        calls = [asyncio.ensure_future(session.post(proxy.base_url + "/chat/completions", json=body))
                 for _ in range(2)]
        deadline = time.monotonic() + 5
        while True:
            entry = (await upstreams(proxy))["demo"]
            if (entry["inflight"], entry["queued"]) == (1, 1) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for response in await asyncio.gather(*calls):
            response.release()
    assert (entry["inflight"], entry["queued"]) == (1, 1)


async def test_a_reload_checks_a_new_upstream_at_once(proxy_factory):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.VLLM)).start()
    try:
        proxy = await proxy_factory("upstreams:\n  demo: {format: mock}\n")
        await wait_for_status(proxy, "demo", "ok")
        config = parse_config(textwrap.dedent(f"""
        upstreams:
          demo: {{format: mock}}
          added: {{base_url: "{upstream.url}/v1", kind: vllm}}
        """))
        await proxy.app.swap(config)
        entry = await wait_for_status(proxy, "added", "ok")
        assert entry["models"] == 1
    finally:
        await upstream.close()


async def test_with_health_checks_off_the_catalog_is_still_discovered_once(proxy_factory):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.VLLM)).start()
    try:
        proxy = await proxy_factory(f"""
upstreams:
  gpu: {{base_url: "{upstream.url}/v1", kind: vllm}}
health: {{enabled: false, interval: 0.05}}
""")
        deadline = time.monotonic() + 5
        while not proxy.app.services.catalog.discovered("gpu") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # several intervals: no further fetch may happen
        assert proxy.app.services.catalog.discovered("gpu") == {"Qwen/Qwen3-8B"}
        assert upstream.seen_paths() == ["/v1/models"]
        assert (await upstreams(proxy))["gpu"]["status"] == "unknown"
    finally:
        await upstream.close()
