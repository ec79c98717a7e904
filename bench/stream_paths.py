"""Stream throughput of each client API -> upstream format path, in process (no sockets).

`python -m bench.stream_paths [--seconds S] [--rounds N] [--paths chat_openai,...] [--profile PATH]`

What the burst phase of `python -m bench` measures, without the sockets and the load generator
that make it noisy on a shared machine: the server's own pipeline from the upstream's body bytes
to the bytes of each write to the client. Only the upstream connection is replaced (the pool's
`send` answers with recorded bytes, in reads of READ_BYTES cut at any byte, each read a
suspension as a socket read is); the rest is the server's: the inbound API's parse, the whole
middleware chain and transport (SSE parsing, the wire adapter), the inbound API's render, and
the batches the server writes. The upstream's bytes come from bench/upstream.py, as end to end.

`--profile FILE` writes cProfile stats of the chosen paths (read them with `python -m pstats`).
"""
from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.loadgen import chat_body, messages_body, responses_body
from bench.upstream import AnthropicStream, OpenAIStream

READ_BYTES = 16 * 1024   # what one upstream read hands the parser
CHUNKS = 2000            # content chunks per stream, as the burst phase's model s2000x0

CONFIG = ("upstreams:\n"
          "  bench:\n    base_url: http://127.0.0.1:9/v1\n    api_key: sk-bench\n"
          "  bencha:\n    base_url: http://127.0.0.1:9\n    format: anthropic\n    api_key: sk-bench\n"
          "logging: {level: warning, requests: false}\n")

# name: (client path, request body builder, upstream model, upstream stream writer)
PATHS = {
    "chat_openai": ("chat/completions", chat_body, "bench/s", OpenAIStream),
    "chat_anthropic": ("chat/completions", chat_body, "bencha/s", AnthropicStream),
    "responses_openai": ("responses", responses_body, "bench/s", OpenAIStream),
    "responses_anthropic": ("responses", responses_body, "bencha/s", AnthropicStream),
    # store: true, the Responses API's default (the bench's other Responses paths send false)
    "responses_openai_stored": ("responses", lambda model, stream: responses_body(model, stream, store=True),
                                "bench/s", OpenAIStream),
    "messages_openai": ("messages", messages_body, "bench/s", OpenAIStream),
    "messages_anthropic": ("messages", messages_body, "bencha/s", AnthropicStream),
}


def upstream_reads(writer: type, chunks: int = CHUNKS, read_bytes: int = READ_BYTES) -> list[bytes]:
    """One stream's body as the proxy would read it: cut every `read_bytes`, mid-event included."""
    events = writer("s", include_usage=True)
    body = b"".join([*events.opening(), *(events.content(f"t{1_000_000 + index} ") for index in range(chunks)),
                     *events.closing(chunks)])
    return [body[start:start + read_bytes] for start in range(0, len(body), read_bytes)]


class _RecordedAnswer:
    """What the pool's `send` returns, answering with recorded SSE bytes."""

    status, reason = 200, "OK"

    def __init__(self, reads: list[bytes]):
        from multidict import CIMultiDict
        self.headers = CIMultiDict({"Content-Type": "text/event-stream"})
        self._reads = iter(reads)

    @property
    def content_type(self) -> str:
        return "text/event-stream"

    async def read_chunk(self) -> bytes:
        await asyncio.sleep(0)  # a socket read: the stream waits, so the server writes what it has
        return next(self._reads, b"")

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class Pipeline:
    """The server's path for one request, from its body to the bytes written, upstream recorded."""

    def __init__(self):
        from proxy.config.model import parse_config
        from proxy.server.runtime import Runtime
        from proxy.server.services import create_services
        self.config = parse_config(CONFIG)
        self.services = create_services(self.config)
        self.runtime = Runtime(self.config, self.services)
        self.reads: list[bytes] = []
        self._patch_pool()

    def _patch_pool(self) -> None:
        from proxy.upstream import pool

        async def send(*args: Any, **kwargs: Any) -> _RecordedAnswer:
            return _RecordedAnswer(self.reads)
        pool.send = send

    async def run(self, path: str, raw: bytes) -> tuple[int, int]:
        """(bytes written, writes) for one stream."""
        from proxy import inbound
        from proxy.core.exchange import ProxyRequest
        from proxy.streams.batches import batches
        api = inbound.api_for(path)
        limits = self.config.limits
        parsed = await api.parse(raw, limits, self.services)
        body, context = parsed.body, parsed.context
        targets = self.runtime.router.resolve(body["model"])
        options = body.get("stream_options")
        native = b"" if api.name == "chat" else parsed.native if parsed.native is not None else raw
        request = ProxyRequest(request_id="bench", method="POST", path=path, api=api.name, native_body=native,
                               body=body, spliced=parsed.spliced, client_model=body["model"], targets=targets,
                               target=targets[0],
                               stream=True, client_wants_usage=isinstance(options, dict)
                               and bool(options.get("include_usage")))
        response = await api.render(await self.runtime.handler(request), context, request)
        written = writes = 0
        async for batch in batches(response.events):
            data = batch[0].raw if len(batch) == 1 else b"".join(event.raw for event in batch)
            written += len(data)
            writes += 1
        await response.aclose()
        return written, writes


async def measure(names: list[str], seconds: float, rounds: int = 1) -> dict[str, dict]:
    """Each path for `seconds`, the paths taking turns `rounds` times; the best round of each is
    kept (other load on a shared machine only ever slows a round down)."""
    pipeline = Pipeline()
    results: dict[str, dict] = {}
    for _ in range(rounds):
        for name in names:
            path, body, model, writer = PATHS[name]
            pipeline.reads = upstream_reads(writer)
            raw = body(model, True)
            await pipeline.run(path, raw)  # warm up imports and caches
            streams, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                await pipeline.run(path, raw)
                streams += 1
            elapsed = time.perf_counter() - started
            rate = streams * CHUNKS / elapsed
            if rate > results.get(name, {}).get("chunks_per_s", 0.0):
                results[name] = {"streams": streams, "chunks_per_s": rate, "us_per_chunk": 1e6 / rate}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per path")
    parser.add_argument("--paths", default=",".join(name for name in PATHS if name != "responses_openai_stored"),
                        help="comma list of " + ", ".join(PATHS))
    parser.add_argument("--rounds", type=int, default=3, help="turns per path; the best is reported")
    parser.add_argument("--profile", help="write cProfile stats here")
    args = parser.parse_args()
    names = [name.strip() for name in args.paths.split(",") if name.strip()]
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        results = profiler.runcall(asyncio.run, measure(names, args.seconds, args.rounds))
        profiler.dump_stats(args.profile)
    else:
        results = asyncio.run(measure(names, args.seconds, args.rounds))
    passthrough = results.get("chat_openai", {}).get("chunks_per_s")
    for name, result in results.items():
        share = f"  ({result['chunks_per_s'] / passthrough:.0%} of chat passthrough)" if passthrough else ""
        print(f"{name:22} {result['chunks_per_s']:>10,.0f} chunks/s  {result['us_per_chunk']:6.2f} us/chunk{share}")


if __name__ == "__main__":
    main()
