"""Anthropic -> OpenAI stream translation throughput, in process (no sockets).

The same pipeline the transport runs for a `format: anthropic` upstream: raw SSE bytes
as they would arrive, SSEParser, the adapter's `translate_stream`, and the `raw` bytes
of each OpenAI chunk it yields. The bytes come from the bench upstream's own Anthropic
event writer, so they match what the end-to-end runs send.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from bench.upstream import AnthropicStream


def anthropic_stream_bytes(deltas: int) -> list[bytes]:
    """One Anthropic stream, one network read per event."""
    events = AnthropicStream("bench", include_usage=True)
    return [*events.opening(), *(events.content(f"t{index} ") for index in range(deltas)), *events.closing(deltas)]


async def _reads(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def translate_once(pieces: list[bytes], adapter, request, target) -> int:
    from proxy.streams.sse import parse_stream
    chunks = 0
    async for event in adapter.translate_stream(parse_stream(_reads(pieces)), request, target):
        chunks += 1 if event.raw else 0
    return chunks


def _request_and_target():
    from proxy.config.model import parse_config
    from proxy.core.exchange import ProxyRequest, Target
    config = parse_config("upstreams:\n  bencha:\n    base_url: http://127.0.0.1:9/v1\n"
                          "    format: anthropic\n    api_key: sk-bench\n")
    target = Target(config.upstreams["bencha"], "bench")
    body = {"model": "bencha/bench", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hello"}]}
    request = ProxyRequest(request_id="bench", method="POST", path="chat/completions", body=body, stream=True,
                           client_model="bencha/bench", targets=(target,), target=target)
    return request, target


async def measure(seconds: float = 3.0, deltas: int = 1000, max_streams: int = 100_000) -> dict:
    try:
        from proxy.wire.registry import adapter_for
        adapter = adapter_for("anthropic")
    except ImportError as exc:
        return {"skipped": f"no Anthropic adapter in this build ({exc})"}
    request, target = _request_and_target()
    pieces = anthropic_stream_bytes(deltas)
    await translate_once(pieces, adapter, request, target)  # warm up imports and caches
    streams = chunks = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline and streams < max_streams:
        chunks += await translate_once(pieces, adapter, request.replace(), target)
        streams += 1
    elapsed = time.perf_counter() - started
    return {"streams": streams, "deltas_per_stream": deltas, "chunks_out": chunks, "seconds": elapsed,
            "chunks_per_s": chunks / elapsed if elapsed else 0.0,
            "us_per_chunk": elapsed / chunks * 1e6 if chunks else None}


if __name__ == "__main__":
    print(asyncio.run(measure()))
