"""Reasoning translation through the real server, driven by the official openai SDK.

Every level x every upstream kind: the exact body the recording test upstream
received. Anthropic targets go to the Anthropic-format test upstream, which
refuses invalid thinking settings the way the real API does.
"""
from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from proxy.config.model import EFFORT_LEVELS
from tests.conftest import client_for
from tests.upstreams.anthropic_upstream import DEFAULT_KEY, AnthropicUpstream

pytestmark = pytest.mark.timeout(120)

MESSAGES = [{"role": "user", "content": "think about it"}]
ANSWER_ROOM = 1000  # the client's max_tokens in the table test

# The native reasoning fields each dialect must produce, per level (written out, not computed).
EFFORT = {level: {"reasoning_effort": level} for level in EFFORT_LEVELS}
GEMINI = {"none": {"reasoning_effort": "none"}, "minimal": {"reasoning_effort": "low"},
          "low": {"reasoning_effort": "low"}, "medium": {"reasoning_effort": "medium"},
          "high": {"reasoning_effort": "high"}, "xhigh": {"reasoning_effort": "high"}}
OPENROUTER = {level: {"reasoning": {"effort": level}} for level in EFFORT_LEVELS}
BINARY = {level: {"thinking": {"type": "disabled" if level == "none" else "enabled"}} for level in EFFORT_LEVELS}
NOTHING = {level: {} for level in EFFORT_LEVELS}
# Anthropic budgets (the default table) with max_tokens raised to budget + the client's 1000.
BUDGET = {"none": {"max_tokens": 1000},
          "minimal": {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2024},
          "low": {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 3048},
          "medium": {"thinking": {"type": "enabled", "budget_tokens": 8192}, "max_tokens": 9192},
          "high": {"thinking": {"type": "enabled", "budget_tokens": 16384}, "max_tokens": 17384},
          "xhigh": {"thinking": {"type": "enabled", "budget_tokens": 32768}, "max_tokens": 33768}}
ADAPTIVE = {"none": {"max_tokens": 1000}, **{
    level: {"thinking": {"type": "adaptive"}, "output_config": {"effort": effort}, "max_tokens": 1000}
    for level, effort in (("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"),
                          ("xhigh", "max"))}}

# target name -> (upstream settings YAML, model settings YAML, expected per level)
OPENAI_FORMAT_TARGETS = {
    "openai": ("kind: openai", "{}", EFFORT),
    "generic": ("{}", "{}", EFFORT),  # a loopback URL on no known port: kind generic
    "groq": ("kind: groq", "{}", EFFORT),
    "mistral": ("kind: mistral", "{}", EFFORT),
    "deepseek": ("kind: deepseek", "{}", EFFORT),
    "together": ("kind: together", "{}", EFFORT),
    "fireworks": ("kind: fireworks", "{}", EFFORT),
    "perplexity": ("kind: perplexity", "{}", EFFORT),
    "lmstudio": ("kind: lmstudio", "{}", EFFORT),
    "ollama": ("kind: ollama", "{}", EFFORT),
    "vllm": ("kind: vllm", "{}", EFFORT),
    "litellm": ("kind: litellm", "{}", EFFORT),
    "gemini": ("kind: gemini", "{}", GEMINI),
    "openrouter": ("kind: openrouter", "{}", OPENROUTER),
    "zai": ("kind: zai", "{}", BINARY),
    "moonshot": ("kind: moonshot", "{}", BINARY),
    "style-binary-on-openai": ("kind: openai", "{reasoning_style: binary}", BINARY),
    "style-openrouter-on-vllm": ("kind: vllm", "{reasoning_style: openrouter}", OPENROUTER),
    "thinking-false": ("kind: openai", "{thinking: false}", NOTHING),
}
ANTHROPIC_TARGETS = {
    "anthropic-budget": ("claude-haiku-4-5", "{thinking: true}", BUDGET),
    "anthropic-adaptive": ("claude-sonnet-4-6", "{thinking: true, reasoning_style: adaptive}", ADAPTIVE),
}


