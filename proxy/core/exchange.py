"""The small types that flow through the middleware chain.

No aiohttp object crosses into the chain: the server turns a web request into
a ProxyRequest, the transport turns an upstream answer into a ProxyResponse.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping, Optional, Protocol

from proxy.config.formats import FORMATS
from proxy.config.model import AliasConfig, ModelSettings, UpstreamConfig
from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest, UpstreamProtocolError
from proxy.core.splice import RawObject

if TYPE_CHECKING:  # the events' type only: streams/ sits above core
    from proxy.streams.sse import SSEEvent


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request may be sent: an upstream and the model id it knows."""

    upstream: UpstreamConfig
    model: str
    alias: Optional[str] = None
    alias_config: Optional[AliasConfig] = None
    model_config: Optional[ModelSettings] = None

    @property
    def label(self) -> str:
        return f"{self.upstream.name}/{self.model}"


def requested_max_tokens(body: Mapping[str, Any], alias: Optional[AliasConfig],
                         model: Optional[ModelSettings]) -> Optional[int]:
    """The output cap asked for: the request's (`max_completion_tokens`, then `max_tokens`),
    else the alias's `max_tokens`, else the model's; None when nobody says."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
        return value
    for configured in (alias, model):
        if configured is not None and configured.max_tokens:
            return configured.max_tokens
    return None


@dataclass(slots=True)
class Attempt:
    upstream: str
    model: str
    status: int | None = None
    error: str | None = None
    reason: str | None = None  # the fallback trigger when this attempt failed over


@dataclass(slots=True)
class RequestTrace:
    """Mutable per-request record for logs, metrics and response headers.

    It is the one mutable thing a ProxyRequest carries: middleware append to
    it; nothing reads it to make routing decisions.
    """

    attempts: list[Attempt] = field(default_factory=list)
    first_token_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_wait: float = 0.0
    upstream_time: float = 0.0
    served_by: str | None = None
    dispatched_at: float | None = None  # when the transport last sent it upstream (proxy overhead metric)
    # Run by the server when the request ends, whatever happened: the transport registers each
    # upstream stream's close here, so a connection is freed even if a wrapper never iterated it.
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def finish(self) -> None:
        cleanups, self.cleanups = self.cleanups, []
        for cleanup in cleanups:
            cleanup()


def upstream_json(payload: bytes, upstream: str, answered: str = "answered 200 with a body") -> Any:
    """An upstream's whole answer, decoded; one that is not JSON is a protocol error naming it."""
    try:
        return jsonutil.loads(payload)
    except ValueError:
        raise UpstreamProtocolError(upstream, f"{answered} that is not JSON") from None


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    request_id: str
    method: str
    # Path below /v1 ("chat/completions", "embeddings", ...), never with a leading slash.
    path: str
    query: str = ""
    # The client's headers, lower-cased names, as received (the headers middleware filters them).
    client_headers: Mapping[str, str] = field(default_factory=dict)
    # The inbound API the client spoke: chat, responses, messages; "other" for forwarded /v1/* paths.
    api: str = "chat"
    # The JSON body for JSON requests (mutable copy owned by this request), else None. For the three
    # inbound APIs it is a Chat Completions body: the chain's one vocabulary (the "pivot").
    body: Optional[dict[str, Any]] = None
    # The client's body exactly as received, for an upstream that speaks the client's own API
    # (Messages to Anthropic, Responses to Responses): passed through with only the owned fields rewritten.
    native_body: bytes = b""
    # A body read only at its top level (its biggest member left a msgspec Raw, proxy/inbound/shallow.py):
    # the client's bytes, which a passthrough re-sends with only the fields the chain changed
    # re-encoded. For chat its `origin` is the pivot `body`; for Messages and Responses, the
    # client's own members, into which the wire splices the owned fields (proxy/wire/passthrough.py).
    spliced: Optional[RawObject] = None
    raw_body: bytes = b""
    content_type: str = ""
    client_model: Optional[str] = None
    targets: tuple[Target, ...] = ()
    # The target of the current attempt; the fallback middleware walks `targets`.
    target: Optional[Target] = None
    stream: bool = False
    # The client asked for usage in its stream (stream_options.include_usage).
    client_wants_usage: bool = False
    # Headers to send upstream, filled by the headers middleware.
    upstream_headers: Mapping[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    deadline: Optional[float] = None
    # When true the concurrency middleware fails at once instead of queueing (overflow to the next target).
    no_wait: bool = False
    trace: RequestTrace = field(default_factory=RequestTrace)

    def replace(self, **changes: Any) -> "ProxyRequest":
        """A copy with `changes`. Every middleware makes one per request, so this copies the
        slots directly: half the cost of dataclasses.replace, which re-runs __init__."""
        clone = object.__new__(ProxyRequest)
        for name in _REQUEST_FIELDS:
            _set(clone, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"ProxyRequest has no field(s) {', '.join(changes)}")
        return clone

    @property
    def is_chat(self) -> bool:
        """Whether `body` is a Chat Completions body (true for every inbound API, which the server
        turned into one), so middleware may read and rewrite it as such."""
        return self.api != "other"

    def passes_through(self, upstream: UpstreamConfig) -> bool:
        """Whether `upstream` speaks the client's own API (beyond chat, whose path is the pivot's),
        so the client's body and the upstream's answer pass through as they are."""
        return self.api != "chat" and FORMATS[upstream.format].native_api == self.api

    def leading_native_targets(self) -> tuple["Target", ...]:
        """The targets that speak the client's API themselves, up to the first that does not: where
        a request only such an upstream can serve may go (fallback among them still works; one that
        would need translation is never tried)."""
        native: list[Target] = []
        for target in self.targets:
            if not self.passes_through(target.upstream):
                break
            native.append(target)
        return tuple(native)

    def remaining(self, now: float | None = None) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (now if now is not None else time.monotonic())


_REQUEST_FIELDS = tuple(field.name for field in dataclasses.fields(ProxyRequest))
_set = object.__setattr__  # ProxyRequest is frozen: its own __setattr__ refuses


class StreamDialect(Protocol):
    """How to read the events of one API's stream, for middleware that must look inside them
    without knowing the API: the commit guard (has the answer begun? did the upstream report a
    failure before it did?). Each wire module provides one for the events it emits; the transport
    attaches it to the response, so nothing outside wire/ parses a format's events."""

    name: str  # the API whose events these are: chat, responses, messages

    def commits(self, event: SSEEvent) -> bool: ...

    def failure(self, event: SSEEvent, upstream: str) -> Optional[Exception]: ...


@dataclass(slots=True)
class ProxyResponse:
    """An answer on its way back: a complete body, or a stream of SSE events.

    A stream must be consumed or closed (`aclose`) exactly once; closing it is
    what releases the upstream connection and any concurrency slot, so every
    middleware that wraps `events` closes the inner iterator in a `finally`.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: Optional[AsyncIterator[SSEEvent]] = None
    content_type: str = "application/json"
    upstream: Optional[str] = None
    # What shape `body`/`events` are in; None: Chat Completions from a source with nothing to watch.
    dialect: Optional[StreamDialect] = None

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    def json_body(self) -> Any:
        """The body decoded; an upstream that answered something else is a protocol error."""
        return upstream_json(self.body, self.upstream or "?", "answered with a body")

    async def aclose(self) -> None:
        events = self.events
        if events is not None and hasattr(events, "aclose"):
            await events.aclose()
