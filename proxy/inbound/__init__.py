"""Inbound APIs, one module each: a client's request in its own API -> the chain's request, and the
chain's answer -> that API's own shape and error envelope.

The chain speaks Chat Completions (the "pivot"). An inbound API turns its request into a pivot
body (`parse`), and turns the chain's answer back (`render`): an answer already in its own shape
(an upstream that speaks the client's API natively, passed through) is left as it is; a chat
answer or chat stream is translated, event by event. Errors leave in its own envelope (`error`).

An API may also decide, once the request is routed, to answer it without an upstream or to narrow its
targets: an optional `route(request, context)` returning the ProxyRequest to send through the chain
or the ProxyResponse to answer with (Messages' count_tokens: exact from Anthropic, else estimated).

A new inbound API is one module (or package) implementing InboundAPI plus one line in APIS.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol

from proxy.config.model import LimitsConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse


class InboundAPI(Protocol):
    # The metrics label and ProxyRequest.api: chat, responses, messages.
    name: str

    def parse(self, raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], Any]:
        """The client's body -> (a Chat Completions body, a per-request context for `render`).
        Raises InvalidRequest naming the bad field."""

    def render(self, response: ProxyResponse, context: Any, request: ProxyRequest) -> ProxyResponse:
        """The chain's answer in this API's shape (a body, or a stream ending in this API's way,
        a failure after the stream began included)."""

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) for an error answered before any byte of the answer."""


def api_for(path: str) -> Optional[InboundAPI]:
    """The inbound API served at `/v1/{path}`, or None for a path forwarded as it is."""
    api = APIS.get(path)
    if api is None:
        return None
    if isinstance(api, str):  # registered by module path, imported on first use
        import importlib
        api = APIS[path] = importlib.import_module(api).API
    return api


APIS: dict[str, Any] = {
    "chat/completions": "proxy.inbound.chat",
    "responses": "proxy.inbound.responses.api",
    "messages": "proxy.inbound.messages.api",
    "messages/count_tokens": "proxy.inbound.messages.count_api",
}
