"""The model catalog: every provider's documented list shape becomes the right metadata
in GET /v1/models, config values always win, and discovery never sits on the request path."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from openai import AsyncOpenAI

from proxy.catalog.discovery import DiscoveryError
from proxy.catalog.models import DEFAULT_CONTEXT_WINDOW, Catalog
from proxy.config.model import parse_config
from tests import catalog_fixtures as fx
from tests.upstreams.scripted_upstream import Reply, ScriptedUpstream, Seen

pytestmark = pytest.mark.timeout(30)
UPSTREAM_KEY = "sk-upstream-secret-for-catalog-tests"


@pytest.fixture
async def upstream():
    scripted = await ScriptedUpstream().start()
    yield scripted
    await scripted.close()


async def listed(proxy) -> dict[str, dict]:
    """GET /v1/models the way a user does it, keyed by id."""
    client = AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)
    page = await client.models.list()
    await client.close()
    return {model.id: model.model_dump() for model in page.data}


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def discovered(proxy, name: str) -> None:
    async def checked() -> bool:
        return proxy.app.services.health.status(name) is not None
    await until(checked)


def upstream_config(name: str, url: str, extra: str = "") -> str:
    return f"""
upstreams:
  {name}:
    base_url: {url}
    api_key: {UPSTREAM_KEY}
{extra}
"""


async def test_openai_list_gives_upstream_prefixed_ids_owned_by_the_upstream_with_128k_default(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    proxy = await proxy_factory(upstream_config("oai", upstream.url + "/v1"))
    await discovered(proxy, "oai")
    models = await listed(proxy)
    assert set(models) == {"oai/gpt-4o-mini", "oai/text-embedding-3-small"}
    entry = models["oai/gpt-4o-mini"]
    assert entry["owned_by"] == "oai" and entry["object"] == "model"
    assert entry["context_window"] == DEFAULT_CONTEXT_WINDOW == 128_000
    assert entry["capabilities"] == {"vision": None, "tools": None, "thinking": None}
    assert upstream.seen[0].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_openrouter_list_gives_context_vision_tools_thinking_and_pricing(upstream, proxy_factory):
    upstream.on("GET", "/api/v1/models", Reply(body=fx.OPENROUTER))
    proxy = await proxy_factory(upstream_config("or", upstream.url + "/api/v1", "    kind: openrouter"))
    await discovered(proxy, "or")
    models = await listed(proxy)
    sonnet = models["or/anthropic/claude-sonnet-4.6"]
    assert sonnet["context_window"] == 1000000
    assert sonnet["max_output_tokens"] == 64000
    assert sonnet["capabilities"] == {"vision": True, "tools": True, "thinking": True}
    assert sonnet["pricing"]["prompt"] == "0.000003" and sonnet["pricing"]["completion"] == "0.000015"
    assert "medium" in sonnet["reasoning"]["levels"]
    nemo = models["or/mistralai/mistral-nemo"]
    assert nemo["context_window"] == 131072
    assert nemo["capabilities"] == {"vision": False, "tools": False, "thinking": False}
    assert "reasoning" not in nemo


async def test_vllm_list_gives_max_model_len_as_context_window(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(body=fx.VLLM))
    proxy = await proxy_factory(upstream_config("gpu", upstream.url + "/v1", "    kind: vllm"))
    await discovered(proxy, "gpu")
    assert (await listed(proxy))["gpu/Qwen/Qwen3-8B"]["context_window"] == 32768


async def test_anthropic_list_is_paged_with_after_id_and_reads_capabilities(upstream, proxy_factory):
    def page(request: Seen) -> Reply:
        return Reply(body=fx.ANTHROPIC_PAGE_2 if request.query.get("after_id") else fx.ANTHROPIC_PAGE_1)
    upstream.on("GET", "/v1/models", page)
    proxy = await proxy_factory(upstream_config("claude", upstream.url, "    format: anthropic"))
    await discovered(proxy, "claude")
    models = await listed(proxy)
    asks = [seen for seen in upstream.seen if seen.path == "/v1/models"]
    assert [seen.query.get("after_id") for seen in asks] == [None, "claude-sonnet-4-6"]
    assert asks[0].headers["x-api-key"] == UPSTREAM_KEY and asks[0].headers["anthropic-version"] == "2023-06-01"
    sonnet = models["claude/claude-sonnet-4-6"]
    assert sonnet["context_window"] == 1000000 and sonnet["max_output_tokens"] == 64000
    assert sonnet["capabilities"] == {"vision": True, "tools": True, "thinking": True}
    assert sonnet["reasoning"]["levels"] == ["none", "low", "medium", "high", "xhigh"]
    haiku = models["claude/claude-3-haiku-20240307"]
    assert haiku["context_window"] == 200000
    assert haiku["capabilities"] == {"vision": True, "tools": True, "thinking": False}
    assert "reasoning" not in haiku


async def test_ollama_tags_and_show_give_capabilities_and_context(upstream, proxy_factory):
    upstream.on("GET", "/api/tags", Reply(body=fx.OLLAMA_TAGS))
    upstream.on("POST", "/api/show", lambda request: Reply(body=fx.OLLAMA_SHOW[json.loads(request.body)["model"]]))
    proxy = await proxy_factory(upstream_config("local", upstream.url + "/v1", "    kind: ollama"))
    await discovered(proxy, "local")
    models = await listed(proxy)
    assert models["local/gemma3"]["context_window"] == 131072
    assert models["local/gemma3"]["capabilities"] == {"vision": True, "tools": False, "thinking": False}
    assert models["local/qwen3:8b"]["context_window"] == 40960
    assert models["local/qwen3:8b"]["capabilities"] == {"vision": False, "tools": True, "thinking": True}


async def test_lmstudio_native_list_gives_type_context_and_tool_use(upstream, proxy_factory):
    upstream.on("GET", "/api/v0/models", Reply(body=fx.LMSTUDIO_V0))
    proxy = await proxy_factory(upstream_config("lms", upstream.url + "/v1", "    kind: lmstudio"))
    await discovered(proxy, "lms")
    models = await listed(proxy)
    assert models["lms/qwen2-vl-7b-instruct"]["capabilities"]["vision"] is True
    assert models["lms/qwen2-vl-7b-instruct"]["context_window"] == 32768
    llama = models["lms/meta-llama-3.1-8b-instruct"]
    assert llama["capabilities"]["vision"] is False and llama["capabilities"]["tools"] is True
    assert llama["context_window"] == 131072


async def test_lmstudio_without_native_api_falls_back_to_the_openai_list(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(body={"object": "list", "data": [{"id": "phi-4", "object": "model"}]}))
    proxy = await proxy_factory(upstream_config("lms", upstream.url + "/v1", "    kind: lmstudio"))
    await discovered(proxy, "lms")
    assert "lms/phi-4" in await listed(proxy)
    assert upstream.seen_paths() == ["/api/v0/models", "/v1/models"]


async def test_config_values_win_and_survive_every_refresh(upstream, proxy_factory):
    answer = {"object": "list", "data": [{"id": "Qwen/Qwen3-8B", "max_model_len": 32768}]}
    upstream.on("GET", "/v1/models", lambda request: Reply(body=answer))
    proxy = await proxy_factory(upstream_config("gpu", upstream.url + "/v1", """    kind: vllm
    models:
      Qwen/Qwen3-8B: {context_window: 4096, vision: false, thinking: true, reasoning_effort: high}
