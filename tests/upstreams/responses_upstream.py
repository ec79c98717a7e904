"""A recording test upstream speaking OpenAI's Responses API (OpenAI /v1/responses, or vLLM /
LiteLLM answering it).

Written to the documented wire format, checked against the official `openai` SDK's types
(`openai/types/responses/*`, openai-python) and against responses recorded from the live API
(the SDK's `tests/lib/responses` snapshot and recorded SSE streams):

  POST   {base}/responses                       a `response` object, or with `stream: true` an SSE
                                                stream of `event: <type>` / `data: <json>` frames
                                                (no `[DONE]`), every event with `sequence_number`
  GET    {base}/responses/{id}                  a stored response
  DELETE {base}/responses/{id}                  `{"id", "object": "response", "deleted": true}`
  GET    {base}/responses/{id}/input_items      `{"object": "list", "data", "first_id", "last_id",
                                                "has_more"}`; `limit` (1-100, default 20),
                                                `order` (default `desc`), `after`
  GET    {base}/models                          `{"object": "list", "data": [model...]}`

Output items are emitted in this order: a `reasoning` item (knob `reasoning`), a `message`
with one `output_text` part (knob `reply`), `function_call` items (knob `tool_call`), then
`custom_tool_call` items (knob `custom_tool_call`). When a tool call is scripted the message
is left out unless `text_with_tools` is set.

Responses created with `store` other than false are kept in `stored`, so retrieve/delete/
input_items and `previous_response_id` work; an unknown `previous_response_id` is a 400
`previous_response_not_found`, as on OpenAI. Errors use OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}`. With `api_key` set, requests need
`Authorization: Bearer <api_key>` (401 `invalid_api_key` otherwise).

Every request (GET /models included) is appended to `requests`; `last` and `client_requests`
skip GET /models (a proxy's background catalog fetch). Every SSE event payload sent is in
`emitted`.
"""
from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from tests.upstreams.loopback import serve

DEFAULT_MODELS = [{"id": "gpt-test", "object": "model", "created": 1700000000, "owned_by": "test"}]

# Default error envelopes per status, as OpenAI sends them.
_DEFAULT_ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "injected failure 400", "type": "invalid_request_error", "param": None, "code": None},
    401: {"message": "Incorrect API key provided: sk-inj***ted. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.",
          "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
    403: {"message": "injected failure 403", "type": "invalid_request_error", "param": None,
          "code": "unsupported_country_region_territory"},
    404: {"message": "injected failure 404", "type": "invalid_request_error", "param": None, "code": None},
    429: {"message": "Rate limit reached for gpt-test in organization org-test on tokens per min (TPM): "
                     "Limit 30000, Used 30000, Requested 100. Please try again in 200ms.",
          "type": "tokens", "param": None, "code": "rate_limit_exceeded"},
    500: {"message": "The server had an error while processing your request. Sorry about that!",
          "type": "server_error", "param": None, "code": None},
    503: {"message": "The engine is currently overloaded, please try again later.",
          "type": "server_error", "param": None, "code": None},
}

