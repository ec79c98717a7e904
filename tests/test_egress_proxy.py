"""Egress through a real forward proxy (tinyproxy on loopback): an https upstream is reached by a
CONNECT tunnel and TLS to its own name, a plain http one by absolute-form requests; HTTPS_PROXY,
NO_PROXY and a per-upstream `proxy:` decide the route; a proxy that refuses is the 502 that names
it; and the proxy's password appears in no log line, error, endpoint or `check` output."""
from __future__ import annotations

import asyncio
import json
import logging
import textwrap

import aiohttp
import pytest

from proxy.upstream import pool as upstream_client
from tests.conftest import client_for
from tests.helpers import check_json, free_port
from tests.upstreams.forward_proxy import ForwardProxy
from tests.upstreams.scripted_upstream import (MODEL_LIST, Reply, ScriptedUpstream, chat_completion,
                                               self_signed_context)

pytestmark = pytest.mark.timeout(60)

PROXY_USER, PROXY_PASSWORD = "egress-user", "egress-pass-canary-5e1f93b7"
KEY = "sk-egress-test-key-0001"
COMPLETION = chat_completion("via the proxy")
ASK = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}]}


def _scripted() -> ScriptedUpstream:
    return ScriptedUpstream().on("POST", "/v1/chat/completions", Reply(body=COMPLETION)).on(
        "GET", "/v1/models", Reply(body=MODEL_LIST))


@pytest.fixture
async def tls_upstream(tmp_path, monkeypatch):
    """An https upstream whose self-signed certificate this process trusts (SSL_CERT_FILE)."""
    upstream = await _scripted().start(ssl_context=self_signed_context(tmp_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    monkeypatch.setattr(upstream_client, "_default_tls", None)
    yield upstream
    await upstream.close()


@pytest.fixture
async def http_upstream():
    upstream = await _scripted().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def forward_proxy(tmp_path):
    (tmp_path / "open").mkdir()
    proxy = await ForwardProxy(tmp_path / "open").start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def auth_proxy(tmp_path):
    (tmp_path / "auth").mkdir()
    proxy = await ForwardProxy(tmp_path / "auth", credentials=(PROXY_USER, PROXY_PASSWORD)).start()
    yield proxy
    proxy.stop()


def _config(upstream, extra: str = "") -> str:
    return f"""
    upstreams:
      up: {{base_url: "{upstream.url}/v1", api_key: {KEY}, allow_http: true,
           timeout: {{connect: 5, first_byte: 5, total: 10}} {extra}}}
    health: {{enabled: false}}
    """


async def _ask(proxy) -> str:
    answer = await client_for(proxy).chat.completions.create(**ASK)
    return answer.choices[0].message.content


async def _ask_raw(proxy) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=ASK,
                                headers={"Authorization": "Bearer x"}) as response:
            return response.status, await response.text()


# ---- the route ------------------------------------------------------------------------------------

async def test_an_https_upstream_is_reached_through_a_connect_tunnel_from_https_proxy(
        tls_upstream, forward_proxy, proxy_factory):
    proxy = await proxy_factory(_config(tls_upstream), environ={"HTTPS_PROXY": forward_proxy.url})
    assert await _ask(proxy) == "via the proxy"
    assert await _ask(proxy) == "via the proxy"
    assert f"CONNECT 127.0.0.1:{tls_upstream.port} HTTP/1.1" in forward_proxy.log()
    # TLS ran end to end: the upstream saw the request, the proxy only the tunnel
    assert [seen.path for seen in tls_upstream.seen if seen.method == "POST"] == ["/v1/chat/completions"] * 2
    assert "chat/completions" not in forward_proxy.log()


async def test_a_plain_http_upstream_goes_through_http_proxy_in_absolute_form(
        http_upstream, forward_proxy, proxy_factory):
    proxy = await proxy_factory(_config(http_upstream), environ={"HTTP_PROXY": forward_proxy.url})
    assert await _ask(proxy) == "via the proxy"
    assert f"POST http://127.0.0.1:{http_upstream.port}/v1/chat/completions HTTP/1.1" in forward_proxy.log()


async def test_the_lowercase_variable_wins_over_the_uppercase_one(tls_upstream, forward_proxy, proxy_factory):
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = await proxy_factory(_config(tls_upstream), environ={"HTTPS_PROXY": dead, "https_proxy": forward_proxy.url})
    assert await _ask(proxy) == "via the proxy"
    assert "CONNECT 127.0.0.1" in forward_proxy.log()


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "*", "example.com, 127.0.0.1"])
async def test_no_proxy_bypasses_the_environment_proxy(tls_upstream, proxy_factory, no_proxy):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: only a bypass can succeed
    proxy = await proxy_factory(_config(tls_upstream), environ={"HTTPS_PROXY": dead, "NO_PROXY": no_proxy})
    assert await _ask(proxy) == "via the proxy"


async def test_proxy_none_on_the_upstream_overrides_the_environment(tls_upstream, proxy_factory):
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = await proxy_factory(_config(tls_upstream, ", proxy: none"), environ={"HTTPS_PROXY": dead})
    assert await _ask(proxy) == "via the proxy"


async def test_no_proxy_does_not_apply_to_the_upstreams_own_proxy(tls_upstream, forward_proxy, proxy_factory):
    proxy = await proxy_factory(_config(tls_upstream, f", proxy: '{forward_proxy.url}'"),
                                environ={"NO_PROXY": "*"})
    assert await _ask(proxy) == "via the proxy"
    assert f"CONNECT 127.0.0.1:{tls_upstream.port}" in forward_proxy.log()


