"""A stream's events in the batches they arrive in: what one upstream read produced, for one write.

The chain hands the server one event per `__anext__`, through several wrappers. The events of
one upstream read come out of it without waiting, so writing each as it comes costs a send
per event: a burst of streams pays it hundreds of times per read. `batches` asks for the next
event at once and keeps asking while the answer is ready without waiting; the first time the
stream has to wait (on the upstream), the events gathered so far go out together, and the wait
goes on where it was left. No event is held back for a later one: a batch leaves as soon as
the stream would wait, so each event leaves exactly when it would have alone. A batch also
leaves once it holds BATCH_BYTES, so an upstream that never lets the stream wait costs a bounded
buffer per stream, not everything it sends between two waits.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

from proxy.streams.sse import SSEEvent

BATCH_BYTES = 64 * 1024  # a few hundred typical events; one socket write's worth


class _Next:
    """One `__anext__` of a stream, run as far as it goes without waiting. Awaiting it hands the
    wait it started to the awaiting task (futures up; results, and a cancellation, down)."""

    __slots__ = ("_step", "_waiting_on", "ready", "_value", "_error")

    def __init__(self, stream: AsyncIterator[SSEEvent]):
        self._step = stream.__anext__()
        self._advance(self._step.send, None)

    def _advance(self, move: Callable[[Any], Any], given: Any) -> None:
        """One step of the `__anext__`: `move(given)` is its send or its throw."""
        self._value = self._error = None
        try:
            self._waiting_on = move(given)
        except StopIteration as stop:
            self.ready, self._value = True, stop.value
        except BaseException as exc:  # StopAsyncIteration at the end, or the stream's failure
            self.ready, self._error = True, exc
        else:
            self.ready = False

    @property
    def has_event(self) -> bool:
        """Done without waiting, with an event (not the end, not a failure)."""
        return self.ready and self._error is None

    def result(self) -> SSEEvent:
        if self._error is not None:
            raise self._error
        return self._value

    def __await__(self):
        while not self.ready:
            try:
                sent = yield self._waiting_on
            except BaseException as exc:  # the task is cancelled: the stream's wrappers handle it
                self._advance(self._step.throw, exc)
            else:
                self._advance(self._step.send, sent)
        return self.result()

    async def cancel(self) -> None:
        """Ends a wait nobody will take up (the client went away): the stream sees a cancellation,
        as it would have if the task had been waiting in it, and closes itself."""
        if not self.ready:
            self._advance(self._step.throw, asyncio.CancelledError())
        try:
            await self
        except (Exception, asyncio.CancelledError):
            pass  # the stream's own account of its end: already recorded by its wrappers


async def batches(events: AsyncIterator[SSEEvent]) -> AsyncIterator[list[SSEEvent]]:
    """`events` grouped by readiness; a failure is raised after the events before it are yielded."""
    pending = _Next(events)
    try:
        while True:
            try:
                batch = [await pending]
            except StopAsyncIteration:
                return
            size = len(batch[0].raw)
            pending = _Next(events)
            while pending.has_event and size < BATCH_BYTES:
                event = pending.result()
                batch.append(event)
                size += len(event.raw)
                pending = _Next(events)
            yield batch
    finally:
        await pending.cancel()
