"""The status page at GET /, rendered by a real headless Chromium against a running proxy
whose three upstreams are ok, degraded and unreachable."""
from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from proxy.config.model import parse_config
from proxy.server.status import fallback_snapshot, render_status_page
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


# ---- the page without a script: what curl or a text browser gets ------------------------------------

UPSTREAM_KEY = "sk-upstream-key-never-on-the-status-page"
ODD_NAME = "<b>odd & 'quoted'\""


class _Cells(HTMLParser):
    """The text of each row, as a browser without JavaScript shows it: {table or tbody id: [[cell, ...], ...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._row = None
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "table" or (tag == "tbody" and dict(attrs).get("id")):
            self._table = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag == "td" and self._row is not None:
            self._row.append("")
            self._in_cell = True

    def handle_endtag(self, tag):
        self._in_cell = self._in_cell and tag != "td"
        if tag == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._in_cell:
            self._row[-1] += data


def cells(page: str) -> dict[str, list[list[str]]]:
    parser = _Cells()
    parser.feed(page)
    return {table: [row for row in found if row] for table, found in parser.tables.items()}


async def plain_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers or {}) as response:
            return response.status, dict(response.headers), await response.text()


async def test_the_page_reads_without_a_script_with_names_states_and_aliases(proxy_factory):
    fast = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.OPENAI)).start()
    try:
        proxy = await proxy_factory(f"""
upstreams:
  fast: {{base_url: "{fast.url}/v1", api_key: "{UPSTREAM_KEY}"}}
  {json.dumps(ODD_NAME)}: {{base_url: "http://127.0.0.1:{free_port()}/v1", api_key: "{UPSTREAM_KEY}",
                          models: {{declared: {{}}}}}}
models:
  best: {{targets: [fast/gpt-4o-mini, {json.dumps(ODD_NAME + "/declared")}], description: "<i>first</i> choice"}}
health: {{timeout: 3}}
""")
        await wait_for(proxy, {"fast": "ok", ODD_NAME: "unreachable"})
        status, headers, page = await plain_get(proxy.url + "/")
    finally:
        await fast.close()

    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    rows = {row[1]: row for row in cells(page)["rows"]}
    assert set(rows) == {"fast", ODD_NAME}
    assert rows["fast"][2] == "ok" and rows["fast"][4] == "2" and re.fullmatch(r"\d+ ms", rows["fast"][3])
    assert rows[ODD_NAME][2] == "unreachable" and "connection refused" in rows[ODD_NAME][9]
    assert "2 upstreams: 1 ok, 1 unreachable" in page
    assert cells(page)["aliases"] == [["best", f"fast/gpt-4o-mini, {ODD_NAME}/declared", "<i>first</i> choice"]]
    assert "&lt;b&gt;odd &amp; &#x27;quoted&#x27;&quot;" in page
    assert "<b>odd" not in page and "<i>first" not in page
    assert UPSTREAM_KEY not in page and html.escape(UPSTREAM_KEY) not in page


async def test_a_proxy_with_keys_renders_the_rows_only_for_a_request_with_one(proxy_factory):
    proxy = await proxy_factory(f"""
auth: {{api_keys: [sk-proxy-key-for-status-page]}}
upstreams:
  demo: {{format: mock, api_key: "{UPSTREAM_KEY}"}}
models:
  quick: [demo/m]
health: {{enabled: false}}
""")
    status, _, page = await plain_get(proxy.url + "/")
    assert status == 200  # open unless auth.protect_metrics, as before
    assert cells(page)["rows"] == [] and "aliases" not in cells(page) and "demo" not in page
    assert "needs this proxy&#x27;s API key" in page
    _, _, page = await plain_get(proxy.url + "/", {"Authorization": "Bearer sk-proxy-key-for-status-page"})
    assert [row[1:3] for row in cells(page)["rows"]] == [["demo", "unknown"]]
    assert cells(page)["aliases"] == [["quick", "demo/m", ""]]
    assert UPSTREAM_KEY not in page and "sk-proxy-key-for-status-page" not in page


def test_without_a_health_monitor_every_upstream_is_unknown():
    config = parse_config("upstreams:\n  a: {format: mock}\n  b: {format: mock}\n")
    page = render_status_page("<table id='rows'><!--status:rows--></table><p><!--status:summary--></p>",
                              fallback_snapshot(config), config)
    assert [row[1:3] + row[7:8] for row in cells(page)["rows"]] == [["a", "unknown", "closed"],
                                                                     ["b", "unknown", "closed"]]
    assert "2 upstreams: 2 unknown" in page