# ---- credentials and refusals -------------------------------------------------------------------------

async def test_proxy_credentials_from_an_env_reference_are_sent_and_accepted(
        tls_upstream, http_upstream, auth_proxy, proxy_factory):
    config = f"""
    upstreams:
      up: {{base_url: "{tls_upstream.url}/v1", api_key: {KEY},
           proxy: "http://{PROXY_USER}:${{PROXY_PASSWORD}}@127.0.0.1:{auth_proxy.port}"}}
      plain: {{base_url: "{http_upstream.url}/v1", api_key: {KEY}, allow_http: true,
              proxy: {{url: "127.0.0.1:{auth_proxy.port}", username: {PROXY_USER}, password: "${{PROXY_PASSWORD}}"}}}}
    health: {{enabled: false}}
    """
    proxy = await proxy_factory(config, environ={"PROXY_PASSWORD": PROXY_PASSWORD})
    assert await _ask(proxy) == "via the proxy"
    answer = await client_for(proxy).chat.completions.create(model="plain/m", messages=ASK["messages"])
    assert answer.choices[0].message.content == "via the proxy"
    log = auth_proxy.log()
    assert f"CONNECT 127.0.0.1:{tls_upstream.port}" in log
    assert f"POST http://127.0.0.1:{http_upstream.port}/v1/chat/completions" in log
    # the proxy's credentials went to the proxy only, never on to the upstream
    assert all("Proxy-Authorization" not in seen.headers for seen in http_upstream.seen)


async def test_a_proxy_that_wants_credentials_is_a_502_naming_the_proxy(tls_upstream, auth_proxy, proxy_factory):
    proxy = await proxy_factory(_config(tls_upstream), environ={"HTTPS_PROXY": auth_proxy.url})
    status, body = await _ask_raw(proxy)
    assert status == 502
    message = json.loads(body)["error"]["message"]
    assert f"the egress proxy {auth_proxy.url} requires authentication (HTTP 40" in message
    assert tls_upstream.seen == []


async def test_a_plain_http_upstream_behind_a_proxy_wanting_credentials_is_a_502_naming_the_proxy(
        http_upstream, auth_proxy, proxy_factory):
    proxy = await proxy_factory(_config(http_upstream), environ={"HTTP_PROXY": auth_proxy.url})
    status, body = await _ask_raw(proxy)
    assert status == 502
    assert f"the egress proxy {auth_proxy.url} requires authentication (HTTP 407)" in json.loads(body)["error"]["message"]
    assert [seen for seen in http_upstream.seen if seen.method == "POST"] == []


async def test_a_refusing_proxy_is_a_502_that_names_the_proxy_not_the_upstream(tls_upstream, proxy_factory):
    dead_port = free_port()
    proxy = await proxy_factory(_config(tls_upstream), environ={"HTTPS_PROXY": f"http://127.0.0.1:{dead_port}"})
    status, body = await _ask_raw(proxy)
    assert status == 502
    error = json.loads(body)["error"]
    assert error["code"] == "upstream_unreachable"
    assert f"the egress proxy http://127.0.0.1:{dead_port} cannot be reached" in error["message"]
    assert str(tls_upstream.port) not in error["message"]


async def test_a_proxy_refusing_the_tunnel_is_a_502_naming_the_proxy_and_the_refusal(tls_upstream, proxy_factory):
    refusing = await ScriptedUpstream().start()  # an HTTP server that is no proxy: CONNECT gets a 404/405
    try:
        proxy = await proxy_factory(_config(tls_upstream), environ={"HTTPS_PROXY": refusing.url})
        status, body = await _ask_raw(proxy)
    finally:
        await refusing.close()
    assert status == 502
    message = json.loads(body)["error"]["message"]
    assert f"the egress proxy {refusing.url} refused the tunnel to 127.0.0.1:{tls_upstream.port} (HTTP 4" in message


# ---- secrets --------------------------------------------------------------------------------------------

async def test_the_proxy_password_is_in_no_log_error_endpoint_or_check_output(
        tls_upstream, auth_proxy, proxy_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = auth_proxy.url_with_credentials.replace(PROXY_PASSWORD, PROXY_PASSWORD + "-wrong")
    config = f"""
    upstreams:
      up: {{base_url: "{tls_upstream.url}/v1", api_key: {KEY}, proxy: "{auth_proxy.url_with_credentials}"}}
      bad: {{base_url: "{tls_upstream.url}/v1", api_key: {KEY}, proxy: "{wrong}"}}
    health: {{interval: 0.2, timeout: 5}}
    """
    proxy = await proxy_factory(config)
    seen = [await _ask(proxy)]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", headers={"Authorization": "Bearer x"},
                                json={**ASK, "model": "bad/m"}) as response:
            seen.append(f"{response.status} {await response.text()}")
        for _ in range(100):  # until the health check has been through both routes
            async with session.get(f"{proxy.base_url}/upstreams") as response:
                upstreams = await response.text()
            if '"ok"' in upstreams and "requires authentication" in upstreams:
                break
            await asyncio.sleep(0.1)
    seen.append(upstreams)
    assert "requires authentication (HTTP 40" in seen[1] and "requires authentication" in upstreams
    report, printed = await check_json(textwrap.dedent(config), tmp_path)
    assert report["up"]["status"] == "ok"
    assert report["bad"]["catalog"]["error"]["class"] == "proxy_failure"
    seen += [printed, caplog.text, *(record.getMessage() for record in caplog.records)]
    for text in seen:
        assert PROXY_PASSWORD not in text and PROXY_USER + ":" not in text
