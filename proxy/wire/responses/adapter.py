"""OpenAI Responses API upstreams (`format: responses`).

The adapter the transport calls; the work lives next to it:
  request.py      Chat Completions body -> Responses request
  answer.py       a whole Response, usage, finish reasons and failures -> chat shapes
  stream.py       Responses events -> chat.completion.chunk events, event by event
  passthrough.py  Responses clients: their body and the upstream's events as they are
The transport posts to `{base_url}/responses` (a trailing /responses is stripped from the base at
load). Auth, the error envelope and the model list are OpenAI's.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from proxy.config.model import UpstreamConfig
from proxy.core import jsonutil
from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target, upstream_json
from proxy.streams.sse import SSEEvent
from proxy.wire import openai_models
from proxy.wire.openai import error_from_openai_body, record_usage, wants_usage
from proxy.wire.registry import bearer_or_key
from proxy.wire.responses import passthrough
from proxy.wire.responses import stream as responses_stream
from proxy.wire.responses.answer import completion_from_response
from proxy.wire.responses.request import encode_request


class ResponsesAdapter:
    chat_path = "responses"
    models_path = "models"

    def auth_headers(self, upstream: UpstreamConfig, configured: set[str]) -> dict[str, str]:
        return bearer_or_key(upstream)

    def encode_chat(self, request: ProxyRequest, target: Target) -> dict:
        return encode_request(request.body or {}, target.model)

    def decode_chat(self, payload: bytes, request: ProxyRequest, target: Target) -> bytes:
        name = target.upstream.name
        response = upstream_json(payload, name)
        if not isinstance(response, dict) or "output" not in response:
            raise UpstreamProtocolError(name, "answered 200 without a Response object")
        completion = completion_from_response(response, name)
        record_usage(request, completion.get("usage"))
        return jsonutil.dumps(completion)

    def translate_stream(self, events: AsyncIterator[SSEEvent], request: ProxyRequest,
                         target: Target) -> AsyncIterator[SSEEvent]:
        return responses_stream.translate(events, request, target, wants_usage(request))

    # Responses clients are passed through (passthrough.py): their body and its answer as they are.
    native_events = passthrough.RESPONSES_EVENTS
    encode_native = staticmethod(passthrough.encode_native)
    decode_native = staticmethod(passthrough.decode_native)
    watch_native = staticmethod(passthrough.watch_native)

    def decode_error(self, upstream: UpstreamConfig, status: int, payload: bytes,
                     headers: Mapping[str, str]) -> UpstreamError:
        return error_from_openai_body(upstream, status, payload, headers)

    async def list_models(self, upstream: UpstreamConfig, fetch: Callable[..., Awaitable[Any]]) -> tuple[str, list]:
        return await openai_models.list_models(upstream, fetch)

    def probe_body(self, model: str, cap_field: str) -> tuple[str, dict]:
        return openai_models.probe_body(model, cap_field)  # a chat body: the chain encodes it (16 tokens at least)


ADAPTER = ResponsesAdapter()
