"""A test upstream speaking the Anthropic Messages API on 127.0.0.1.

Faithful to the documented wire format (checked against the official `anthropic`
SDK in tests/test_anthropic_upstream.py):
  POST /v1/messages     JSON or SSE (`stream: true`), validated by anthropic_rules
  POST /v1/messages/count_tokens   `{"input_tokens": N}` (count_input_tokens), the body
                        validated as the input of a Messages request (check_count_request)
  GET  /v1/models       paginated: `limit` (1-1000, default 20), `after_id`/`before_id`,
                        `{"data", "has_more", "first_id", "last_id"}`
  GET  /v1/models/{id}
Errors are `{"type": "error", "error": {"type", "message"}, "request_id"}` with the
documented statuses. Auth: `x-api-key` or `Authorization: Bearer`; `anthropic-version`
is required.

Tests script answers with `upstream.script(Reply(...))`; with nothing scripted the
upstream echoes the last user text (and thinks first when thinking is on). Every
request is recorded in `upstream.requests`.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from aiohttp import web

from tests.upstreams import anthropic_rules as rules
from tests.upstreams.loopback import serve

DEFAULT_KEY = "sk-ant-test-key"


# ---- scripted answers -----------------------------------------------------------------------------

def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def thinking(value: str) -> dict[str, Any]:
    """A thinking block; the upstream signs it, so only an unmodified copy is accepted back."""
    return {"type": "thinking", "thinking": value}


def redacted() -> dict[str, Any]:
    return {"type": "redacted_thinking"}


def tool_use(name: str, arguments: dict[str, Any], tool_id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "name": name, "input": arguments, "id": tool_id}


@dataclass
class Reply:
    """One answer. `status` makes it an HTTP error; `error_after` an `error` event mid-stream."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None        # default: tool_use when a tool is called, else end_turn
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    chunk_size: int = 5                   # characters per text/thinking/json delta
    ping_every: int = 0                   # an extra ping after every N events (one always follows message_start)
    delay: float = 0.0                    # seconds between events
    error_after: int | None = None        # events sent before an `error` event ends the stream
    truncate_after: int | None = None     # events sent before the connection just closes
    status: int | None = None
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    query: str = ""
    raw: bytes = b""


STATUS_FOR = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
              "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
              "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}

DEFAULT_MODELS = [
    {"id": "claude-opus-4-8", "display_name": "Claude Opus 4.8", "created_at": "2026-06-01T00:00:00Z",
     "max_input_tokens": 1000000, "max_tokens": 128000},
    {"id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6", "created_at": "2026-02-17T00:00:00Z",
     "max_input_tokens": 200000, "max_tokens": 64000},
    {"id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z",
     "max_input_tokens": 200000, "max_tokens": 64000},
    {"id": "claude-3-5-haiku-20241022", "display_name": "Claude Haiku 3.5", "created_at": "2024-10-22T00:00:00Z",
     "max_input_tokens": 200000, "max_tokens": 8192},
]