_ROUTE = re.compile(r"/responses(?:/(?P<id>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_ALNUM = string.ascii_letters + string.digits


@dataclass
class Received:
    method: str
    path: str
    query: MultiDict
    headers: CIMultiDict
    body: bytes
    client_port: int = 0  # the client's side of the TCP connection: equal ports mean a reused connection

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None for an empty body)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Stored:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's: `resp_`, `msg_`, `fc_`, `rs_`, `ctc_` + 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class ResponsesUpstream:
    """Behaviour knobs; change them between requests."""

    # The assistant text; streamed as `chunks`, or split into words. None: no message item.
    reply: str | None = "hello from upstream"
    chunks: list[str] | None = None
    chunk_delay: float = 0.0  # seconds before each delta event
    delay_before_headers: float = 0.0
    # {"name", "arguments" (str or JSON-able)}, or a list of them: function_call output items.
    tool_call: dict[str, Any] | list[dict[str, Any]] | None = None
    # {"name", "input" (str)}, or a list of them: custom_tool_call output items.
    custom_tool_call: dict[str, Any] | list[dict[str, Any]] | None = None
    text_with_tools: bool = False  # keep the message item when a tool call is scripted
    # Reasoning summary text: a reasoning item comes first. Its `encrypted_content` (this, or a
    # made-up token) is sent when `include` has "reasoning.encrypted_content".
    reasoning: str | None = None
    encrypted_content: str | None = None
    # Usage. None: derived from the request / the output.
    input_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int | None = None
    output_tokens: int | None = None
    # status "incomplete" with incomplete_details {"reason": incomplete_reason}; streams end
    # with `response.incomplete`.
    incomplete: bool = False
    incomplete_reason: str = "max_output_tokens"
    # Streams only: after this many delta events, send `response.failed` and end the stream.
    fail_mid_stream: int | None = None
    fail_mid_stream_error: dict[str, Any] = field(default_factory=lambda: {
        "code": "server_error", "message": "An error occurred while processing your request."})
    # Answer every request (after auth) with this status and `fail_body` (default: OpenAI's envelope).
    fail_status: int | None = None
    fail_body: Any = None
    fail_headers: dict[str, str] = field(default_factory=dict)
    # Custom behaviour for one test: an aiohttp handler that replaces the built-in one.
    override: Callable[[web.Request], Any] | None = None
    api_key: str | None = None
    # The model the response reports (OpenAI answers with the dated snapshot); None: as requested.
    model: str | None = None
    # Random padding on delta events, as OpenAI sends unless stream_options.include_obfuscation=false.
    obfuscation: bool = True
    # `object` of the DELETE answer; OpenAI's API reference shows "response" (some compatible
    # servers answer "response.deleted").
    deleted_object: str = "response"
    models: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_MODELS))
    requests: list[Received] = field(default_factory=list)
    stored: dict[str, Stored] = field(default_factory=dict)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> "ResponsesUpstream":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, port = await serve(app, handler_cancellation=True, access_log=None)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def client_requests(self) -> list[Received]:
        """Requests other than GET .../models (a proxy's background catalog fetch)."""
        return [r for r in self.requests if not (r.method == "GET" and r.path.endswith("/models"))]

    @property
    def last(self) -> Received:
        return self.client_requests[-1]

    # ---- dispatch --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Received(request.method, request.path, MultiDict(request.query),
                                      CIMultiDict(request.headers), body, peer[1] if peer else 0))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.override is not None:
                return await self.override(request)
            if self.delay_before_headers:
                await asyncio.sleep(self.delay_before_headers)
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            if self.fail_status:
                payload = self.fail_body if self.fail_body is not None else {
                    "error": dict(_DEFAULT_ERRORS.get(self.fail_status, {
                        "message": f"injected failure {self.fail_status}", "type": "server_error",
                        "param": None, "code": None}))}
                text = payload if isinstance(payload, str) else json.dumps(payload)
                return web.Response(status=self.fail_status, text=text, content_type="application/json",
                                    headers={"x-request-id": _request_id(), **self.fail_headers})
            return await self._route(request, body)
        finally:
            self.inflight -= 1

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header:
            return _json_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                                    "or as the password field (with blank username) if you're accessing the API "
                                    "from your browser and are prompted for a username and password. You can "
                                    "obtain an API key from https://platform.openai.com/account/api-keys.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            shown = token.strip()
            masked = f"{shown[:3]}*****{shown[-4:]}" if len(shown) > 8 else "*****"
            return _json_error(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                                    "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        return None

    async def _route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.endswith("/models") and method == "GET":
            return _json({"object": "list", "data": self.models})
        match = _ROUTE.search(path)
        if match is None:
            return _json_error(404, f"Invalid URL ({method} {path})")
        response_id, sub = match.group("id"), match.group("sub")
        if response_id is None:
            if method != "POST":
                return _json_error(405 if method != "GET" else 404, f"Invalid URL ({method} {path})")
            return await self._create(request, body)
        stored = self.stored.get(response_id)
        if sub is None and method in ("GET", "DELETE") or sub == "input_items" and method == "GET":
            if stored is None:
                return _json_error(404, f"Response with id '{response_id}' not found.")
            if sub == "input_items":
                return self._input_items(request, stored)
            if method == "GET":
                return _json(stored.response)
            del self.stored[response_id]
            return _json({"id": response_id, "object": self.deleted_object, "deleted": True})
        return _json_error(404, f"Invalid URL ({method} {path})")

    # ---- create ----------------------------------------------------------------------------------

    async def _create(self, request: web.Request, body: bytes) -> web.StreamResponse:
        try:
            data = json.loads(body)
        except ValueError:
            return _json_error(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                                    "payload, but what was sent was not valid JSON. If you have trouble figuring "
                                    "out how to fix this, please contact us through our help center at "
                                    "help.openai.com.)")
        if not isinstance(data, dict):
            return _json_error(400, "Invalid type for request body: expected an object.", code="invalid_type")
        if not data.get("model"):
            return _json_error(400, "Missing required parameter: 'model'.", param="model",
                               code="missing_required_parameter")
        previous = data.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            return _json_error(400, f"Previous response with id '{previous}' not found.",
                               param="previous_response_id", code="previous_response_not_found")
        response = self.build_response(data)
        input_items = _input_items_of(data.get("input"))
        if data.get("stream"):
            return await self._stream(request, data, response, input_items)
        self._keep(data, response, input_items)
        return _json(response)

    def _keep(self, data: dict[str, Any], response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        if data.get("store", True) is not False:
            self.stored[response["id"]] = Stored(copy.deepcopy(response), input_items)

    def _pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return _words(self.reply or "")

    def build_response(self, data: dict[str, Any]) -> dict[str, Any]:
        """The final response object for a create request (status completed or incomplete)."""
        include = data.get("include") or []
        output: list[dict[str, Any]] = []
        tool_calls = _as_list(self.tool_call)
        custom_calls = _as_list(self.custom_tool_call)
        status_item = "incomplete" if self.incomplete else "completed"
        if self.reasoning is not None:
            item: dict[str, Any] = {"id": new_id("rs"), "type": "reasoning",
                                    "summary": [{"type": "summary_text", "text": self.reasoning}] if self.reasoning
                                    else []}
            if "reasoning.encrypted_content" in include:
                item["encrypted_content"] = self.encrypted_content or "gAAAAAB" + secrets.token_urlsafe(96)
            output.append(item)
        if self.reply is not None and (self.text_with_tools or not (tool_calls or custom_calls)):
            output.append({"id": new_id("msg"), "type": "message", "status": status_item,
                           "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                                        "text": "".join(self._pieces())}],
                           "role": "assistant"})
        function_tools = [t for t in data.get("tools") or [] if t.get("type") == "function"]
        for call in tool_calls:
            name = call.get("name") or (function_tools[0]["name"] if function_tools else "tool")
            arguments = call.get("arguments", "{}")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, separators=(",", ":"))
            output.append({"id": call.get("id") or new_id("fc"), "type": "function_call", "status": "completed",
                           "arguments": arguments, "call_id": call.get("call_id") or new_call_id(), "name": name})
        for call in custom_calls:
            output.append({"id": call.get("id") or new_id("ctc"), "type": "custom_tool_call",
                           "status": "completed", "call_id": call.get("call_id") or new_call_id(),
                           "input": call.get("input", ""), "name": call["name"]})
        now = int(time.time())
        response = {
            "id": new_id("resp"), "object": "response", "created_at": now,
            "status": "incomplete" if self.incomplete else "completed",
            "background": bool(data.get("background", False)), "error": None,
            "incomplete_details": {"reason": self.incomplete_reason} if self.incomplete else None,
            "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"), "max_tool_calls": data.get("max_tool_calls"),
            "model": self.model or data["model"], "output": output,
            "parallel_tool_calls": data.get("parallel_tool_calls", True),
            "previous_response_id": data.get("previous_response_id"),
            "prompt_cache_key": data.get("prompt_cache_key"),
            "reasoning": {"effort": None, "summary": None, **(data.get("reasoning") or {})},
            "safety_identifier": data.get("safety_identifier"),
            "service_tier": data.get("service_tier") if data.get("service_tier") not in (None, "auto") else "default",
            "store": data.get("store", True),
            "temperature": data.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium", **(data.get("text") or {})},
            "tool_choice": data.get("tool_choice", "auto"),
            "tools": [_echo_tool(tool) for tool in data.get("tools") or []],
            "top_logprobs": data.get("top_logprobs", 0), "top_p": data.get("top_p", 1.0),
            "truncation": data.get("truncation", "disabled"),
            "usage": self._usage(data, output),
            "user": data.get("user"), "metadata": data.get("metadata") or {},
            "completed_at": None if self.incomplete else now,
        }
        return response

    def _usage(self, data: dict[str, Any], output: list[dict[str, Any]], emitted_deltas: int | None = None
               ) -> dict[str, Any]:
        input_tokens = self.input_tokens
        if input_tokens is None:
            text = json.dumps(data.get("input", "")) + (data.get("instructions") or "")
            input_tokens = max(1, len(text) // 4)
        reasoning_tokens = self.reasoning_tokens
        if reasoning_tokens is None:
            reasoning_tokens = len(_words(self.reasoning)) if self.reasoning else 0
        if emitted_deltas is not None:
            output_tokens = emitted_deltas + reasoning_tokens
        elif self.output_tokens is not None:
            output_tokens = self.output_tokens
        else:
            visible = sum(len(self._pieces()) for item in output if item["type"] == "message")
            visible += sum(len(_split(item["arguments"])) for item in output if item["type"] == "function_call")
            visible += sum(len(_split(item["input"])) for item in output if item["type"] == "custom_tool_call")
            output_tokens = visible + reasoning_tokens
        return {"input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": self.cached_tokens,
                                         "cache_write_tokens": self.cache_write_tokens},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                "total_tokens": input_tokens + output_tokens}

    # ---- stream ----------------------------------------------------------------------------------

    async def _stream(self, request: web.Request, data: dict[str, Any], final: dict[str, Any],
                      input_items: list[dict[str, Any]]) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                             "Cache-Control": "no-cache", "x-request-id": _request_id()})
        await stream.prepare(request)
        obfuscate = self.obfuscation and (data.get("stream_options") or {}).get("include_obfuscation", True)
        sequence = itertools.count()
        partial: list[dict[str, Any]] = []  # output as streamed so far
        deltas = 0

        def lifecycle(status: str, **changes: Any) -> dict[str, Any]:
            snapshot = copy.deepcopy(final)
            snapshot.update(status=status, output=copy.deepcopy(partial), usage=None, completed_at=None,
                            incomplete_details=None)
            snapshot.update(changes)
            return snapshot

        async def emit(event_type: str, **fields: Any) -> None:
            payload = {"type": event_type, "sequence_number": next(sequence), **fields}
            self.emitted.append(payload)
            await stream.write(b"event: " + event_type.encode() + b"\ndata: "
                               + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")

        async def delta(event_type: str, **fields: Any) -> bool:
            """Send one delta event; True when the stream must now fail."""
            nonlocal deltas
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if obfuscate:
                fields["obfuscation"] = secrets.token_urlsafe(8)[:1 + deltas % 11]
            await emit(event_type, **fields)
            deltas += 1
            return self.fail_mid_stream is not None and deltas >= self.fail_mid_stream

        async def fail() -> web.StreamResponse:
            failed = lifecycle("failed", error=dict(self.fail_mid_stream_error),
                               usage=self._usage(data, partial, emitted_deltas=deltas))
            self._keep(data, failed, input_items)
            await emit("response.failed", response=failed)
            return stream

        created = lifecycle("in_progress")
        self._keep(data, created, input_items)
        await emit("response.created", response=created)
        await emit("response.in_progress", response=lifecycle("in_progress"))
        if self.fail_mid_stream is not None and self.fail_mid_stream <= 0:
            return await fail()

        for index, done_item in enumerate(final["output"]):
            kind = done_item["type"]
            item_id = done_item["id"]
            if kind == "reasoning":
                item = {"id": item_id, "type": "reasoning", "summary": []}
                partial.append(item)
                await emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
                for summary_index, summary in enumerate(done_item["summary"]):
                    item["summary"].append({"type": "summary_text", "text": ""})
                    await emit("response.reasoning_summary_part.added", item_id=item_id, output_index=index,
                               summary_index=summary_index, part={"type": "summary_text", "text": ""})
                    for piece in _words(summary["text"]):
                        item["summary"][summary_index]["text"] += piece
                        if await delta("response.reasoning_summary_text.delta", item_id=item_id,
                                       output_index=index, summary_index=summary_index, delta=piece):
                            return await fail()
                    await emit("response.reasoning_summary_text.done", item_id=item_id, output_index=index,
                               summary_index=summary_index, text=summary["text"])
                    await emit("response.reasoning_summary_part.done", item_id=item_id, output_index=index,
                               summary_index=summary_index, part={"type": "summary_text", "text": summary["text"]})
            elif kind == "message":
                item = {"id": item_id, "type": "message", "status": "in_progress", "content": [],
                        "role": "assistant"}
                partial.append(item)
                await emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                item["content"].append(part)
                await emit("response.content_part.added", item_id=item_id, output_index=index, content_index=0,
                           part=copy.deepcopy(part))
                for piece in self._pieces():
                    part["text"] += piece
                    if await delta("response.output_text.delta", item_id=item_id, output_index=index,
                                   content_index=0, delta=piece, logprobs=[]):
                        return await fail()
                text = done_item["content"][0]["text"]
                await emit("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                           text=text, logprobs=[])
                await emit("response.content_part.done", item_id=item_id, output_index=index, content_index=0,
                           part=copy.deepcopy(done_item["content"][0]))
            elif kind == "function_call":
                item = {**done_item, "status": "in_progress", "arguments": ""}
                partial.append(item)
                await emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
                for piece in _split(done_item["arguments"]):
                    item["arguments"] += piece
                    if await delta("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                                   delta=piece):
                        return await fail()
                await emit("response.function_call_arguments.done", item_id=item_id, output_index=index,
                           arguments=done_item["arguments"])
            elif kind == "custom_tool_call":
                item = {**done_item, "status": "in_progress", "input": ""}
                partial.append(item)
                await emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
                for piece in _split(done_item["input"]):
                    item["input"] += piece
                    if await delta("response.custom_tool_call_input.delta", item_id=item_id, output_index=index,
                                   delta=piece):
                        return await fail()
                await emit("response.custom_tool_call_input.done", item_id=item_id, output_index=index,
                           input=done_item["input"])
            partial[index] = copy.deepcopy(done_item)
            await emit("response.output_item.done", output_index=index, item=copy.deepcopy(done_item))

        self._keep(data, final, input_items)
        await emit("response.incomplete" if final["status"] == "incomplete" else "response.completed",
                   response=copy.deepcopy(final))
        return stream

    # ---- input items -----------------------------------------------------------------------------

    def _input_items(self, request: web.Request, stored: Stored) -> web.Response:
        query = request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            return _json_error(400, f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                               param="order", code="invalid_value")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            return _json_error(400, "Invalid 'limit': expected an integer.", param="limit", code="invalid_type")
        if limit < 1:
            return _json_error(400, f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but "
                                    f"got {limit} instead.", param="limit", code="integer_below_min_value")
        if limit > 100:
            return _json_error(400, f"Invalid 'limit': integer above maximum value. Expected a value <= 100, but "
                                    f"got {limit} instead.", param="limit", code="integer_above_max_value")
        items = list(stored.input_items) if order == "asc" else list(reversed(stored.input_items))
        after = query.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return _json({"object": "list", "data": page,
                      "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
                      "has_more": len(items) > limit})


# ---- helpers ------------------------------------------------------------------------------------------

def _as_list(value: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


def _words(text: str) -> list[str]:
    if not text:
        return []
    words = text.split(" ")
    return [words[0]] + [" " + word for word in words[1:]]


def _split(text: str, size: int = 8) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or []


def _request_id() -> str:
    return "req_" + secrets.token_hex(16)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json",
                        headers={"x-request-id": _request_id()})


def _json_error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                code: str | None = None) -> web.Response:
    return _json(error_body(message, type_, param, code), status)


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A request tool as the response echoes it, with its defaults filled in."""
    if tool.get("type") == "function":
        return {"type": "function", "name": tool.get("name"), "description": tool.get("description"),
                "parameters": tool.get("parameters"), "strict": tool.get("strict", True)}
    if tool.get("type") == "custom":
        return {"type": "custom", "name": tool.get("name"), "description": tool.get("description"),
                "format": tool.get("format") or {"type": "text"}}
    return dict(tool)


def _input_items_of(value: Any) -> list[dict[str, Any]]:
    """The request's `input` as stored input items (what GET .../input_items lists), oldest first."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items: list[dict[str, Any]] = []
    for raw in value:
        item = dict(raw)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            content = item.get("content", [])
            if role == "assistant":
                if isinstance(content, str):
                    content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": content}]
                items.append({"id": item.get("id") or new_id("msg"), "type": "message",
                              "status": item.get("status", "completed"), "content": content, "role": role})
            else:
                if isinstance(content, str):
                    content = [{"type": "input_text", "text": content}]
                items.append({"id": item.get("id") or new_id("msg"), "type": "message", "role": role,
                              "status": "completed", "content": content})
            continue
        prefix = {"function_call": "fc", "function_call_output": "fco", "reasoning": "rs",
                  "custom_tool_call": "ctc", "custom_tool_call_output": "ctco"}.get(kind, "item")
        item.setdefault("id", new_id(prefix))
        if kind != "reasoning":
            item.setdefault("status", "completed")
        items.append(item)
    return items
