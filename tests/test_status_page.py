"""The status page at GET /, rendered by a real headless Chromium against a running proxy
whose three upstreams are ok, degraded and unreachable."""
from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from tests import catalog_fixtures as fx
from tests.helpers import free_port
from tests.upstreams.scripted_upstream import Reply, ScriptedUpstream

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.timeout(90)  # scripts/test installs Debian's chromium; without it these fail
GREEN, YELLOW, RED = "rgb(31, 157, 85)", "rgb(224, 168, 0)", "rgb(214, 69, 69)"


async def chromium(*args: str, profile: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def wait_for(proxy, expected: dict[str, str]) -> None:
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(proxy.base_url + "/upstreams") as response:
                seen = {entry["name"]: entry["status"] for entry in (await response.json())["data"]}
            if seen == expected:
                return
            assert time.monotonic() < deadline, f"upstreams are {seen}"
            await asyncio.sleep(0.05)


def rows(dom: str) -> dict[str, str]:
    """upstream name -> the row's HTML, from the DOM Chromium built after the page's script ran."""
    return {match.group(1): match.group(0)
            for match in re.finditer(r'<tr data-upstream="([^"]+)" data-status="[^"]+">.*?</tr>', dom, re.S)}


async def test_status_page_shows_green_yellow_and_red_dots_with_latency_models_and_slots(proxy_factory, tmp_path):
    fast = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.OPENAI)).start()
    slow = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.VLLM, delay=0.5)).start()
    try:
        proxy = await proxy_factory(f"""
upstreams:
  fast: {{base_url: "{fast.url}/v1", max_concurrent_requests: 4}}
  slow: {{base_url: "{slow.url}/v1", kind: vllm}}
  down: {{base_url: "http://127.0.0.1:{free_port()}/v1", models: {{declared: {{}}}}}}
health: {{degraded_after: 0.2, timeout: 3}}
""")
        await wait_for(proxy, {"fast": "ok", "slow": "degraded", "down": "unreachable"})
        page = proxy.url + "/"
        dom = await chromium("--dump-dom", page, profile=tmp_path / "profile-dom")
        screenshot = tmp_path / "status.png"
        await chromium(f"--screenshot={screenshot}", "--window-size=1280,600", page, profile=tmp_path / "profile-shot")
    finally:
        await fast.close()
        await slow.close()

    found = rows(dom)
    assert set(found) == {"fast", "slow", "down"}
    for name, status, colour in (("fast", "ok", GREEN), ("slow", "degraded", YELLOW), ("down", "unreachable", RED)):
        html = found[name]
        assert f'data-status="{status}"' in html
        assert re.search(r'class="dot"[^>]*style="background-color: ' + re.escape(colour), html), html
    assert re.search(r'class="num models">2<', found["fast"]) and re.search(r'class="num models">1<', found["down"])
    assert re.search(r'class="num latency">\d+ ms<', found["slow"])
    assert re.search(r'class="num inflight">0<', found["fast"]) and re.search(r'class="num queued">0<', found["fast"])
    assert "connection refused" in found["down"]
    assert "3 upstreams: 1 ok, 1 degraded, 1 unreachable" in dom
    assert screenshot.exists() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 5000  # a rendered page, not an empty canvas


async def test_status_page_asks_for_the_key_when_the_proxy_requires_one(proxy_factory, tmp_path):
    proxy = await proxy_factory("""
auth: {api_keys: [sk-proxy-key-for-status-page]}
upstreams:
  demo: {format: mock}
""")
    dom = await chromium("--dump-dom", proxy.url + "/", profile=tmp_path / "profile")
    assert re.search(r'<form id="keyform">', dom)  # no longer hidden: the fetch was refused with 401
    assert "sk-proxy-key-for-status-page" not in dom
