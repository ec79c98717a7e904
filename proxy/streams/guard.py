"""Stream wrappers that keep their promises: cleanup always runs, and a stream is
handed to the client only once it has really begun.

GuardedStream wraps `response.events`: it may replay events held back, reports
an upstream failure once, and on end, failure, cancellation or `aclose()` closes
the inner stream and runs its `on_close` (a concurrency slot release). It is a
class, not an async generator, because closing a generator that never started
skips its `finally`, and a slot must come back even then.

await_commit implements the stream commit point: preamble events (role-only
chunks, empty deltas, comments, Azure's filter results) are held back until the
first content, tool, reasoning or finish event. A failure before that (the
iterator raising, an `{"error": ...}` event) is raised to the caller, who may
still fall back with nothing sent; after it, failures travel with the stream.
"""
from __future__ import annotations

from collections import deque
from contextlib import aclosing
from typing import AsyncIterator, Callable, Iterable, Optional

from proxy.core.errors import UpstreamError
from proxy.core.exchange import ProxyResponse
from proxy.streams.sse import SSEEvent
from proxy.wire.openai import error_event

# A delta with any of these (non-empty) means the answer has begun.
CONTENT_FIELDS = ("content", "tool_calls", "reasoning_content", "reasoning", "refusal", "function_call", "audio")
# An upstream that sends only preamble for this long is committed anyway, to bound what is held.
MAX_HELD_EVENTS = 64

FailureHook = Callable[[UpstreamError], None]


class GuardedStream:
    __slots__ = ("_inner", "_held", "_on_failure", "_on_close", "_closed")

    def __init__(self, inner: AsyncIterator[SSEEvent], *, held: Iterable[SSEEvent] = (),
                 on_failure: Optional[FailureHook] = None, on_close: Optional[Callable[[], None]] = None):
        self._inner = inner
        self._held = deque(held)
        self._on_failure = on_failure
        self._on_close = on_close
        self._closed = False

    def __aiter__(self) -> "GuardedStream":
        return self

    async def __anext__(self) -> SSEEvent:
        if self._held:
            return self._held.popleft()
        try:
            return await self._inner.__anext__()
        except UpstreamError as exc:
            if self._on_failure is not None:
                self._on_failure(exc)
            await self.aclose()
            raise
        except BaseException:  # the end, or cancellation because the client went away
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with aclosing(self._inner):
                pass
        finally:
            if self._on_close is not None:
                self._on_close()


class FilteredStream:
    """Events passed through `transform` one by one (None drops an event), with the same
    cleanup promise as GuardedStream: `aclose()` closes the inner stream even if never started."""

    __slots__ = ("_inner", "_transform", "_closed")

    def __init__(self, inner: AsyncIterator[SSEEvent], transform: Callable[[SSEEvent], Optional[SSEEvent]]):
        self._inner = inner
        self._transform = transform
        self._closed = False

    def __aiter__(self) -> "FilteredStream":
        return self

    async def __anext__(self) -> SSEEvent:
        try:
            while True:
                event = self._transform(await self._inner.__anext__())
                if event is not None:
                    return event
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            async with aclosing(self._inner):
                pass


async def await_commit(response: ProxyResponse, upstream: str,
                       on_late_failure: Optional[FailureHook] = None) -> ProxyResponse:
    """Return `response` once its stream has committed (plain bodies at once); raise the
    upstream's failure, with the stream closed, when it fails before that."""
    if response.events is None:
        return response
    inner = response.events
    held: list[SSEEvent] = []
    try:
        while len(held) < MAX_HELD_EVENTS:
            try:
                event = await inner.__anext__()
            except StopAsyncIteration:
                break  # ended cleanly before any content: an empty answer is still an answer
            failure = error_event(event, upstream)
            if failure is not None:
                raise failure
            held.append(event)
            if commits(event):
                break
    except BaseException:
        async with aclosing(inner):
            raise
    response.events = GuardedStream(inner, held=held, on_failure=on_late_failure)
    return response


def commits(event: SSEEvent) -> bool:
    data = event.data
    if data is None:
        return False  # a comment or keep-alive
    if event.is_done:
        return True
    try:
        payload = event.json()
    except ValueError:
        return True  # not ours to judge; pass it on
    if not isinstance(payload, dict):
        return True
    choices = payload.get("choices")
    if not choices:
        return bool(payload.get("usage"))
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(name) for name in CONTENT_FIELDS):
            return True
    return False
