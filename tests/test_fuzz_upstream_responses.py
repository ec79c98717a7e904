"""Fuzzing the upstream client's parser (llhttp through proxy/upstream/http1.py) end to end: a raw
loopback upstream answers with random bytes or with a valid answer mutated (bytes flipped,
inserted, deleted, cut short, lines repeated); the proxy's client sees an answer or a 502 (or the
upstream's own client-facing error status), never a 500 and never a hang, and a gzip bomb stays
within limits.max_response_bytes."""
from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core.errors import CLIENT_VISIBLE_STATUSES
from tests.helpers import start_proxy

pytestmark = pytest.mark.timeout(300)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_RESPONSE_BYTES = 64 * 1024

COMPLETION = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                      "finish_reason": "stop"}]}).encode()
CHUNK = json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}).encode()
SSE = b"data: " + CHUNK + b"\n\ndata: [DONE]\n\n"
BOMB_CONTENT = b"0" * (32 * 1024 * 1024)
BOMB = gzip.compress(BOMB_CONTENT, 9)  # 32 MiB from about 32 KiB


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


VALID_ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(COMPLETION),
                                                                                          COMPLETION),
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(COMPLETION),
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(SSE),
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(COMPLETION), COMPLETION),
    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + COMPLETION,
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n"
    b'{"error": {"message": "slow down"}}',
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(BOMB), BOMB),
]


@st.composite
def mutated_answers(draw) -> bytes:
    answer = bytearray(draw(st.sampled_from(VALID_ANSWERS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut", "repeat_line"]))
        at = draw(st.integers(0, max(len(answer) - 1, 0)))
        if action == "flip" and answer:
            answer[at] = draw(st.integers(0, 255))
        elif action == "insert":
            answer[at:at] = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b";", b"0", b"\t"])
                                 | st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del answer[at:at + draw(st.integers(1, 8))]
        elif action == "cut":
            del answer[at:]
        else:
            end = answer.find(b"\r\n", at)
            start = answer.rfind(b"\r\n", 0, at) + 2
            if end > start:
                answer[end + 2:end + 2] = answer[start:end + 2]
    return bytes(answer)


ANSWERS = st.binary(max_size=300) | mutated_answers()


async def _serve_once(answer: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            # The model list (fetched once at start) is not what is fuzzed here.
            writer.write(answer if head.startswith(b"POST ") else b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # the proxy must never wait for more than this

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _exchange(answer: bytes, stream: bool, traced: bool = False) -> tuple[int, bytes, int]:
    """The status and body a client gets when the upstream answers `answer`; with `traced`, the
    peak of memory allocated during the exchange (tracemalloc), else 0."""
    server = await _serve_once(answer)
    port = server.sockets[0].getsockname()[1]
    proxy = await start_proxy(f"""
        upstreams:
          up: {{base_url: "http://127.0.0.1:{port}/v1", discover_models: false,
               timeout: {{connect: 5, first_byte: 5, total: 10}}}}
        health: {{enabled: false}}
        limits: {{max_response_bytes: {MAX_RESPONSE_BYTES}}}
        """)
    peak = 0
    try:
        async with aiohttp.ClientSession() as session:
            if traced:
                tracemalloc.start()
            try:
                async with session.post(f"{proxy.base_url}/chat/completions", timeout=aiohttp.ClientTimeout(total=60),
                                        json={"model": "up/m", "stream": stream,
                                              "messages": [{"role": "user", "content": "hi"}]}) as response:
                    body = await response.read()
            finally:
                if traced:
                    peak = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
    finally:
        await proxy.close()
        server.close()
    return response.status, body, peak


@FUZZ
@given(ANSWERS, st.booleans())
async def test_any_upstream_answer_ends_as_an_answer_or_a_502_never_a_500_or_a_hang(answer, stream):
    status, body, _ = await _exchange(answer, stream)
    assert status == 200 or status == 502 or status in CLIENT_VISIBLE_STATUSES, (status, body[:300])
    assert len(body) <= 2 * MAX_RESPONSE_BYTES + 4096


async def test_a_gzip_bomb_is_a_502_and_never_inflated_whole():
    status, body, peak = await _exchange(VALID_ANSWERS[-1], stream=False, traced=True)
    assert status == 502 and b"limits.max_response_bytes" in body
    assert peak < len(BOMB_CONTENT) // 4  # a bounded piece at a time, not the 32 MiB it inflates to
