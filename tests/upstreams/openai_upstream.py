"""A recording OpenAI-format test upstream (stands in for OpenAI, OpenRouter, vLLM, ...).

Written to the documented Chat Completions wire format: JSON completions,
SSE `chat.completion.chunk` streams ending in `data: [DONE]`, the usage chunk
with empty `choices` when `stream_options.include_usage`, and error envelopes.
Tool calls stream as the spec shows them: the first chunk of a call carries its
`index`, `id`, `type` and name with empty arguments, later chunks only `index` and
argument fragments, and the choice finishes with `finish_reason: "tool_calls"`.
Tests steer it through attributes and read what it received from `requests`.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web
from multidict import CIMultiDict

from tests.upstreams.loopback import serve


@dataclass
class Received:
    method: str
    path: str
    headers: CIMultiDict
    body: bytes
    client_port: int = 0  # the proxy's side of the TCP connection: equal ports mean a reused connection

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class OpenAIUpstream:
    """Behaviour knobs; change them between requests."""

    reply: str = "hello from upstream"
    # Stream: these pieces, `chunk_delay` seconds apart (None: the reply split in words).
    chunks: list[str] | None = None
    chunk_delay: float = 0.0
    # LiteLLM's proxy as an upstream: usage rides on the finishing chunk, beside its choices,
    # instead of on a chunk of its own with empty `choices`.
    usage_with_choices: bool = False
    delay_before_headers: float = 0.0
    # Scripted tool calls: each chat completion takes the next turn, if any, and calls its tools
    # instead of answering `reply`. A turn is a list of ToolCall.
    tool_turns: deque = field(default_factory=deque)
    # Prompt tokens the upstream reports as served from its cache (prompt_tokens_details.cached_tokens).
    cached_tokens: int = 0
    fail_status: int | None = None
    fail_body: Any = None
    fail_headers: dict[str, str] = field(default_factory=dict)
    # Custom behaviour for one test: an aiohttp handler that replaces the built-in one.
    override: Callable[[web.Request], Any] | None = None
    models: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "gpt-test", "object": "model",
                                                                   "created": 0, "owned_by": "test"}])
    requests: list[Received] = field(default_factory=list)
    emitted_at: list[float] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> "OpenAIUpstream":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, port = await serve(app, handler_cancellation=True, access_log=None)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def last(self) -> Received:
        """The last request a client caused (background catalog fetches of GET /models are skipped)."""
        return [r for r in self.requests if not (r.method == "GET" and r.path.endswith("/models"))][-1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path.endswith("/models") and self.override is None \
                and not self.fail_status:
            # the proxy's background catalog fetch: answered without counting as a client request
            return web.json_response({"object": "list", "data": self.models})
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Received(request.method, request.path, CIMultiDict(request.headers), body,
                                      peer[1] if peer else 0))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.override is not None:
                return await self.override(request)
            if self.delay_before_headers:
                await asyncio.sleep(self.delay_before_headers)
            if self.fail_status:
                payload = self.fail_body if self.fail_body is not None else {
                    "error": {"message": f"injected failure {self.fail_status}", "type": "server_error",
                              "param": None, "code": None}}
                text = payload if isinstance(payload, str) else json.dumps(payload)
                return web.Response(status=self.fail_status, text=text, headers=self.fail_headers,
                                    content_type="application/json")
            return await self._route(request, body)
        finally:
            self.inflight -= 1

    async def _route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if path.endswith("/models") and request.method == "GET":
            return web.json_response({"object": "list", "data": self.models})
        if path.endswith("/embeddings"):
            data = json.loads(body)
            inputs = data["input"] if isinstance(data["input"], list) else [data["input"]]
            return web.json_response({"object": "list", "model": data["model"],
                                      "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                                               for i, _ in enumerate(inputs)],
                                      "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        if path.endswith("/chat/completions"):
            data = json.loads(body)
            calls = self.tool_turns.popleft() if self.tool_turns else []
            if data.get("stream"):
                return await self._stream(request, data, calls)
            return web.json_response(self.completion(data, calls))
        return web.json_response({"error": {"message": f"no route {path}", "type": "invalid_request_error",
                                            "param": None, "code": None}}, status=404)

    def completion(self, data: dict[str, Any], calls: list["ToolCall"] = ()) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else self.reply, "refusal": None}
        if calls:
            message["tool_calls"] = [call.whole() for call in calls]
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": data["model"],
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": self._usage(4)}

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": 5, "completion_tokens": completion_tokens,
                                 "total_tokens": 5 + completion_tokens}
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    async def _stream(self, request: web.Request, data: dict[str, Any],
                      calls: list["ToolCall"] = ()) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        pieces = [] if calls else self.chunks if self.chunks is not None else _words(self.reply)
        deltas = [{"content": piece} for piece in pieces]
        deltas += [delta for index, call in enumerate(calls) for delta in call.deltas(index)]
        await response.write(_sse(_chunk(data["model"], {"role": "assistant", "content": ""}, include_usage)))
        for delta in deltas:
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            self.emitted_at.append(time.monotonic())
            await response.write(_sse(_chunk(data["model"], delta, include_usage)))
        finish = "tool_calls" if calls else "stop"
        finishing = _chunk(data["model"], {}, include_usage, finish=finish)
        if include_usage and self.usage_with_choices:  # LiteLLM's proxy puts usage on a chunk with choices
            finishing["usage"] = self._usage(len(deltas))
        await response.write(_sse(finishing))
        if include_usage and not self.usage_with_choices:
            await response.write(_sse({"id": "chatcmpl-test", "object": "chat.completion.chunk",
                                       "created": 1700000000, "model": data["model"], "choices": [],
                                       "usage": self._usage(len(deltas))}))
        await response.write(b"data: [DONE]\n\n")
        return response


@dataclass
class ToolCall:
    """One function call a scripted turn makes (see OpenAIUpstream.tool_turns)."""

    name: str
    arguments: dict[str, Any]
    id: str = "call_1"

    def whole(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name,
                                                                 "arguments": json.dumps(self.arguments)}}

    def deltas(self, index: int, size: int = 8) -> list[dict[str, Any]]:
        """The call as stream deltas: its head with empty arguments, then the arguments in pieces."""
        head = {"index": index, "id": self.id, "type": "function", "function": {"name": self.name, "arguments": ""}}
        arguments = json.dumps(self.arguments)
        pieces = [{"index": index, "function": {"arguments": arguments[i:i + size]}}
                  for i in range(0, len(arguments), size)]
        return [{"tool_calls": [call]} for call in [head, *pieces]]


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0]] + [" " + word for word in words[1:]]


def _chunk(model: str, delta: dict[str, Any], include_usage: bool, finish: str | None = None) -> dict[str, Any]:
    chunk = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if include_usage:
        chunk["usage"] = None
    return chunk


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
