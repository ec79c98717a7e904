"""A tiny scripted LLM server for driving real coding agents in tests.

It listens on 127.0.0.1 (port 0), records every request it gets (method, path,
query, headers, raw body, parsed JSON) and answers:

* ``POST /v1/responses``  -- the OpenAI Responses API, streamed as SSE when the
  request says ``"stream": true`` (always, for Codex) or as one JSON object.
* ``POST /v1/messages``   -- the Anthropic Messages API, streamed or not.
* ``POST /v1/messages/count_tokens`` -- ``{"input_tokens": N}``.
* ``POST /v1/chat/completions`` -- OpenAI Chat Completions, streamed or not: the upstream a
  translated Responses or Messages request reaches. A custom tool call goes out as a function
  call whose one string argument is ``input``, as the proxy declares custom tools to chat models.
* ``GET  /v1/models``     -- a model list (both the OpenAI ``data`` shape and
  Codex's ``models`` shape in one body).
* anything else           -- recorded, answered 404 with an error body.

Replies are scripted per API as a queue of *turns*; a turn is a list of output
items built with the helpers below::

    rec = Recorder()
    rec.responses.script(
        [function_call("shell", {"command": ["ls"]})],
        [text("all done")],
    )
    rec.messages.script([tool_use("Bash", {"command": "ls"})], [text("done")])

Which requests consume a scripted turn is decided by the queue's ``predicate``
(default: the request declares ``tools``) so that an agent's side requests --
Claude Code's title/topic calls with the small model, for example -- do not eat
the script. Requests that do not match, and matching requests after the script
ran out, get the queue's ``default`` turn (``[text("OK")]``).

Wire formats follow the OpenAI "Streaming events" reference for the Responses
API (every event carries ``type`` and an increasing ``sequence_number``; no
``[DONE]`` sentinel) and Anthropic's "Streaming Messages" guide (message_start,
ping, content_block_start/delta/stop per block, message_delta, message_stop).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from aiohttp import web

from tests.upstreams.loopback import serve

# ---------------------------------------------------------------- output items


@dataclass
class Text:
    text: str


@dataclass
class FunctionCall:
    """Responses API ``function_call`` (or Anthropic ``tool_use``, see ToolUse)."""

    name: str
    arguments: Any  # dict -> json.dumps'ed, str -> sent as is
    call_id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class CustomToolCall:
    """Responses API ``custom_tool_call`` (freeform tools, e.g. Codex apply_patch)."""

    name: str
    input: str
    call_id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])


@dataclass
class ToolUse:
    """Anthropic ``tool_use`` content block."""

    name: str
    input: dict
    id: str = field(default_factory=lambda: "toolu_" + uuid.uuid4().hex[:24])


def text(value: str) -> Text:
    return Text(value)


def function_call(name: str, arguments: Any, call_id: str | None = None) -> FunctionCall:
    return FunctionCall(name, arguments, call_id) if call_id else FunctionCall(name, arguments)


def custom_tool_call(name: str, input: str, call_id: str | None = None) -> CustomToolCall:
    return CustomToolCall(name, input, call_id) if call_id else CustomToolCall(name, input)


def tool_use(name: str, input: dict, id: str | None = None) -> ToolUse:
    return ToolUse(name, input, id) if id else ToolUse(name, input)


Turn = list  # a list of Text / FunctionCall / CustomToolCall / ToolUse


def _has_tools(req: "Recorded") -> bool:
    return bool(isinstance(req.json, dict) and req.json.get("tools"))


class Script:
    """A queue of scripted turns for one API."""

    def __init__(self, predicate: Callable[["Recorded"], bool] = _has_tools,
                 default: Turn | None = None):
        self.turns: deque[Turn] = deque()
        self.predicate = predicate
        self.default: Turn = default if default is not None else [Text("OK")]
        self.served: list[tuple["Recorded", Turn]] = []

    def script(self, *turns: Iterable | Callable[["Recorded"], Iterable]) -> "Script":
        """Queue turns. A turn may be a callable taking the Recorded request and
        returning the items -- to answer with a tool the request declared."""
        for t in turns:
            self.turns.append(t if callable(t) else list(t))
        return self

    def next_turn(self, req: "Recorded") -> Turn:
        if self.turns and self.predicate(req):
            turn = self.turns.popleft()
            if callable(turn):
                turn = turn(req)
            turn = list(turn)
        else:
            turn = list(self.default)
        self.served.append((req, turn))
        return turn

    @property
    def exhausted(self) -> bool:
        return not self.turns


# ---------------------------------------------------------------- recording


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict  # lower-cased names
    body: bytes
    json: Any
    at: float

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def summary(self) -> dict:
        return {"method": self.method, "path": self.path, "query": self.query,
                "headers": self.headers, "json": self.json}


# ---------------------------------------------------------------- the server


class Recorder:
    def __init__(self, *, chunk_size: int = 8, delay: float = 0.0):
        self.requests: list[Recorded] = []
        self.responses = Script()
        self.messages = Script()
        self.chat = Script()
        self.chunk_size = chunk_size  # characters per text/argument delta
        self.delay = delay  # seconds between SSE events (0 = none)
        self.models = ["test-model"]
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._ids = itertools.count(1)

    # -- lifecycle

    async def start(self) -> "Recorder":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner, self.port = await serve(app, access_log=None)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "Recorder":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url_v1(self) -> str:
        return self.origin + "/v1"

    # -- queries

    def find(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)]

    def responses_requests(self) -> list[Recorded]:
        return self.find("POST", "/v1/responses")

    def messages_requests(self) -> list[Recorded]:
        return self.find("POST", "/v1/messages")

    def chat_requests(self) -> list[Recorded]:
        return self.find("POST", "/v1/chat/completions")

    def dump(self) -> str:
        return json.dumps([r.summary() for r in self.requests], indent=1, default=str)

    # -- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Recorded(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
            at=time.time(),
        )
        self.requests.append(rec)

        path = request.path.rstrip("/")
        if request.method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(request, rec)
        if request.method == "POST" and path.endswith("/responses"):
            return await self._responses(request, rec)
        if request.method == "POST" and path.endswith("/messages/count_tokens"):
            return web.json_response({"input_tokens": max(1, len(body) // 4)})
        if request.method == "POST" and path.endswith("/messages"):
            return await self._messages(request, rec)
        if request.method == "GET" and path.endswith("/models"):
            return web.json_response(self._models_body())
        return web.json_response(
            {"error": {"type": "not_found_error", "message": f"no route {request.method} {request.path}"}},
            status=404,
        )

    def _models_body(self) -> dict:
        now = int(time.time())
        return {
            "object": "list",
            # OpenAI / Anthropic list shape
            "data": [{"id": m, "object": "model", "created": now, "owned_by": "recorder",
                      "type": "model", "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                     for m in self.models],
            "has_more": False,
            "first_id": self.models[0] if self.models else None,
            "last_id": self.models[-1] if self.models else None,
            # Codex's own /models shape (it ignores unknown fields)
            "models": [],
        }

    # -- SSE plumbing

    async def _sse_start(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
        })
        await resp.prepare(request)
        return resp

    async def _sse_send(self, resp: web.StreamResponse, event: str, data: dict) -> None:
        await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
        if self.delay:
            await asyncio.sleep(self.delay)

    def _chunks(self, s: str) -> list[str]:
        n = max(1, self.chunk_size)
        return [s[i:i + n] for i in range(0, len(s), n)] or [""]

    # -- Responses API

    async def _responses(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        turn = self.responses.next_turn(rec)
        rid = f"resp_{next(self._ids):04d}{uuid.uuid4().hex[:20]}"
        model = body.get("model", "test-model")
        base = {
            "id": rid, "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "background": False, "error": None,
            "incomplete_details": None, "instructions": None, "max_output_tokens": None,
            "model": model, "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", False), "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": None, "metadata": {},
        }
        usage = {"input_tokens": max(1, len(rec.body) // 4), "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]

        done_items = [self._response_item_final(item, i) for i, item in enumerate(turn)]
        final = dict(base, status="completed", output=done_items, usage=usage)

        if not body.get("stream"):
            return web.json_response(final)

        resp = await self._sse_start(request)
        seq = itertools.count(0)

        async def send(kind: str, **fields: Any) -> None:
            await self._sse_send(resp, kind, {"type": kind, "sequence_number": next(seq), **fields})

        await send("response.created", response=base)
        await send("response.in_progress", response=base)
        for idx, (item, done) in enumerate(zip(turn, done_items)):
            iid = done["id"]
            if isinstance(item, Text):
                await send("response.output_item.added", output_index=idx,
                           item={"id": iid, "type": "message", "status": "in_progress",
                                 "role": "assistant", "content": []})
                await send("response.content_part.added", item_id=iid, output_index=idx, content_index=0,
                           part={"type": "output_text", "text": "", "annotations": []})
                for piece in self._chunks(item.text):
                    await send("response.output_text.delta", item_id=iid, output_index=idx,
                               content_index=0, delta=piece, logprobs=[])
                await send("response.output_text.done", item_id=iid, output_index=idx, content_index=0,
                           text=item.text, logprobs=[])
                await send("response.content_part.done", item_id=iid, output_index=idx, content_index=0,
                           part={"type": "output_text", "text": item.text, "annotations": []})
            elif isinstance(item, FunctionCall):
                await send("response.output_item.added", output_index=idx,
                           item=dict(done, status="in_progress", arguments=""))
                for piece in self._chunks(item.arguments_json):
                    await send("response.function_call_arguments.delta", item_id=iid, output_index=idx,
                               delta=piece)
                await send("response.function_call_arguments.done", item_id=iid, output_index=idx,
                           name=item.name, arguments=item.arguments_json)
            elif isinstance(item, CustomToolCall):
                await send("response.output_item.added", output_index=idx,
                           item=dict(done, status="in_progress", input=""))
                for piece in self._chunks(item.input):
                    await send("response.custom_tool_call_input.delta", item_id=iid, output_index=idx,
                               delta=piece)
                await send("response.custom_tool_call_input.done", item_id=iid, output_index=idx,
                           input=item.input)
            else:
                raise TypeError(f"not a Responses API item: {item!r}")
            await send("response.output_item.done", output_index=idx, item=done)
        await send("response.completed", response=final)
        await resp.write_eof()
        return resp

    def _response_item_final(self, item: Any, idx: int) -> dict:
        n = next(self._ids)
        if isinstance(item, Text):
            return {"id": f"msg_{n:04d}{uuid.uuid4().hex[:16]}", "type": "message", "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": item.text, "annotations": []}]}
        if isinstance(item, FunctionCall):
            return {"id": f"fc_{n:04d}{uuid.uuid4().hex[:16]}", "type": "function_call", "status": "completed",
                    "call_id": item.call_id, "name": item.name, "arguments": item.arguments_json}
        if isinstance(item, CustomToolCall):
            return {"id": f"ctc_{n:04d}{uuid.uuid4().hex[:16]}", "type": "custom_tool_call",
                    "status": "completed", "call_id": item.call_id, "name": item.name, "input": item.input}
        if isinstance(item, ToolUse):  # allow the Anthropic helper in a Responses script
            return self._response_item_final(FunctionCall(item.name, item.input, item.id), idx)
        raise TypeError(f"not a Responses API item: {item!r}")

    # -- Anthropic Messages API

    async def _messages(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        turn = [ToolUse(i.name, i.arguments if isinstance(i.arguments, dict) else json.loads(i.arguments),
                        i.call_id.replace("call_", "toolu_")) if isinstance(i, FunctionCall) else i
                for i in self.messages.next_turn(rec)]
        mid = f"msg_{next(self._ids):04d}{uuid.uuid4().hex[:20]}"
        model = body.get("model", "test-model")
        stop_reason = "tool_use" if any(isinstance(i, ToolUse) for i in turn) else "end_turn"
        in_tokens = max(1, len(rec.body) // 4)
        blocks = []
        for item in turn:
            if isinstance(item, Text):
                blocks.append({"type": "text", "text": item.text})
            elif isinstance(item, ToolUse):
                blocks.append({"type": "tool_use", "id": item.id, "name": item.name, "input": item.input})
            else:
                raise TypeError(f"not an Anthropic content block: {item!r}")
        usage = {"input_tokens": in_tokens, "output_tokens": 5,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

        if not body.get("stream"):
            return web.json_response({
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": blocks,
                "stop_reason": stop_reason, "stop_sequence": None, "usage": usage,
            })

        resp = await self._sse_start(request)

        async def send(kind: str, **fields: Any) -> None:
            await self._sse_send(resp, kind, {"type": kind, **fields})

        await send("message_start", message={
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": dict(usage, output_tokens=1)})
        await send("ping")
        for idx, item in enumerate(turn):
            if isinstance(item, Text):
                await send("content_block_start", index=idx, content_block={"type": "text", "text": ""})
                for piece in self._chunks(item.text):
                    await send("content_block_delta", index=idx, delta={"type": "text_delta", "text": piece})
            else:
                await send("content_block_start", index=idx,
                           content_block={"type": "tool_use", "id": item.id, "name": item.name, "input": {}})
                for piece in self._chunks(json.dumps(item.input)):
                    await send("content_block_delta", index=idx,
                               delta={"type": "input_json_delta", "partial_json": piece})
            await send("content_block_stop", index=idx)
        await send("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": None},
                   usage={"output_tokens": 5})
        await send("message_stop")
        await resp.write_eof()
        return resp


    # -- OpenAI Chat Completions

    async def _chat(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.json if isinstance(rec.json, dict) else {}
        turn = self.chat.next_turn(rec)
        cid = f"chatcmpl-{next(self._ids):04d}{uuid.uuid4().hex[:20]}"
        model = body.get("model", "test-model")
        text_parts = [item.text for item in turn if isinstance(item, Text)]
        calls = [(item.call_id, item.name, _chat_arguments(item)) for item in turn
                 if isinstance(item, (FunctionCall, CustomToolCall))]
        finish = "tool_calls" if calls else "stop"
        usage = {"prompt_tokens": max(1, len(rec.body) // 4), "completion_tokens": 5,
                 "total_tokens": max(1, len(rec.body) // 4) + 5}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(text_parts) or None}
            if calls:
                message["tool_calls"] = [{"id": call_id, "type": "function",
                                          "function": {"name": name, "arguments": arguments}}
                                         for call_id, name, arguments in calls]
            return web.json_response({"id": cid, "object": "chat.completion", "created": int(time.time()),
                                      "model": model, "usage": usage,
                                      "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        resp = await self._sse_start(request)

        async def send(delta: dict, finish_reason: str | None = None, **extra: Any) -> None:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        for piece in self._chunks("".join(text_parts)) if text_parts else ():
            await send({"content": piece})
        for index, (call_id, name, arguments) in enumerate(calls):
            await send({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                        "function": {"name": name, "arguments": ""}}]})
            for piece in self._chunks(arguments):
                await send({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        await send({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                           "choices": [], "usage": usage}
            await resp.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _chat_arguments(item: "FunctionCall | CustomToolCall") -> str:
    if isinstance(item, CustomToolCall):
        return json.dumps({"input": item.input})
    return item.arguments_json


# ---------------------------------------------------------------- in a thread


class ThreadedRecorder:
    """A Recorder running on its own event loop in a daemon thread.

    For synchronous tests that block on an agent subprocess::

        with ThreadedRecorder() as rec:
            rec.responses.script([text("hi")])
            run_codex(rec.base_url_v1, ...)
            assert rec.responses_requests()

    ``trap`` is an EgressTrap on the same loop (see ``trap.proxy_env()``).
    Attribute access is forwarded to the Recorder. Scripts and the request list
    are plain Python objects; the server thread only appends/pops (GIL-atomic).
    """

    def __init__(self, **kwargs: Any):
        import threading

        self._recorder = Recorder(**kwargs)
        self.trap = EgressTrap()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recorder", daemon=True)

    def start(self) -> "ThreadedRecorder":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._recorder.start(), self._loop).result(30)
        asyncio.run_coroutine_threadsafe(self.trap.start(), self._loop).result(30)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.trap.close(), self._loop).result(30)
            asyncio.run_coroutine_threadsafe(self._recorder.close(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()

    def __enter__(self) -> "ThreadedRecorder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)


# ---------------------------------------------------------------- egress trap


class EgressTrap:
    """A fake HTTP(S) proxy that records where an agent tries to go, and refuses.

    Point ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` at ``trap.url`` (with
    ``NO_PROXY=127.0.0.1,localhost`` so the recorder is still reached directly):
    any connection an agent makes to the outside world shows up in ``trap.seen``
    as its request line (``CONNECT api.anthropic.com:443 HTTP/1.1``) and gets a
    403. Runs on the recorder's event loop (``start``/``close`` are coroutines).
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self.port: int | None = None

    async def start(self) -> "EgressTrap":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def proxy_env(self) -> dict[str, str]:
        return {name: self.url for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                            "ALL_PROXY", "all_proxy")}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line:
                self.seen.append(line.decode("latin-1").strip())
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
