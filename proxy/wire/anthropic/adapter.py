"""Anthropic Messages API upstreams (`format: anthropic`).

The adapter the transport calls; the work lives next to it:
  anthropic_request.py   OpenAI chat request -> Messages request (parameters)
  anthropic_messages.py  OpenAI messages -> Messages turns and content blocks
  anthropic_response.py  a whole message, usage, stop reasons and errors -> OpenAI shapes
  anthropic_stream.py    Messages SSE -> chat.completion.chunk events, event by event
The transport posts `encode_chat`'s body to `{base_url}/messages` (the base ends in
/v1); the headers middleware adds `x-api-key` (or bearer) and `anthropic-version`.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from proxy.config.model import UpstreamConfig
from proxy.core import jsonutil
from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent
from proxy.wire.anthropic import caching, models, passthrough
from proxy.wire.anthropic import stream as anthropic_stream
from proxy.wire.anthropic.request import encode_request
from proxy.wire.anthropic.response import decode_message, error_from_body
from proxy.wire.registry import bearer_or_key


class AnthropicAdapter:
    chat_path = "messages"
    models_path = "models"

    def auth_headers(self, upstream: UpstreamConfig, configured: set[str]) -> dict[str, str]:
        version = {} if "anthropic-version" in configured else {"anthropic-version": upstream.anthropic_version}
        return {**version, **bearer_or_key(upstream)}

    def encode_chat(self, request: ProxyRequest, target: Target) -> dict:
        native = encode_request(request.body or {}, target, stream=request.stream)
        if caching.wants_breakpoints(target.upstream.prompt_caching, request.api):
            caching.add_breakpoints(native)
        return native

    def decode_chat(self, payload: bytes, request: ProxyRequest, target: Target) -> bytes:
        try:
            return decode_message(payload, request, target)
        except ValueError:  # values JSON cannot carry back out (nesting, integers past 64 bits)
            raise UpstreamProtocolError(target.upstream.name, "answered with a message the proxy cannot "
                                                              "re-encode") from None

    def translate_stream(self, events: AsyncIterator[SSEEvent], request: ProxyRequest,
                         target: Target) -> AsyncIterator[SSEEvent]:
        return anthropic_stream.translate(events, request, target)

    # Messages clients are passed through (passthrough.py): their body and its answer as they are.
    native_events = passthrough.MESSAGES_EVENTS
    encode_native = staticmethod(passthrough.encode_native)
    decode_native = staticmethod(passthrough.decode_native)
    watch_native = staticmethod(passthrough.watch_native)

    def decode_error(self, upstream: UpstreamConfig, status: int, payload: bytes,
                     headers: Mapping[str, str]) -> UpstreamError:
        try:
            body = jsonutil.loads(payload)
        except ValueError:
            body = None  # an HTML page from a load balancer, or nothing at all
        return error_from_body(upstream.name, status, body, headers)

    async def list_models(self, upstream: UpstreamConfig, fetch: Callable[..., Awaitable[Any]]) -> tuple[str, list]:
        return await models.list_models(upstream, fetch)

    def probe_body(self, model: str, cap_field: str) -> tuple[str, dict]:
        return models.probe_body(model, cap_field)


ADAPTER = AnthropicAdapter()
