"""Writing a stream in the batches it arrives in (proxy/streams/batches.py): the events one
upstream read produced leave together, none waits for a later one, and a stream that is left
or cancelled still ends through its own wrappers."""
from __future__ import annotations

import asyncio

import pytest

from proxy.streams.batches import batches
from proxy.streams.sse import SSEEvent
from proxy.streams.wrapper import StreamWrapper


def event(text: str) -> SSEEvent:
    return SSEEvent(f"data: {text}\n\n".encode())


class Reads:
    """A stream that produces its events in reads; each read after the first waits to be released."""

    def __init__(self, *reads: list[str], failure: Exception | None = None):
        self.reads, self.failure = list(reads), failure
        self.release = asyncio.Event()
        self.ended_by: BaseException | None = None

    async def events(self):
        try:
            for index, read in enumerate(self.reads):
                if index:
                    await self.release.wait()
                    self.release.clear()
                for text in read:
                    yield event(text)
            if self.failure is not None:
                raise self.failure
        except BaseException as exc:
            self.ended_by = exc
            raise


async def collect(stream, reads: Reads) -> list[list[str]]:
    seen = []
    async for batch in batches(stream):
        seen.append([item.data for item in batch])
        reads.release.set()
    return seen


async def test_the_events_of_one_read_leave_together_and_later_reads_apart():
    reads = Reads(["a", "b", "c"], ["d"], ["e", "f"])
    assert await collect(reads.events(), reads) == [["a", "b", "c"], ["d"], ["e", "f"]]


async def test_through_wrappers_too():
    reads = Reads(["a", "b"], ["c"])
    assert await collect(StreamWrapper(StreamWrapper(reads.events())), reads) == [["a", "b"], ["c"]]


async def test_a_failure_comes_after_the_events_before_it():
    reads = Reads(["a", "b"], failure=ValueError("upstream broke"))
    seen = []
    with pytest.raises(ValueError, match="upstream broke"):
        async for batch in batches(reads.events()):
            seen.append([item.data for item in batch])
    assert seen == [["a", "b"]]


async def test_a_stream_left_while_it_waits_ends_by_a_cancellation():
    reads = Reads(["a"], ["b"])
    closed = []

    class Watched(StreamWrapper):
        def on_close(self) -> None:
            closed.append(True)

    batched = batches(Watched(reads.events()))
    assert [item.data for item in await batched.__anext__()] == ["a"]
    await batched.aclose()  # the client went away: nobody will write "b"
    assert isinstance(reads.ended_by, asyncio.CancelledError) and closed == [True]


async def test_a_cancelled_task_cancels_the_wait_inside_the_stream():
    reads = Reads(["a"], ["b"])

    class Interrupted(StreamWrapper):
        def on_error(self, exc):
            return RuntimeError("drained") if isinstance(exc, asyncio.CancelledError) else None

    async def consume():
        async for _ in batches(Interrupted(reads.events())):
            pass  # "b" is never released

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(RuntimeError, match="drained"):
        await task
    assert isinstance(reads.ended_by, asyncio.CancelledError)


async def test_a_read_that_never_lets_the_stream_wait_leaves_in_bounded_batches():
    from proxy.streams.batches import BATCH_BYTES
    big = "x" * 1000
    reads = Reads([big] * 200)  # about 200 KB ready at once
    seen = await collect(reads.events(), reads)
    assert sum(len(batch) for batch in seen) == 200 and len(seen) >= 3
    assert all(len(batch) * (len(big) + 8) <= BATCH_BYTES + len(big) + 8 for batch in seen)
