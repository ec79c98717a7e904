"""Per-upstream concurrency slots: who may talk to an upstream right now.

Two backends, one shape (`acquire(wait=, timeout=) -> Slot | None`, `snapshot()`):

- LocalLimiter: an in-process FIFO semaphore, the default.
- RedisLimiter (proxy/resilience/redis_limiter.py): one cap shared by every replica, with
  expiring leases so a crashed replica's slots come back.

An upstream without `max_concurrent_requests` gets an uncapped LocalLimiter
that only counts, so in-flight numbers exist for every upstream.

LimiterRegistry (registry.py) is a long-lived service: it outlives config generations and
keeps each upstream's limiter, with its queue and held slots, across reloads,
only resizing it.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable, Optional

WaitObserver = Callable[[str, float], None]


class Slot:
    """One held slot. `release()` is synchronous and idempotent so it is safe in any
    `finally`, including while a task is being cancelled."""

    __slots__ = ("_release", "waited")

    def __init__(self, release: Callable[[], None], waited: float = 0.0):
        self._release: Optional[Callable[[], None]] = release
        self.waited = waited

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class LocalLimiter:
    """FIFO semaphore. A released slot is handed straight to the oldest waiter, so a
    newcomer can never overtake the queue."""

    backend = None  # shared limiters name the backend they belong to

    def __init__(self, name: str, capacity: int | None):
        self.name = name
        self.capacity = capacity
        self.inflight = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()

    def snapshot(self) -> tuple[int, int]:
        return self.inflight, len(self._waiters)

    def resize(self, capacity: int | None) -> None:
        self.capacity = capacity
        while self._waiters and self._has_room():
            if self._grant_next():
                self.inflight += 1

    def try_acquire(self) -> Slot | None:
        if self._waiters or not self._has_room():
            return None
        self.inflight += 1
        return Slot(self._release)

    async def acquire(self, *, wait: bool, timeout: float | None) -> Slot | None:
        slot = self.try_acquire()
        if slot is not None or not wait or (timeout is not None and timeout <= 0):
            return slot
        started = time.monotonic()
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, self._give_up, waiter)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return Slot(self._release, time.monotonic() - started) if granted else None

    def _has_room(self) -> bool:
        return self.capacity is None or self.inflight < self.capacity

    def _release(self) -> None:
        while self._waiters and (self.capacity is None or self.inflight - 1 < self.capacity):
            if self._grant_next():
                return  # hand-off: the slot changes owner, inflight stays
        self.inflight -= 1

    def _grant_next(self) -> bool:
        waiter = self._waiters.popleft()
        if waiter.done():  # cancelled, its task not yet run to take itself out of the queue
            return False
        waiter.set_result(True)
        return True

    def _give_up(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            self._waiters.remove(waiter)
            waiter.set_result(False)

    def _abandon(self, waiter: asyncio.Future[bool]) -> None:
        """The waiting task was cancelled (client gone): leave the queue, or give back
        a slot that was handed over in the same instant."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled() and waiter.result():
            self._release()
