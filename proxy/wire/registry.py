"""The wire adapter contract and the registry: how each upstream format speaks chat.

The transport does the HTTP; an adapter only translates between OpenAI's
Chat Completions shape (what clients send and receive) and the upstream's
native shape. Adapters are stateless module-level objects, looked up by
`UpstreamConfig.format`.
"""
from __future__ import annotations

import importlib
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Protocol

from proxy.config.formats import FORMATS
from proxy.config.model import UpstreamConfig
from proxy.core.errors import UpstreamError
from proxy.core.exchange import ProxyRequest, Target
from proxy.streams.sse import SSEEvent


class WireAdapter(Protocol):
    # Appended to the upstream's normalized base URL: "chat/completions", "messages".
    chat_path: str
    # Where the model catalog lives, relative to the base URL.
    models_path: str

    def encode_chat(self, request: ProxyRequest, target: Target) -> dict:
        """The native request body (before `options:` are merged in). `request.body` is
        the client's OpenAI body as the middleware left it; it must not be mutated."""

    def decode_chat(self, payload: bytes, request: ProxyRequest, target: Target) -> bytes:
        """A native non-streaming answer -> OpenAI `chat.completion` JSON bytes."""

    def translate_stream(self, events: AsyncIterator[SSEEvent], request: ProxyRequest,
                         target: Target) -> AsyncIterator[SSEEvent]:
        """Native SSE events -> OpenAI `chat.completion.chunk` events ending in `[DONE]`.
        Raises UpstreamProtocolError (or the mapped error) when the upstream stream
        fails or ends before it is complete; never collects the whole answer."""

    def auth_headers(self, upstream: UpstreamConfig, configured: set[str]) -> dict[str, str]:
        """The headers that authenticate (and version) a call; `configured` holds the lower-cased
        names the upstream's `headers:` already set."""

    def decode_error(self, upstream: UpstreamConfig, status: int, payload: bytes,
                     headers: Mapping[str, str]) -> UpstreamError:
        """A native error answer -> the matching error of proxy.core.errors."""

    async def list_models(self, upstream: UpstreamConfig,
                          fetch: Callable[..., Awaitable[Any]]) -> tuple[str, list[Any]]:
        """Every entry of the upstream's model list, raw (proxy/catalog/discovery.py reads them), and
        the URL of the list: where it lives and how it is paged is the format's. The HTTP is the
        catalog's: `await fetch(url, params=None, body=None, absent=(), required=True)` sends a GET
        (a POST of `body` as JSON) with the upstream's headers and returns the decoded JSON. It
        raises on any failure, except that it returns None for a status in `absent` (not here: ask
        elsewhere) and for any failure when not `required`. A ValueError means the answer is not a
        model list."""

    def probe_body(self, model: str, cap_field: str) -> tuple[str, dict]:
        """The chain path and Chat Completions body of `byok-proxy check`'s 1-token probe of `model`,
        capped by `cap_field` (max_tokens, or max_completion_tokens). It is sent through the whole
        chain like any client request, so the transport encodes it for the upstream."""


def adapter_for(wire_format: str) -> WireAdapter:
    """The adapter registered for `wire_format` in proxy/config/formats.py (imported once)."""
    adapter = _ADAPTERS.get(wire_format)
    if adapter is None:
        adapter = _ADAPTERS[wire_format] = importlib.import_module(FORMATS[wire_format].adapter).ADAPTER
    return adapter


def upstream_headers(upstream: UpstreamConfig) -> dict[str, str]:
    """Configured headers, then the format's auth (so a configured header cannot silently replace
    the key). Traffic, discovery, health and `check` all send these."""
    headers = {name: value.reveal() for name, value in upstream.headers.items()}  # names as configured
    headers.update(adapter_for(upstream.format).auth_headers(upstream, {name.lower() for name in headers}))
    return headers


def bearer_or_key(upstream: UpstreamConfig) -> dict[str, str]:
    """The key as `upstream.auth_style` says: `Authorization: Bearer` or `x-api-key`."""
    if not upstream.api_key:
        return {}
    key = upstream.api_key.reveal()
    if upstream.auth_style == "x-api-key":
        return {"x-api-key": key}
    return {"authorization": f"Bearer {key}"}


_ADAPTERS: dict[str, WireAdapter] = {}
