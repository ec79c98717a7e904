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

from typing import Any, AsyncIterator, Mapping

from proxy.core import jsonutil
from proxy.config.model import UpstreamConfig
from proxy.core.errors import UpstreamError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target
from proxy.wire.registry import bearer_or_key
from proxy.streams.sse import SSEEvent
from proxy.wire.anthropic import stream as anthropic_stream
from proxy.wire.anthropic.request import encode_request
from proxy.wire.anthropic.response import decode_message, error_from_body


class AnthropicAdapter:
    chat_path = "messages"
    models_path = "models"

    def auth_headers(self, upstream: UpstreamConfig, configured: set[str]) -> dict[str, str]:
        version = {} if "anthropic-version" in configured else {"anthropic-version": upstream.anthropic_version}
        return {**version, **bearer_or_key(upstream)}

    def encode_chat(self, request: ProxyRequest, target: Target) -> dict:
        return encode_request(request.body or {}, target, stream=request.stream)

    def decode_chat(self, payload: bytes, request: ProxyRequest, target: Target) -> bytes:
        try:
            return decode_message(payload, request, target)
        except ValueError:  # values JSON cannot carry back out (nesting, integers past 64 bits)
            raise UpstreamProtocolError(target.upstream.name, "answered with a message the proxy cannot "
                                                              "re-encode") from None

    def translate_stream(self, events: AsyncIterator[SSEEvent], request: ProxyRequest,
                         target: Target) -> AsyncIterator[SSEEvent]:
        return anthropic_stream.translate(events, request, target)

    def decode_error(self, upstream: UpstreamConfig, status: int, payload: bytes,
                     headers: Mapping[str, str]) -> UpstreamError:
        try:
            body = jsonutil.loads(payload)
        except ValueError:
            body = None  # an HTML page from a load balancer, or nothing at all
        return error_from_body(upstream.name, status, body, headers)


ADAPTER = AnthropicAdapter()


# ---- the model list -----------------------------------------------------------------------------

def parse_models(payload: dict) -> list[dict]:
    """One page of `GET /v1/models` (`{"data", "has_more", "first_id", "last_id"}`) as catalog entries."""
    data = payload.get("data") if isinstance(payload, dict) else None
    models = []
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        entry: dict[str, Any] = {"id": item["id"]}
        for name in ("display_name", "created_at", "max_input_tokens", "max_tokens"):
            if item.get(name) is not None:
                entry[name] = item[name]
        if isinstance(item.get("max_input_tokens"), int):
            entry["context_window"] = item["max_input_tokens"]
        models.append(entry)
    return models


def next_page_params(payload: dict, limit: int = 1000) -> dict[str, str] | None:
    """The query for the page after this one, or None when this was the last."""
    if not isinstance(payload, dict) or payload.get("has_more") is not True:
        return None
    last_id = payload.get("last_id")
    return {"after_id": last_id, "limit": str(limit)} if isinstance(last_id, str) and last_id else None
