"""A 10,000-chunk Anthropic stream goes through the proxy with flat memory: the translator
passes text along event by event and nothing along the way collects the answer."""
import gc
import json
import tracemalloc

import aiohttp
import pytest

from tests.upstreams.anthropic_upstream import DEFAULT_KEY, AnthropicUpstream, Reply, text

pytestmark = pytest.mark.timeout(180)
CHUNKS = 10_000
CHUNK_CHARS = 100  # a 1 MB answer: collecting it anywhere would show as ~1 MB or more of growth


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_ten_thousand_chunk_stream_keeps_memory_flat(proxy_factory):
    upstream = await AnthropicUpstream().start()
    try:
        proxy = await proxy_factory(f"""
        upstreams:
          claude:
            base_url: {upstream.base_url}
            format: anthropic
            api_key: {DEFAULT_KEY}
            discover_models: false
        health: {{enabled: false}}
        models:
          main: [claude/claude-sonnet-4-6]
        """)
        answer = "".join(chr(ord("a") + i % 26) for i in range(CHUNKS * CHUNK_CHARS))
        upstream.script(Reply(blocks=[text(answer)], chunk_size=CHUNK_CHARS))
        body = {"model": "main", "messages": [{"role": "user", "content": "long"}], "stream": True}
        content_chunks, characters, samples, last_event = 0, 0, {}, b""
        tracemalloc.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{proxy.base_url}/chat/completions", json=body) as response:
                    assert response.status == 200
                    async for line in response.content:
                        if line.startswith(b"data: "):
                            last_event = line
                        if not line.startswith(b"data: {"):
                            continue
                        delta = json.loads(line[6:])["choices"][0]["delta"]
                        if delta.get("content"):
                            content_chunks += 1
                            characters += len(delta["content"])
                            if content_chunks in (2_000, CHUNKS):
                                samples[content_chunks] = _traced()
        finally:
            tracemalloc.stop()
    finally:
        await upstream.close()
    assert content_chunks == CHUNKS and characters == len(answer) and last_event.strip() == b"data: [DONE]"
    growth = samples[CHUNKS] - samples[2_000]
    print(f"traced memory growth over 8,000 chunks: {growth} bytes")
    # 8,000 chunks (800 kB of text, more as JSON) went by between the samples; flat means far less growth.
    assert growth < 256 * 1024, f"memory grew by {growth} bytes over 8,000 chunks"
