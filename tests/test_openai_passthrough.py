"""The official openai SDK through the proxy to an OpenAI-format upstream and the mock."""
import json

import aiohttp
import pytest

from tests.conftest import CLIENT_KEY, client_for

UPSTREAM_KEY = "sk-upstream-proxy-owned-key-123"


def config_for(upstream_url: str) -> str:
    return f"""
    upstreams:
      oa:
        base_url: {upstream_url}
        api_key: {UPSTREAM_KEY}
        headers: {{X-Team: research, OpenAI-Organization: org-configured}}
      demo:
        format: mock
    models:
      main: [oa/gpt-test]
    """


async def test_chat_reaches_upstream_with_proxy_auth_and_configured_headers_never_client_key(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    completion = await client_for(proxy).chat.completions.create(
        model="main", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "hello from upstream"
    received = openai_upstream.last
    assert received.path == "/v1/chat/completions"
    assert received.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert received.headers["X-Team"] == "research"
    assert received.headers["OpenAI-Organization"] == "org-configured"
    assert CLIENT_KEY not in json.dumps(dict(received.headers))
    assert received.json["model"] == "gpt-test"


async def test_unknown_fields_pass_through_and_only_model_changes(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    await client_for(proxy).chat.completions.create(
        model="oa/gpt-test", messages=[{"role": "user", "content": "hi"}], temperature=0.3,
        extra_body={"provider_extra": {"deep": [1, 2]}, "top_k": 5})
    assert openai_upstream.last.json == {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                                         "temperature": 0.3, "provider_extra": {"deep": [1, 2]}, "top_k": 5}


async def test_streaming_chat_through_sdk(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    stream = await client_for(proxy).chat.completions.create(
        model="main", messages=[{"role": "user", "content": "hi"}], stream=True)
    pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert "".join(p for p in pieces if p) == "hello from upstream"


async def test_stream_usage_is_requested_upstream_but_dropped_unless_client_asked(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    client = client_for(proxy)
    stream = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}], stream=True)
    chunks = [chunk async for chunk in stream]
    assert openai_upstream.last.json["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks), "the usage-only chunk must not reach a client that did not ask"
    stream = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


async def test_usage_on_a_chunk_with_choices_reaches_only_the_client_that_asked(openai_upstream, proxy_factory):
    """LiteLLM's proxy as the upstream: usage rides on the finishing chunk beside its choices."""
    openai_upstream.usage_with_choices = True
    proxy = await proxy_factory(config_for(openai_upstream.url))
    body = {"model": "oa/gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body) as response:
            unasked = await response.read()
        assert openai_upstream.last.json["stream_options"] == {"include_usage": True}
        async with session.post(f"{openai_upstream.url}/v1/chat/completions",
                                json={**body, "model": "gpt-test", "stream_options": {"include_usage": True}}) as response:
            upstream_wrote = await response.read()
    assert b'"usage": {' in upstream_wrote and b'"usage": {' not in unasked
    # Only the member is gone: the finishing chunk keeps the upstream's other bytes as they were.
    finishing = [event for event in upstream_wrote.split(b"\n\n") if b'"usage": {' in event][0]
    start = finishing.index(b', "usage": {')
    assert finishing[:start] + b"}" in unasked
    stream = await client_for(proxy).chat.completions.create(
        model="main", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 3


async def test_stream_bytes_reach_client_unchanged(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    body = {"model": "oa/gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True,
            "stream_options": {"include_usage": True}}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body) as response:
            through_proxy = await response.read()
        async with session.post(f"{openai_upstream.url}/v1/chat/completions",
                                json={**body, "model": "gpt-test"}) as response:
            direct = await response.read()
    assert through_proxy == direct


async def test_models_list_and_embeddings(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url).replace("""      demo:
        format: mock""", """      demo:
        format: mock
        models: {echo-1: {context_window: 8192}}"""))
    client = client_for(proxy)
    ids = [model.id async for model in client.models.list()]
    assert "main" in ids and "demo/echo-1" in ids
    embedding = await client.embeddings.create(model="oa/text-embedding-3-small", input=["a", "b"])
    assert len(embedding.data) == 2
    assert openai_upstream.last.path == "/v1/embeddings"
    assert openai_upstream.last.json["model"] == "text-embedding-3-small"


async def test_mock_upstream_chat_stream_and_embeddings(proxy_factory):
    proxy = await proxy_factory("""
    upstreams:
      demo: {format: mock}
    """)
    client = client_for(proxy)
    completion = await client.chat.completions.create(
        model="demo/anything", messages=[{"role": "user", "content": "ping pong"}])
    assert completion.choices[0].message.content == "echo: ping pong"
    stream = await client.chat.completions.create(
        model="demo/anything", messages=[{"role": "user", "content": "one two three"}], stream=True)
    words = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert words == ["echo:", " one", " two", " three"]
    first = await client.embeddings.create(model="demo/emb", input="same text")
    second = await client.embeddings.create(model="demo/emb", input="same text")
    assert first.data[0].embedding == second.data[0].embedding and len(first.data[0].embedding) == 16


async def test_request_id_is_kept_or_made(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body,
                                headers={"x-request-id": "req-abc-123"}) as response:
            assert response.headers["x-request-id"] == "req-abc-123"
        assert openai_upstream.last.headers["x-request-id"] == "req-abc-123"
        async with session.post(f"{proxy.base_url}/chat/completions", json=body) as response:
            made = response.headers["x-request-id"]
        assert len(made) >= 16 and openai_upstream.last.headers["x-request-id"] == made


async def test_client_credentials_and_hop_by_hop_headers_are_not_forwarded(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}]}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY, "Cookie": "session=1",
               "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Proxy-Authorization": "Basic x",
               "X-App": "kept"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body, headers=headers) as response:
            assert response.status == 200
    received = {name.lower(): value for name, value in openai_upstream.last.headers.items()}
    assert received["authorization"] == f"Bearer {UPSTREAM_KEY}"
    for dropped in ("x-api-key", "cookie", "x-secret-hop", "proxy-authorization"):
        assert dropped not in received
    assert received["x-app"] == "kept"


@pytest.mark.parametrize("status", [400, 404, 422, 429])
async def test_upstream_client_errors_reach_client_with_status_and_message(status, openai_upstream, proxy_factory):
    openai_upstream.fail_status = status
    openai_upstream.fail_body = {"error": {"message": "bad thing happened", "type": "invalid_request_error",
                                           "param": "messages", "code": "custom_code"}}
    proxy = await proxy_factory(config_for(openai_upstream.url))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions",
                                json={"model": "oa/gpt-test", "messages": [{"role": "user", "content": "x"}]}) as response:
            payload = await response.json()
            assert response.status == status
    assert "bad thing happened" in payload["error"]["message"]
    assert "oa" in payload["error"]["message"]
    assert payload["error"]["code"] == "custom_code" and payload["error"]["param"] == "messages"


async def test_one_pooled_keep_alive_connection_per_upstream(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    client = client_for(proxy)
    for _ in range(5):
        await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    ports = {r.client_port for r in openai_upstream.requests if r.path.endswith("chat/completions")}
    assert len(ports) == 1, f"sequential requests used {len(ports)} upstream connections"


async def test_a_finished_stream_hands_its_upstream_connection_back(openai_upstream, proxy_factory):
    proxy = await proxy_factory(config_for(openai_upstream.url))
    client = client_for(proxy)
    for _ in range(4):
        stream = await client.chat.completions.create(model="main", stream=True,
                                                      messages=[{"role": "user", "content": "x y z"}])
        assert "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    ports = {r.client_port for r in openai_upstream.requests if r.path.endswith("chat/completions")}
    assert len(ports) == 1, f"four streams and an answer used {len(ports)} upstream connections"