def _extras(upstream_yaml: str) -> str:
    return "" if upstream_yaml == "{}" else upstream_yaml


def openai_config(url: str, upstream_yaml: str, model_yaml: str, **more: str) -> str:
    return f"""
    upstreams:
      up:
        base_url: {url}
        api_key: sk-upstream
        {_extras(upstream_yaml)}
        models:
          m1: {model_yaml}
    {more.get('tail', '')}
    """


def anthropic_config(url: str, model: str, model_yaml: str) -> str:
    return f"""
    upstreams:
      claude:
        base_url: {url}
        format: anthropic
        api_key: {DEFAULT_KEY}
        models:
          {model}: {model_yaml}
    """


def chats(upstream) -> list:
    return [r for r in upstream.requests if r.path.endswith("/chat/completions")]


@pytest.fixture
async def anthropic_upstream():
    upstream = await AnthropicUpstream().start()
    yield upstream
    await upstream.close()


# ---- every level x every kind -------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OPENAI_FORMAT_TARGETS))
async def test_each_level_reaches_an_openai_format_kind_in_its_dialect(name, openai_upstream, proxy_factory):
    upstream_yaml, model_yaml, expected = OPENAI_FORMAT_TARGETS[name]
    proxy = await proxy_factory(openai_config(openai_upstream.url, upstream_yaml, model_yaml))
    client = client_for(proxy)
    for level in EFFORT_LEVELS:
        await client.chat.completions.create(model="up/m1", messages=MESSAGES, max_tokens=ANSWER_ROOM,
                                             reasoning_effort=level)
        received = chats(openai_upstream)[-1].json
        assert received == {"model": "m1", "messages": MESSAGES, "max_tokens": ANSWER_ROOM, **expected[level]}, level


@pytest.mark.parametrize("name", list(ANTHROPIC_TARGETS))
async def test_each_level_reaches_anthropic_in_its_dialect_and_is_accepted(name, anthropic_upstream, proxy_factory):
    model, model_yaml, expected = ANTHROPIC_TARGETS[name]
    proxy = await proxy_factory(anthropic_config(anthropic_upstream.base_url, model, model_yaml))
    client = client_for(proxy)
    for level in EFFORT_LEVELS:
        completion = await client.chat.completions.create(
            model=f"claude/{model}", messages=MESSAGES, max_tokens=ANSWER_ROOM, reasoning_effort=level)
        received = dict(anthropic_upstream.requests[-1].body)
        received.pop("messages")
        assert received == {"model": model, **expected[level]}, level
        thought = completion.choices[0].message.model_extra.get("reasoning_content")
        assert bool(thought) == (level != "none"), level  # the upstream thinks exactly when asked to


async def test_anthropic_high_effort_with_small_max_tokens_is_accepted_streaming_too(anthropic_upstream, proxy_factory):
    proxy = await proxy_factory(anthropic_config(anthropic_upstream.base_url, "claude-haiku-4-5", "{}"))
    stream = await client_for(proxy).chat.completions.create(
        model="claude/claude-haiku-4-5", messages=MESSAGES, max_tokens=1000, reasoning_effort="high",
        temperature=0.2, top_p=0.5, stream=True)
    reasoning, content = [], []
    async for chunk in stream:
        if chunk.choices:
            reasoning.append(chunk.choices[0].delta.model_extra.get("reasoning_content") or "")
            content.append(chunk.choices[0].delta.content or "")
    body = anthropic_upstream.requests[-1].body
    assert body["thinking"]["budget_tokens"] < body["max_tokens"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert not {"temperature", "top_p", "top_k"} & set(body)
    assert "".join(reasoning) and "".join(content) == "echo: think about it"


async def test_reasoning_object_with_exact_budget_reaches_anthropic(anthropic_upstream, proxy_factory):
    proxy = await proxy_factory(anthropic_config(anthropic_upstream.base_url, "claude-haiku-4-5", "{}"))
    await client_for(proxy).chat.completions.create(
        model="claude/claude-haiku-4-5", messages=MESSAGES, max_tokens=500,
        extra_body={"reasoning": {"max_tokens": 3000}})
    body = anthropic_upstream.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 3000} and body["max_tokens"] == 3500