health: {interval: 0.1}"""))
    await discovered(proxy, "gpu")
    first = (await listed(proxy))["gpu/Qwen/Qwen3-8B"]
    # The upstream changes its answer; a later refresh brings the new model and new numbers.
    answer = {"object": "list", "data": [{"id": "Qwen/Qwen3-8B", "max_model_len": 65536},
                                         {"id": "Qwen/Qwen3-32B", "max_model_len": 65536}]}

    async def refreshed() -> bool:
        return "gpu/Qwen/Qwen3-32B" in await listed(proxy)
    await until(refreshed)
    models = await listed(proxy)
    for entry in (first, models["gpu/Qwen/Qwen3-8B"]):
        assert entry["context_window"] == 4096
        assert entry["capabilities"]["vision"] is False and entry["capabilities"]["thinking"] is True
        assert entry["reasoning"]["default"] == "high"
    assert models["gpu/Qwen/Qwen3-32B"]["context_window"] == 65536


async def test_a_failed_discovery_still_serves_declared_models_and_upstream_slash_model(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(status=500, body={"error": {"message": "catalog down"}}))
    upstream.on("POST", "/v1/chat/completions", lambda request: Reply(body=_completion(request)))
    proxy = await proxy_factory(upstream_config("flaky", upstream.url + "/v1", """    models:
      declared-model: {context_window: 8192}"""))
    await discovered(proxy, "flaky")
    models = await listed(proxy)
    assert set(models) == {"flaky/declared-model"} and models["flaky/declared-model"]["context_window"] == 8192
    client = AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)
    answer = await client.chat.completions.create(model="flaky/never-listed", messages=[{"role": "user", "content": "hi"}])
    await client.close()
    assert answer.model == "never-listed"


async def test_a_bare_model_id_one_upstream_discovered_routes_there(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    upstream.on("POST", "/v1/chat/completions", lambda request: Reply(body=_completion(request)))
    proxy = await proxy_factory(upstream_config("oai", upstream.url + "/v1") + "  demo: {format: mock}\n")
    await discovered(proxy, "oai")
    client = AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    await client.close()
    assert answer.model == "gpt-4o-mini"
    assert upstream.seen_paths("POST") == ["/v1/chat/completions"]
    # a discovered model is a known metrics label, not folded into "other"
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/metrics") as response:
            exposition = await response.text()
    assert 'byok_requests_total{api="chat",model="gpt-4o-mini",status="200",upstream="oai"} 1.0' in exposition


async def test_discover_models_false_keeps_the_catalog_to_declared_models_but_still_checks_health(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    proxy = await proxy_factory(upstream_config("oai", upstream.url + "/v1", """    discover_models: false
    models: {only-this: {}}"""))
    await discovered(proxy, "oai")
    assert proxy.app.services.health.status("oai") == "ok"
    assert set(await listed(proxy)) == {"oai/only-this"}


async def test_models_endpoint_answers_at_once_while_a_catalog_fetch_hangs(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI, delay=5))
    proxy = await proxy_factory(upstream_config("slow", upstream.url + "/v1", """    models: {declared: {}}