class AnthropicUpstream:
    def __init__(self, api_key: str = DEFAULT_KEY, models: list[dict[str, Any]] | None = None,
                 forbidden_models: tuple[str, ...] = (), max_body_bytes: int = 32 * 1024 * 1024):
        self.api_key = api_key
        self.models = [{"type": "model", "lifecycle": "active", **model} for model in (models or DEFAULT_MODELS)]
        self.forbidden_models = forbidden_models
        self.max_body_bytes = max_body_bytes
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.streams_closed_early = 0

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "AnthropicUpstream":
        app = web.Application(client_max_size=self.max_body_bytes * 2)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model_id}", self._get_model)
        self._runner, self.port = await serve(app, access_log=None)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "AnthropicUpstream":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    # ---- requests -------------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key")
        authorization = request.headers.get("Authorization", "")
        if key is None and authorization.startswith("Bearer "):
            key = authorization[len("Bearer "):]
        if key is None:
            return error_response(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return error_response(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return error_response(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in rules.VERSIONS:
            return error_response(400, "invalid_request_error", f"anthropic-version: unknown version '{version}'")
        return None

    async def _received(self, request: web.Request) -> tuple[bytes, Any]:
        """The raw body and its JSON (its text when it is not JSON), recorded in `requests`."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Recorded(request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                                      request.query_string, raw))
        return raw, body

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw, body = await self._received(request)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if len(raw) > self.max_body_bytes:
            return error_response(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
        version = request.headers["anthropic-version"]
        problem = rules.check_request(body, version, legacy_sampling_pair=_is_legacy(body))
        if problem is not None:
            return error_response(400, "invalid_request_error", problem)
        if body["model"] in self.forbidden_models:
            return error_response(403, "permission_error", "Your API key does not have permission to use the specified resource.")
        if not any(model["id"] == body["model"] for model in self.models):
            return error_response(404, "not_found_error", f"model: {body['model']}")
        reply = self.replies.popleft() if self.replies else echo_reply(body)
        if reply.status is not None:
            return error_response(reply.status, reply.error_type, reply.error_message, reply.headers)
        message = build_message(body, reply)
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": _request_id(), **reply.headers})
        return await self._stream(request, message, reply)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        _, body = await self._received(request)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        problem = rules.check_count_request(body)
        if problem is not None:
            return error_response(400, "invalid_request_error", problem)
        if not any(model["id"] == body["model"] for model in self.models):
            return error_response(404, "not_found_error", f"model: {body['model']}")
        reply = self.replies.popleft() if self.replies else None
        if reply is not None and reply.status is not None:
            return error_response(reply.status, reply.error_type, reply.error_message, reply.headers)
        return web.json_response({"input_tokens": count_input_tokens(body)}, headers={"request-id": _request_id()})

    async def _stream(self, request: web.Request, message: dict[str, Any], reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "request-id": _request_id(), **reply.headers})
        await response.prepare(request)
        try:
            for count, (name, data) in enumerate(stream_events(message, reply)):
                if reply.error_after is not None and count >= reply.error_after:
                    error = {"type": "error", "error": {"type": reply.error_type, "message": reply.error_message}}
                    await response.write(_sse("error", error))
                    break
                if reply.truncate_after is not None and count >= reply.truncate_after:
                    break
                await response.write(_sse(name, data))
                if reply.delay:
                    await asyncio.sleep(reply.delay)
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_closed_early += 1
            raise
        await response.write_eof()
        return response

    async def _list_models(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 1000:
            return error_response(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
        ids = [model["id"] for model in self.models]
        after, before = request.query.get("after_id"), request.query.get("before_id")
        for cursor in (after, before):
            if cursor is not None and cursor not in ids:
                return error_response(400, "invalid_request_error", f"no model with id '{cursor}'")
        if before is not None:
            end = ids.index(before)
            page = self.models[max(0, end - limit):end]
            has_more = end - limit > 0
        else:
            start = ids.index(after) + 1 if after is not None else 0
            page = self.models[start:start + limit]
            has_more = start + limit < len(ids)
        return web.json_response({"data": page, "has_more": has_more,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None})

    async def _get_model(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        for model in self.models:
            if model["id"] == request.match_info["model_id"]:
                return web.json_response(model)
        return error_response(404, "not_found_error", f"model: {request.match_info['model_id']}")


# ---- building answers -----------------------------------------------------------------------------

def _is_legacy(body: Any) -> bool:
    """Claude 3.x models still take temperature and top_p together; newer ones refuse the pair."""
    return isinstance(body, dict) and str(body.get("model", "")).startswith("claude-3")


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _request_id()}
    return web.json_response(body, status=status, headers={"request-id": body["request_id"], **(headers or {})})


def count_input_tokens(body: dict[str, Any]) -> int:
    """This upstream's exact count: a token per 4 bytes of the compact JSON of system, messages
    and tools, plus 7 for the request's framing (what a client cannot guess without asking)."""
    counted = [body.get("system"), body.get("messages"), body.get("tools")]
    return len(json.dumps(counted, separators=(",", ":"))) // 4 + 7


def echo_reply(body: dict[str, Any]) -> Reply:
    said = last_user_text(body.get("messages") or [])
    blocks = [text(f"echo: {said}")]
    thinking_config = body.get("thinking") or {}
    if thinking_config.get("type") in ("enabled", "adaptive"):
        blocks.insert(0, thinking(f"The user said {said!r}; I will echo it."))
    return Reply(blocks=blocks)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [block.get("text", "") for block in content if isinstance(block, dict) and block.get("type") == "text"]
        if texts:
            return " ".join(texts)
    return ""


def build_message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The complete Message this reply stands for (blocks given ids, signatures and data)."""
    content = []
    for position, block in enumerate(reply.blocks):
        kind = block["type"]
        if kind == "text":
            content.append({"type": "text", "text": block["text"]})
        elif kind == "thinking":
            content.append({"type": "thinking", "thinking": block["thinking"], "signature": rules.sign(block["thinking"])})
        elif kind == "redacted_thinking":
            content.append({"type": "redacted_thinking", "data": rules.redacted_data(uuid.uuid4().hex)})
        elif kind == "tool_use":
            content.append({"type": "tool_use", "id": block.get("id") or f"toolu_{uuid.uuid4().hex[:20]}",
                            "name": block["name"], "input": block["input"]})
    stop_reason = reply.stop_reason or ("tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn")
    output_chars = sum(len(b.get("text") or b.get("thinking") or json.dumps(b.get("input", ""))) for b in content)
    usage = {"input_tokens": len(json.dumps(body.get("messages"))) // 4 + 1, "output_tokens": output_chars // 4 + 1,
             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **reply.usage}
    return {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": stop_reason, "stop_sequence": reply.stop_sequence, "usage": usage}


def stream_events(message: dict[str, Any], reply: Reply) -> Iterator[tuple[str, dict[str, Any]]]:
    """The documented event flow: message_start, ping, per block start/deltas/stop,
    message_delta, message_stop. Produced lazily, so a long stream costs no memory here."""
    counter = itertools.count(1)

    def with_pings(events: Iterator[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for event in events:
            yield event
            if reply.ping_every and next(counter) % reply.ping_every == 0:
                yield "ping", {"type": "ping"}

    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                                 "stop_sequence": None, "usage": start_usage}}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        yield from with_pings(_block_events(index, block, reply.chunk_size))
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                            "usage": {"output_tokens": usage["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


def _pieces(value: str, size: int) -> Iterator[str]:
    for start in range(0, len(value), max(1, size)):
        yield value[start:start + size]


def _block_events(index: int, block: dict[str, Any], size: int) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = block["type"]
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = ({"type": "text_delta", "text": piece} for piece in _pieces(block["text"], size))
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = itertools.chain(
            ({"type": "thinking_delta", "thinking": piece} for piece in _pieces(block["thinking"], size)),
            [{"type": "signature_delta", "signature": block["signature"]}])
    elif kind == "redacted_thinking":
        start, deltas = dict(block), iter(())
    else:  # tool_use: the input arrives as partial JSON, opened by an empty fragment as the API does
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        arguments = json.dumps(block["input"]) if block["input"] else ""
        deltas = itertools.chain([{"type": "input_json_delta", "partial_json": ""}],
                                 ({"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, size)))
    yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
