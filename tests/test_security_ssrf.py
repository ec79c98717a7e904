"""No SSRF: a client reaches only the configured upstreams, and only under their base paths.

Two loopback servers: the configured upstream (recording every request it
gets) and a "victim" that nothing may ever reach. Requests are written as raw
bytes where a normal client would normalize the attack away before sending it.
"""
from __future__ import annotations

import asyncio
import json
import posixpath
from urllib.parse import unquote

import pytest
from aiohttp import web

from tests.upstreams.openai_upstream import OpenAIUpstream

pytestmark = pytest.mark.timeout(120)

KEY = "proxy-key-ssrf-tests-123456"
BASE_PATH = "/tenant/v1"


@pytest.fixture
async def victim():
    server = await OpenAIUpstream().start()
    yield server
    await server.close()


@pytest.fixture
async def proxy(proxy_factory, openai_upstream, victim):
    return await proxy_factory(f"""
        auth: {{api_keys: [{KEY}]}}
        upstreams:
          up:
            base_url: {openai_upstream.url}{BASE_PATH}
            api_key: sk-upstream-ssrf
            discover_models: false
          claude:
            base_url: {openai_upstream.url}/anthropic
            format: anthropic
            api_key: sk-anthropic-ssrf
            discover_models: false
        default_upstream: up
        health: {{enabled: false}}
    """)