health: {timeout: 8}"""))

    async def fetch_started() -> bool:
        return upstream.seen_paths() == ["/v1/models"]
    await until(fetch_started)
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.base_url + "/models", timeout=aiohttp.ClientTimeout(total=2)) as response:
            body = await response.json()
    assert [entry["id"] for entry in body["data"]] == ["slow/declared"]
    assert proxy.app.services.health.status("slow") is None  # the check is still waiting on the upstream


async def test_an_empty_first_answer_is_retried_briefly(upstream):
    answers = [{"object": "list", "data": []}, fx.VLLM]
    upstream.on("GET", "/v1/models", lambda request: Reply(body=answers.pop(0) if len(answers) > 1 else answers[0]))
    config = parse_config(upstream_config("gpu", upstream.url + "/v1", "    kind: vllm"))
    catalog = Catalog(config, empty_retry_delays=(0.05, 0.05))
    try:
        await catalog.refresh("gpu")
    finally:
        await catalog.close()
    assert catalog.discovered("gpu") == {"Qwen/Qwen3-8B"}
    assert upstream.seen_paths() == ["/v1/models", "/v1/models"]


async def test_discovery_refuses_a_redirect_without_following_it(upstream):
    upstream.on("GET", "/v1/models", Reply(status=302, headers={"Location": upstream.url + "/elsewhere/v1/models"}))
    upstream.on("GET", "/elsewhere/v1/models", Reply(body=fx.OPENAI))
    config = parse_config(upstream_config("oai", upstream.url + "/v1"))
    catalog = Catalog(config, empty_retry_delays=())
    try:
        with pytest.raises(DiscoveryError) as caught:
            await catalog.refresh("oai")
    finally:
        await catalog.close()
    assert caught.value.status == 302 and "redirecting to " + upstream.url + "/elsewhere" in str(caught.value)
    assert "keys are never sent after a redirect" in str(caught.value)
    assert upstream.seen_paths() == ["/v1/models"]  # Location was not followed: the key stayed here
    assert upstream.seen[0].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert catalog.discovered("oai") == frozenset()


async def test_a_reload_keeps_what_unchanged_upstreams_discovered():
    config = parse_config("upstreams:\n  a: {base_url: 'http://127.0.0.1:1/v1'}\n  b: {base_url: 'http://127.0.0.1:2/v1'}\n")
    catalog = Catalog(config)
    catalog.record("a", [_model("m-a")])
    catalog.record("b", [_model("m-b")])
    catalog.apply_config(parse_config("upstreams:\n  a: {base_url: 'http://127.0.0.1:1/v1'}\n"
                                      "  b: {base_url: 'http://127.0.0.1:3/v1'}\n"))
    assert catalog.discovered("a") == {"m-a"}
    assert catalog.discovered("b") == frozenset()  # a different server: what it listed is unknown
    assert [entry["id"] for entry in catalog.models_payload()["data"]] == ["a/m-a"]


async def test_aliases_are_listed_under_their_own_name_with_their_first_targets_metadata(proxy_factory):
    proxy = await proxy_factory("""
upstreams:
  demo:
    format: mock
    models:
      echo-1: {context_window: 32000, vision: true, tools: true, thinking: true}
models:
  main: {targets: [demo/echo-1], reasoning_effort: medium, description: "the default"}
""")
    main = (await listed(proxy))["main"]
    assert main["owned_by"] == "demo" and main["targets"] == ["demo/echo-1"]
    assert main["context_window"] == 32000
    assert main["capabilities"] == {"vision": True, "tools": True, "thinking": True}
    assert main["reasoning"]["default"] == "medium"


async def test_the_models_list_never_shows_a_key(upstream, proxy_factory):
    upstream.on("GET", "/v1/models", Reply(status=401, body={"error": {"message": f"bad key {UPSTREAM_KEY}"}}))
    proxy = await proxy_factory(upstream_config("oai", upstream.url + "/v1", "    models: {m: {}}"))
    await discovered(proxy, "oai")
    async with aiohttp.ClientSession() as session:
        for path in ("/models", "/upstreams"):
            async with session.get(proxy.base_url + path) as response:
                assert UPSTREAM_KEY not in await response.text()


def _model(model_id: str):
    from proxy.catalog.discovery import DiscoveredModel
    return DiscoveredModel(id=model_id)


def _completion(request: Seen) -> dict:
    model = json.loads(request.body)["model"]
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
