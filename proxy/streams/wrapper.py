"""The one stream wrapper base: every middleware that wraps `response.events` builds on it.

A wrapper passes events through `transform` (None drops one), and keeps one promise: the
inner stream is closed exactly once, and `on_close` runs exactly once, whether the stream
ended, failed, was cancelled because the client went away, or was closed before it ever
started. It is a class, not an async generator, because `aclose()` on a generator that never
started skips its `finally`, and a concurrency slot or a log record must come back even then.

Subclasses override the hooks they need:
  transform(event)  -> the event to pass on, or None to drop it
  on_end()          the inner stream ended normally
  on_error(exc)     the inner stream raised; return an exception to raise instead, or None
  on_close()        always last, once
"""
from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import AsyncIterator, Optional

from proxy.streams.sse import SSEEvent


class StreamWrapper:
    __slots__ = ("_inner", "_closed")

    def __init__(self, inner: AsyncIterator[SSEEvent]):
        self._inner = inner
        self._closed = False

    def __aiter__(self) -> "StreamWrapper":
        return self

    async def __anext__(self) -> SSEEvent:
        try:
            while True:
                event = self.transform(await self._inner.__anext__())
                if event is not None:
                    return event
        except BaseException as exc:
            raised = await self._ended(exc)
            if raised is exc:
                raise
            raise raised from None

    async def _ended(self, exc: BaseException) -> BaseException:
        """The inner stream ended (StopAsyncIteration) or failed with `exc`: the hooks are told, the
        stream is closed, and what to raise is returned (`exc`, or on_error's replacement)."""
        if isinstance(exc, StopAsyncIteration):
            self.on_end()
            await self.aclose()
            return exc
        replacement = self.on_error(exc)
        await self.aclose()
        return exc if replacement is None else replacement

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._inner, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            self.on_close()

    # ---- hooks ---------------------------------------------------------------------------------

    def transform(self, event: SSEEvent) -> Optional[SSEEvent]:
        return event

    def on_end(self) -> None:
        """The inner stream ended normally (before on_close)."""

    def on_error(self, exc: BaseException) -> Optional[BaseException]:
        """The inner stream raised `exc` (cancellation included); return what to raise instead."""
        return None

    def on_close(self) -> None:
        """Runs once, last, however the stream ended."""


class StreamWatcher(StreamWrapper):
    """A wrapper that passes every event as it is and only watches how the stream ends (on_end,
    on_error, on_close): `transform` is not called, a call less per event in the guards and the
    observer that every stream passes through."""

    __slots__ = ()

    async def __anext__(self) -> SSEEvent:
        try:
            return await self._inner.__anext__()
        except BaseException as exc:
            raised = await self._ended(exc)
            if raised is exc:
                raise
            raise raised from None


class FailureAsEvent(StreamWrapper):
    """Ends a stream that fails after it began with one last event in the client's own API (a
    Responses `response.failed`, an Anthropic `error`), instead of letting the failure escape to
    a server that only knows how to end a chat stream. Its events pass as they are (no hooks)."""

    __slots__ = ("_to_event", "_ended")

    def __init__(self, inner: AsyncIterator[SSEEvent], to_event):
        super().__init__(inner)
        self._to_event = to_event
        self._ended = False

    async def __anext__(self) -> SSEEvent:
        # StreamWrapper's, with the failure turned into the last event: written out rather than
        # calling it, since each event of the stream passes here (one coroutine less per event).
        if self._ended:
            raise StopAsyncIteration
        try:
            try:
                return await self._inner.__anext__()
            except BaseException:  # the end, or a failure: either way the inner stream is done
                await self.aclose()
                raise
        except StopAsyncIteration:
            raise
        except Exception as exc:
            event = self._to_event(exc)
            if event is None:
                raise
            self._ended = True
            return event


async def finish_after_last_event(inner: AsyncIterator[SSEEvent]) -> None:
    """A translator has read the last event it needs ([DONE]): let the inner stream reach its
    own end before closing it, so the wrappers beneath see a normal end (observe records the
    answer's status) rather than a close that looks like a client who went away. The answer
    is complete by then: a failure while ending is not the client's concern."""
    try:
        await inner.__anext__()  # after [DONE] a chat stream ends; the reader stops there
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            raise
    finally:
        close = getattr(inner, "aclose", None)
        if close is not None:
            with suppress(Exception):
                await close()