async def raw_request(proxy, request_line: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, bytes]:
    """One request with the target written exactly as given (no client-side normalization)."""
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [request_line, f"Host: {host}:{port}", f"Authorization: Bearer {KEY}", "Connection: close",
             f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


def assert_contained(upstream: OpenAIUpstream, victim: OpenAIUpstream) -> None:
    """Every request the upstream got is under its base path, after any normalization it might do."""
    assert victim.requests == [], [request.path for request in victim.requests]
    for request in upstream.requests:
        normalized = posixpath.normpath(unquote(request.path))
        assert request.path.startswith(BASE_PATH + "/") or request.path.startswith("/anthropic/"), request.path
        assert normalized.startswith(BASE_PATH + "/") or normalized.startswith("/anthropic/"), request.path
        assert request.headers["Host"] == upstream.url.removeprefix("http://")


def forwarded(upstream: OpenAIUpstream) -> list[str]:
    """Paths of requests that came through the chain (the proxy's own catalog fetches carry no request id)."""
    return [request.path for request in upstream.requests if "x-request-id" in request.headers]


def chat_body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()


# ---- models name upstreams, never URLs -----------------------------------------------------------------

@pytest.mark.parametrize("model_template", [
    "victim/gpt-test",
    "{victim}/v1/chat/completions",
    "http://{victim}/v1",
    "//{victim}/x",
    "@{victim}",
    "up@{victim}/gpt-test",
    "up:{victim}/gpt-test",
    "UP/gpt-test",
    " up/gpt-test",
])
async def test_a_model_that_is_not_a_configured_name_is_404(proxy, openai_upstream, victim, model_template):
    model = model_template.format(victim=victim.url.removeprefix("http://"))
    status, body = await raw_request(proxy, "POST /v1/chat/completions HTTP/1.1", body=chat_body(model))
    assert status == 404, body
    assert json.loads(body)["error"]["code"] == "model_not_found"
    assert forwarded(openai_upstream) == []
    assert victim.requests == []


@pytest.mark.parametrize("model_id", ["../../../admin", "x/../../y", "%2e%2e/admin", "http://evil/x", "\r\nHost: evil"])
async def test_the_model_id_after_the_upstream_name_only_travels_in_the_body(proxy, openai_upstream, victim, model_id):
    status, body = await raw_request(proxy, "POST /v1/chat/completions HTTP/1.1", body=chat_body(f"up/{model_id}"))
    assert status == 200, body
    assert openai_upstream.last.path == f"{BASE_PATH}/chat/completions"
    assert openai_upstream.last.json["model"] == model_id
    assert_contained(openai_upstream, victim)


# ---- forwarded /v1/* paths stay under the base path ---------------------------------------------------------

TRAVERSALS = [
    "/v1/../../admin",
    "/v1/embeddings/../../../admin",
    "/v1/%2e%2e/%2e%2e/admin",
    "/v1/%2E%2E/admin",
    "/v1/.%2e/admin",
    "/v1/..%2fadmin",
    "/v1/..%2Fadmin",
    "/v1/%2e%2e%2f%2e%2e%2fadmin",
    "/v1/%252e%252e/admin",
    "/v1/embeddings%2f..%2f..%2fadmin",
    "/v1/..%5cadmin",
    "/v1/%5c%5cvictim/admin",
    "/v1/./embeddings",
    "/v1/embeddings/.",
    "/v1/http://{victim}/v1/models",
    "/v1/http:%2f%2f{victim}/v1/models",
    "/v1/embeddings//{victim}",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_in_the_path_never_leaves_the_base_path(proxy, openai_upstream, victim, target):
    target = target.format(victim=victim.url.removeprefix("http://"))
    for method, body in (("GET", b""), ("POST", b'{"model": "up/text-embedding", "input": "x"}')):
        status, answer = await raw_request(proxy, f"{method} {target} HTTP/1.1", body=body)
        assert status in (400, 404), (target, status, answer)
        assert json.loads(answer)["error"]["type"] == "invalid_request_error"
    assert forwarded(openai_upstream) == []
    assert victim.requests == []


@pytest.mark.parametrize("target", [
    "/v1//{victim}/v1/models",
    "/v1/@{victim}/v1/models",
    "/v1/embeddings;{victim}",
    "/v1/embeddings%0d%0aHost:%20{victim}",
    "/v1/embeddings%00",
    "/v1/%c0%ae%c0%ae/admin",
    "/v1/\uff0e\uff0e/admin",
    "/v1/embeddings?url=http://{victim}/&next=../../admin",
    "/v1/models#@{victim}",
])
async def test_odd_but_harmless_paths_are_forwarded_under_the_base_path_or_refused(proxy, openai_upstream,
                                                                                    victim, target):
    target = target.format(victim=victim.url.removeprefix("http://"))
    status, answer = await raw_request(proxy, f"POST {target} HTTP/1.1".encode("utf-8").decode("latin-1"),
                                       body=b'{"input": "x"}')
    assert status != 500, answer
    assert_contained(openai_upstream, victim)


async def test_absolute_form_request_targets_cannot_pick_the_host(proxy, openai_upstream, victim):
    victim_host = victim.url.removeprefix("http://")
    status, _ = await raw_request(proxy, f"POST http://{victim_host}/v1/chat/completions HTTP/1.1",
                                  body=chat_body("up/gpt-test"))
    assert status == 200
    status, _ = await raw_request(proxy, f"GET http://{victim_host}/v1/embeddings HTTP/1.1")
    assert status != 500
    assert forwarded(openai_upstream) == [f"{BASE_PATH}/chat/completions", f"{BASE_PATH}/embeddings"]
    assert_contained(openai_upstream, victim)


async def test_host_override_headers_do_not_move_the_request(proxy, openai_upstream, victim):
    victim_host = victim.url.removeprefix("http://")
    headers = {"X-Forwarded-Host": victim_host, "Forwarded": f"host={victim_host};proto=http",
               "X-Original-URL": "/admin", "X-Rewrite-URL": "/admin", "X-Forwarded-Prefix": "/../..",
               "X-Host": victim_host, "X-Forwarded-Server": victim_host}
    for request_line, body in [("POST /v1/chat/completions HTTP/1.1", chat_body("up/gpt-test")),
                               ("POST /v1/embeddings HTTP/1.1", b'{"model": "up/e", "input": "x"}')]:
        status, answer = await raw_request(proxy, request_line, headers=headers, body=body)
        assert status == 200, answer
    sent = [request.headers for request in openai_upstream.requests]
    for received in sent:
        assert "X-Forwarded-Host" not in received and "Forwarded" not in received
    assert_contained(openai_upstream, victim)


async def test_a_duplicate_host_header_is_refused_or_ignored(proxy, openai_upstream, victim):
    victim_host = victim.url.removeprefix("http://")
    status, _ = await raw_request(proxy, "POST /v1/chat/completions HTTP/1.1", headers={"Host": victim_host},
                                  body=chat_body("up/gpt-test"))
    assert status in (200, 400)
    assert_contained(openai_upstream, victim)


async def test_an_anthropic_format_upstream_serves_only_chat(proxy, openai_upstream, victim):
    status, answer = await raw_request(proxy, "POST /v1/embeddings HTTP/1.1", body=b'{"model": "claude/x", "input": "x"}')
    assert status == 400
    assert json.loads(answer)["error"]["code"] == "unsupported_endpoint"
    assert_contained(openai_upstream, victim)


async def test_an_upstream_redirect_is_not_followed(proxy, openai_upstream, victim):
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": f"{victim.url}/v1/chat/completions"})
    openai_upstream.override = redirect
    for request_line, body in [("POST /v1/chat/completions HTTP/1.1", chat_body("up/gpt-test")),
                               ("POST /v1/embeddings HTTP/1.1", b'{"input": "x"}')]:
        status, answer = await raw_request(proxy, request_line, body=body)
        assert status != 500, answer
    assert len(forwarded(openai_upstream)) == 2
    assert_contained(openai_upstream, victim)
