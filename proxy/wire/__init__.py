"""Wire formats: how each upstream format speaks chat.

The transport does the HTTP; an adapter only translates between OpenAI's
Chat Completions shape (what clients send and receive) and the upstream's
native shape. Adapters are stateless module-level objects, looked up by
`UpstreamConfig.format`.
"""
from __future__ import annotations

from typing import AsyncIterator, Mapping, Protocol

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

    def decode_error(self, upstream: UpstreamConfig, status: int, payload: bytes,
                     headers: Mapping[str, str]) -> UpstreamError:
        """A native error answer -> the matching error of proxy.core.errors."""


def adapter_for(wire_format: str) -> WireAdapter:
    if wire_format == "anthropic":
        from proxy.wire.anthropic import adapter as anthropic
        return anthropic.ADAPTER
    from proxy.wire import openai
    return openai.ADAPTER
