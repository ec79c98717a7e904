"""Scripted upstream faults for the resilience tests (concurrency, fallback, circuit, soak).

Each function returns an `override` handler for tests/upstreams/openai_upstream.py,
written to OpenAI's documented Chat Completions stream format: a role-only
first chunk, content deltas, a finish chunk, `data: [DONE]`. The faults are the
ones real providers produce: a reset before or after the first content, an
in-stream `{"error": ...}` event (OpenRouter sends these), an error status
with Retry-After, a server that never answers.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.upstreams.openai_upstream import OpenAIUpstream


@dataclass
class ChatUpstream(OpenAIUpstream):
    """The recording upstream, counting only chat completions in flight: the catalog fetch
    a proxy makes on its own is answered at once and is not subject to any cap."""

    chat_inflight: int = 0
    chat_max_inflight: int = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.endswith("/chat/completions"):
            return web.json_response({"object": "list", "data": self.models})
        self.chat_inflight += 1
        self.chat_max_inflight = max(self.chat_max_inflight, self.chat_inflight)
        try:
            return await super()._handle(request)
        finally:
            self.chat_inflight -= 1


@pytest.fixture
async def main():
    """The first target of the resilience tests (import the fixture to use it)."""
    upstream = await ChatUpstream().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def backup():
    """The second target; its answer says where it came from."""
    upstream = await ChatUpstream(reply="answer from backup").start()
    yield upstream
    await upstream.close()


def chunk(model: str, delta: dict[str, Any], finish: str | None = None, chunk_id: str = "chatcmpl-fault") -> bytes:
    payload = {"id": chunk_id, "object": "chat.completion.chunk", "created": 1700000000, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _wants_stream(request: web.Request) -> bool:
    return bool(json.loads(await request.read()).get("stream"))


async def _open_stream(request: web.Request) -> tuple[web.StreamResponse, str]:
    data = json.loads(await request.read())
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk(data["model"], {"role": "assistant", "content": ""}))
    return response, data["model"]


async def _truncated_json(request: web.Request) -> web.StreamResponse:
    """The non-streaming twin of a broken stream: half a JSON body, then the connection drops."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 4096
    await response.prepare(request)
    await response.write(b'{"id": "chatcmpl-fault", "object": "chat.completion", "choices": [')
    _reset(request)
    return response


def _reset(request: web.Request) -> None:
    """Drop the connection without ending the body: the client sees a broken answer."""
    assert request.transport is not None
    request.transport.abort()


def drop_before_content(delay: float = 0.0):
    async def handler(request: web.Request) -> web.StreamResponse:
        if not await _wants_stream(request):
            return await _truncated_json(request)
        response, _ = await _open_stream(request)
        await asyncio.sleep(delay)
        _reset(request)
        return response
    return handler


def error_event_before_content(code: int = 502, message: str = "provider overloaded"):
    async def handler(request: web.Request) -> web.StreamResponse:
        if not await _wants_stream(request):
            return await status(code, message=message)(request)
        response, _ = await _open_stream(request)
        await response.write(b"data: " + json.dumps({"error": {"message": message, "code": code}}).encode() + b"\n\n")
        return response
    return handler


def drop_mid_stream(pieces: list[str], delay: float = 0.0):
    """Some content, then the connection breaks: a truncation the client must be told about."""
    async def handler(request: web.Request) -> web.StreamResponse:
        if not await _wants_stream(request):
            return await _truncated_json(request)
        response, model = await _open_stream(request)
        for piece in pieces:
            await asyncio.sleep(delay)
            await response.write(chunk(model, {"content": piece}, chunk_id="chatcmpl-dropped"))
        await asyncio.sleep(0.05)
        _reset(request)
        return response
    return handler


def status(code: int, retry_after: float | None = None, message: str | None = None):
    async def handler(request: web.Request) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        body = {"error": {"message": message or f"scripted {code}", "type": "server_error", "param": None,
                          "code": None}}
        return web.json_response(body, status=code, headers=headers)
    return handler


def hang(seconds: float = 60.0):
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.json_response({"error": {"message": "too late"}}, status=500)
    return handler


def closed_port() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def sse_events(raw: bytes) -> list[bytes]:
    """A raw SSE body split into its events' data payloads."""
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if data:
            events.append(b"\n".join(data))
    return events
