"""Inbound APIs, one module each: a client's request in its own API -> the chain's request, and the
chain's answer -> that API's own shape and error envelope.

The chain speaks Chat Completions (the "pivot"). An inbound API turns its request into a pivot
body (`parse`), and turns the chain's answer back (`render`): an answer already in its own shape
(an upstream that speaks the client's API natively, passed through) is left as it is; a chat
answer or chat stream is translated, event by event. Errors leave in its own envelope (`error`).

A passthrough need not read what it does not change: a large body may be read only at its top
level (proxy/inbound/shallow.py), its biggest member left as the client's bytes (`Parsed.spliced`).
That serves only upstreams speaking the client's API natively, with no user plugin configured; for
any other target the server asks for the whole body (`parse(..., whole=True)`), the same for every API.

An API may also decide, once the request is routed, to answer it without an upstream or to narrow its
targets: an optional `route(request, context)` returning the ProxyRequest to send through the chain
or the ProxyResponse to answer with (Messages' count_tokens: exact from Anthropic, else estimated).

A new inbound API is one module (or package) implementing InboundAPI plus one line in APIS.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Protocol

from proxy.config.model import LimitsConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.core.splice import RawObject


class Parsed(NamedTuple):
    body: dict[str, Any]       # the request as a Chat Completions body (the pivot)
    context: Any               # what `render` needs of the request
    # The body for an upstream that speaks this API natively; None: the client's own bytes.
    native: Optional[bytes] = None
    # Set when only an upstream speaking this API natively can take it (a hosted tool; the proxy's
    # store out of reach): the server narrows the targets to the native ones leading the alias,
    # and answers this error when there are none.
    native_only: Optional[ProxyError] = None
    # Set when the body was read only at its top level: the client's object, whose unread members
    # (and every member nobody changes) a passthrough re-sends as the client's own bytes.
    spliced: Optional[RawObject] = None


class InboundAPI(Protocol):
    # The metrics label and ProxyRequest.api: chat, responses, messages; also the `native_api` of the
    # upstream formats that take its requests as they are (proxy/config/formats.py).
    name: str

    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services, whole: bool = False) -> Parsed:
        """The client's body -> a Chat Completions body and a per-request context for `render`
        (`services` for an API that keeps state: stored responses). Raises InvalidRequest naming
        the bad field. Unless `whole`, a large body may be read only at its top level (`spliced`
        set): the member it leaves unread is then in the pivot as the client's bytes, in the
        client's API's shape; a body the shallow read doubts is read whole, for its answer."""

    async def render(self, response: ProxyResponse, context: Any, request: ProxyRequest) -> ProxyResponse:
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