# ---- nothing asked ------------------------------------------------------------------------------

async def test_nothing_asked_nothing_added(openai_upstream, anthropic_upstream, proxy_factory):
    proxy = await proxy_factory(openai_config(openai_upstream.url, "kind: openrouter", "{thinking: true}"))
    await client_for(proxy).chat.completions.create(model="up/m1", messages=MESSAGES, temperature=0.4)
    assert chats(openai_upstream)[-1].json == {"model": "m1", "messages": MESSAGES, "temperature": 0.4}
    proxy = await proxy_factory(anthropic_config(anthropic_upstream.base_url, "claude-haiku-4-5", "{thinking: true}"))
    await client_for(proxy).chat.completions.create(model="claude/claude-haiku-4-5", messages=MESSAGES)
    assert "thinking" not in anthropic_upstream.requests[-1].body


# ---- precedence: request > alias > model, and options over all of them -----------------------------

async def test_precedence_request_over_alias_over_model(openai_upstream, proxy_factory):
    tail = """models:
      main: {targets: [up/m1], reasoning_effort: low}"""
    proxy = await proxy_factory(openai_config(openai_upstream.url, "kind: openai", "{reasoning_effort: high}",
                                              tail=tail))
    client = client_for(proxy)
    await client.chat.completions.create(model="main", messages=MESSAGES, reasoning_effort="minimal")
    assert chats(openai_upstream)[-1].json["reasoning_effort"] == "minimal"
    await client.chat.completions.create(model="main", messages=MESSAGES)
    assert chats(openai_upstream)[-1].json["reasoning_effort"] == "low"
    await client.chat.completions.create(model="up/m1", messages=MESSAGES)
    assert chats(openai_upstream)[-1].json["reasoning_effort"] == "high"


async def test_options_win_over_presets_alias_over_model_over_upstream(openai_upstream, proxy_factory):
    config = f"""
    upstreams:
      up:
        base_url: {openai_upstream.url}
        kind: openai
        options: {{reasoning_effort: low, service_tier: flex}}
        models:
          m1: {{options: {{reasoning_effort: medium}}}}
          m2: {{}}
    models:
      main: {{targets: [up/m1], options: {{reasoning_effort: xhigh}}}}
    """
    proxy = await proxy_factory(config)
    client = client_for(proxy)
    await client.chat.completions.create(model="main", messages=MESSAGES, reasoning_effort="minimal")
    assert chats(openai_upstream)[-1].json["reasoning_effort"] == "xhigh"
    await client.chat.completions.create(model="up/m1", messages=MESSAGES, reasoning_effort="minimal")
    assert chats(openai_upstream)[-1].json["reasoning_effort"] == "medium"
    await client.chat.completions.create(model="up/m2", messages=MESSAGES, reasoning_effort="minimal")
    assert chats(openai_upstream)[-1].json == {"model": "m2", "messages": MESSAGES,
                                               "reasoning_effort": "low", "service_tier": "flex"}


async def test_options_set_an_exact_anthropic_budget_over_the_preset(anthropic_upstream, proxy_factory):
    config = f"""
    upstreams:
      claude:
        base_url: {anthropic_upstream.base_url}
        format: anthropic
        api_key: {DEFAULT_KEY}
        models:
          claude-haiku-4-5: {{options: {{thinking: {{budget_tokens: 5000}}}}}}
    """
    proxy = await proxy_factory(config)
    completion = await client_for(proxy).chat.completions.create(
        model="claude/claude-haiku-4-5", messages=MESSAGES, max_tokens=1000, reasoning_effort="high")
    body = anthropic_upstream.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 5000}
    assert body["max_tokens"] == 17384  # the preset's, still above the exact budget: accepted
    assert completion.choices[0].message.model_extra["reasoning_content"]


