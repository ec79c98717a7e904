"""Streaming is passthrough: each upstream event reaches the client as soon as it is emitted."""
import time

import pytest

from tests.conftest import client_for


@pytest.mark.timeout(60)
async def test_each_chunk_arrives_before_the_next_is_emitted(openai_upstream, proxy_factory):
    openai_upstream.chunks = ["one", " two", " three", " four", " five"]
    openai_upstream.chunk_delay = 0.4
    proxy = await proxy_factory(f"""
    upstreams:
      oa: {{base_url: "{openai_upstream.url}", api_key: k-123456}}
    """)
    stream = await client_for(proxy).chat.completions.create(
        model="oa/gpt-test", messages=[{"role": "user", "content": "x"}], stream=True)
    received_at = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received_at.append(time.monotonic())
    assert len(received_at) == 5 == len(openai_upstream.emitted_at)
    # Not held back for a later one: each chunk reaches the client before the upstream has even
    # sent the next (0.4 s later), which leaves room for a loaded machine without a timing bound.
    emitted = openai_upstream.emitted_at
    assert all(received_at[i] < emitted[i + 1] for i in range(4)), (received_at, emitted)
    assert all(received >= sent for received, sent in zip(received_at, emitted))


async def test_client_disconnect_cancels_the_upstream_request(openai_upstream, proxy_factory):
    openai_upstream.chunks = [f" w{i}" for i in range(50)]
    openai_upstream.chunk_delay = 0.05
    proxy = await proxy_factory(f"""
    upstreams:
      oa: {{base_url: "{openai_upstream.url}", api_key: k-123456}}
    """)
    stream = await client_for(proxy).chat.completions.create(
        model="oa/gpt-test", messages=[{"role": "user", "content": "x"}], stream=True)
    seen = 0
    async for chunk in stream:
        seen += 1
        if seen == 3:
            break
    await stream.close()
    deadline = time.monotonic() + 5
    while openai_upstream.inflight and time.monotonic() < deadline:
        import asyncio
        await asyncio.sleep(0.05)
    assert openai_upstream.inflight == 0, "the upstream request must end when the client goes away"
    assert len(openai_upstream.emitted_at) < 50
