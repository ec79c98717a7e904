"""Stream wrappers that keep their promises: cleanup always runs, and a stream is
handed to the client only once it has really begun.

GuardedStream wraps `response.events`: it may replay events held back, reports
an upstream failure once, and on end, failure, cancellation or `aclose()` closes
the inner stream and runs its `on_close` (a concurrency slot release). It is a
class, not an async generator, because closing a generator that never started
skips its `finally`, and a slot must come back even then.

await_commit implements the stream commit point: preamble events (for chat:
role-only chunks, empty deltas, comments, Azure's filter results; each API's
dialect says which) are held back until the first content, tool, reasoning or
finish event. A failure before that (the
iterator raising, an `{"error": ...}` event) is raised to the caller, who may
still fall back with nothing sent; after it, failures travel with the stream.
"""
from __future__ import annotations

from collections import deque
from contextlib import aclosing
from typing import AsyncIterator, Awaitable, Callable, Iterable, Optional

from proxy.core.errors import UpstreamError
from proxy.core.exchange import ProxyResponse
from proxy.streams.sse import SSEEvent
from proxy.streams.wrapper import StreamWatcher, StreamWrapper

# An upstream that sends only preamble for this long is committed anyway, to bound what is held.
MAX_HELD_EVENTS = 64

FailureHook = Callable[[UpstreamError], None]


class GuardedStream(StreamWatcher):
    """Replays the events held back at the commit, reports an upstream failure once, and runs
    `on_close` (a concurrency slot's release) when the stream is over."""

    __slots__ = ("_held", "_on_failure", "_on_close")

    def __init__(self, inner: AsyncIterator[SSEEvent], *, held: Iterable[SSEEvent] = (),
                 on_failure: Optional[FailureHook] = None, on_close: Optional[Callable[[], None]] = None):
        super().__init__(inner)
        self._held = deque(held)
        self._on_failure = on_failure
        self._on_close = on_close

    def __anext__(self) -> Awaitable[SSEEvent]:
        # Not a coroutine itself: once the held events are out, each event is StreamWatcher's own
        # step, not one more coroutine around it.
        if self._held:
            return _at_once(self._held.popleft())
        return StreamWatcher.__anext__(self)

    def on_error(self, exc: BaseException) -> Optional[BaseException]:
        if isinstance(exc, UpstreamError) and self._on_failure is not None:
            self._on_failure(exc)
        return None

    def on_close(self) -> None:
        if self._on_close is not None:
            self._on_close()


async def _at_once(event: SSEEvent) -> SSEEvent:
    return event


class FilteredStream(StreamWrapper):
    """Events passed through `transform` one by one (None drops an event)."""

    __slots__ = ("_transform",)

    def __init__(self, inner: AsyncIterator[SSEEvent], transform: Callable[[SSEEvent], Optional[SSEEvent]]):
        super().__init__(inner)
        self._transform = transform

    def transform(self, event: SSEEvent) -> Optional[SSEEvent]:
        return self._transform(event)


async def await_commit(response: ProxyResponse, upstream: str,
                       on_late_failure: Optional[FailureHook] = None) -> ProxyResponse:
    """Return `response` once its stream has committed (plain bodies at once); raise the
    upstream's failure, with the stream closed, when it fails before that. The response's
    dialect says which events commit and which report a failure; without one, the first
    event commits."""
    if response.events is None:
        return response
    inner, dialect = response.events, response.dialect
    held: list[SSEEvent] = []
    try:
        while len(held) < MAX_HELD_EVENTS:
            try:
                event = await inner.__anext__()
            except StopAsyncIteration:
                break  # ended cleanly before any content: an empty answer is still an answer
            failure = dialect.failure(event, upstream) if dialect is not None else None
            if failure is not None:
                raise failure
            held.append(event)
            if dialect is None or dialect.commits(event):
                break
    except BaseException:
        async with aclosing(inner):
            raise
    response.events = GuardedStream(inner, held=held, on_failure=on_late_failure)
    return response