async def test_openrouter_routing_options_deep_merge_with_the_reasoning_preset(openai_upstream, proxy_factory):
    config = f"""
    upstreams:
      openrouter:
        base_url: {openai_upstream.url}
        kind: openrouter
        options: {{provider: {{order: [anthropic, google-vertex]}}}}
        models:
          anthropic/claude-sonnet-4.6: {{options: {{reasoning: {{exclude: true}}}}}}
    models:
      main:
        targets: [openrouter/anthropic/claude-sonnet-4.6]
        reasoning_effort: high
        options: {{provider: {{allow_fallbacks: false}}}}
    """
    proxy = await proxy_factory(config)
    await client_for(proxy).chat.completions.create(model="main", messages=MESSAGES)
    assert chats(openai_upstream)[-1].json == {
        "model": "anthropic/claude-sonnet-4.6", "messages": MESSAGES,
        "reasoning": {"effort": "high", "exclude": True},
        "provider": {"order": ["anthropic", "google-vertex"], "allow_fallbacks": False}}


async def test_each_fallback_target_gets_its_own_dialect(openai_upstream, anthropic_upstream, proxy_factory):
    openai_upstream.fail_status = 503
    config = f"""
    upstreams:
      router:
        base_url: {openai_upstream.url}
        kind: openrouter
      claude:
        base_url: {anthropic_upstream.base_url}
        format: anthropic
        api_key: {DEFAULT_KEY}
    models:
      main: {{targets: [router/x, claude/claude-haiku-4-5], reasoning_effort: low}}
    """
    proxy = await proxy_factory(config)
    completion = await client_for(proxy).chat.completions.create(model="main", messages=MESSAGES, max_tokens=100)
    assert chats(openai_upstream)[-1].json["reasoning"] == {"effort": "low"}
    body = anthropic_upstream.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "reasoning" not in body
    assert completion.choices[0].message.content == "echo: think about it"


# ---- accepted levels --------------------------------------------------------------------------------

async def test_configured_levels_refuse_others_with_a_400_listing_them(openai_upstream, proxy_factory):
    proxy = await proxy_factory(openai_config(openai_upstream.url, "kind: lmstudio",
                                              "{reasoning_levels: [low, medium, high]}"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client_for(proxy).chat.completions.create(model="up/m1", messages=MESSAGES, reasoning_effort="xhigh")
    error = caught.value.body
    assert error["param"] == "reasoning_effort" and error["type"] == "invalid_request_error"
    assert "low, medium, high" in error["message"]
    assert chats(openai_upstream) == []  # refused before any upstream call


async def test_levels_the_upstream_catalog_advertises_are_enforced(openai_upstream, proxy_factory):
    # Anthropic's model list shape: capabilities.effort with a `supported` flag per level.
    openai_upstream.models = [{"id": "m1", "object": "model", "capabilities": {
        "effort": {"supported": True, "low": {"supported": True}, "high": {"supported": True}}}}]
    proxy = await proxy_factory(openai_config(openai_upstream.url, "kind: openai", "{}"))
    client = client_for(proxy)
    for _ in range(100):  # discovery runs in the background right after startup
        listed = {model.id: model.model_extra for model in (await client.models.list()).data}
        if listed.get("up/m1", {}).get("reasoning"):
            break
        await asyncio.sleep(0.05)
    assert listed["up/m1"]["reasoning"]["levels"] == ["none", "low", "high"]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="up/m1", messages=MESSAGES, reasoning_effort="medium")
    assert caught.value.body["message"].endswith("accepted levels: none, low, high")
    await client.chat.completions.create(model="up/m1", messages=MESSAGES, reasoning_effort="high")
    assert chats(openai_upstream)[-1].json["reasoning_effort"] == "high"


async def test_models_list_shows_levels_and_default(openai_upstream, proxy_factory):
    proxy = await proxy_factory(f"""
    upstreams:
      up:
        base_url: {openai_upstream.url}
        discover_models: false
        models:
          thinker: {{thinking: true, reasoning_effort: high}}
          picky: {{reasoning_levels: [low, high], reasoning_effort: medium}}
          plain: {{thinking: false, reasoning_effort: high}}
    """)
    listed = {model.id: model.model_extra for model in (await client_for(proxy).models.list()).data}
    assert listed["up/thinker"]["reasoning"] == {"levels": list(EFFORT_LEVELS), "default": "high"}
    assert listed["up/picky"]["reasoning"] == {"levels": ["low", "high"], "default": "low"}
    assert "reasoning" not in listed["up/plain"]


# ---- reasoning back: OpenRouter's `reasoning` as reasoning_content ------------------------------------

def _openrouter_like(request_json: dict) -> dict:
    return {"id": "gen-1", "object": "chat.completion", "created": 1, "model": request_json["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "4", "reasoning": "2+2 is 4",
                "reasoning_details": [{"type": "reasoning.text", "text": "2+2 is 4", "format": "unknown"}]}}]}


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


STREAM = [
    {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "m1",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "m1",
     "choices": [{"index": 0, "delta": {"content": "", "reasoning": "thinking ",
                                        "reasoning_details": [{"type": "reasoning.text", "text": "thinking "}]},
                  "finish_reason": None}]},
    {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "m1",
     "choices": [{"index": 0, "delta": {"content": "", "reasoning_details": [{"type": "reasoning.text",
                                                                               "text": "hard"}]},
                  "finish_reason": None}]},
    {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "m1",
     "choices": [{"index": 0, "delta": {"content": "4"}, "finish_reason": None}]},
    {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "m1",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]


async def _openrouter_handler(request):
    from aiohttp import web
    data = await request.json()
    if not data.get("stream"):
        return web.json_response(_openrouter_like(data))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for chunk in STREAM:
        await response.write(_sse(chunk))
    await response.write(b"data: [DONE]\n\n")
    return response


def normalize_config(url: str, normalize: bool) -> str:
    return f"""
    upstreams:
      up:
        base_url: {url}
        kind: openrouter
        stream_usage: false
        normalize_reasoning: {str(normalize).lower()}
        models:
          m1: {{}}
    """


async def test_normalized_openrouter_reasoning_reaches_the_sdk_as_reasoning_content(openai_upstream, proxy_factory):
    openai_upstream.override = _openrouter_handler
    proxy = await proxy_factory(normalize_config(openai_upstream.url, True))
    client = client_for(proxy)
    completion = await client.chat.completions.create(model="up/m1", messages=MESSAGES)
    assert completion.choices[0].message.model_extra["reasoning_content"] == "2+2 is 4"
    stream = await client.chat.completions.create(model="up/m1", messages=MESSAGES, stream=True)
    thought = [chunk.choices[0].delta.model_extra.get("reasoning_content") async for chunk in stream if chunk.choices]
    assert [piece for piece in thought if piece] == ["thinking ", "hard"]


@pytest.mark.parametrize("normalize", [True, False])
async def test_only_changed_chunks_are_re_encoded_and_off_means_byte_passthrough(normalize, openai_upstream,
                                                                                 proxy_factory):
    openai_upstream.override = _openrouter_handler
    proxy = await proxy_factory(normalize_config(openai_upstream.url, normalize))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", headers={"Authorization": "Bearer k"},
                                json={"model": "up/m1", "messages": MESSAGES, "stream": True}) as response:
            raw = await response.read()
    events = [event + b"\n\n" for event in raw.split(b"\n\n") if event]
    sent = [_sse(chunk) for chunk in STREAM] + [b"data: [DONE]\n\n"]
    assert len(events) == len(sent)
    for index, (got, original) in enumerate(zip(events, sent)):
        carries_reasoning = index in (1, 2)
        if normalize and carries_reasoning:
            delta = json.loads(got[len(b"data: "):])["choices"][0]["delta"]
            assert delta["reasoning_content"] == ("thinking " if index == 1 else "hard")
        else:
            assert got == original, index
