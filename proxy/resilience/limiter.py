"""Per-upstream concurrency slots: who may talk to an upstream right now.

Two backends, one shape (`acquire(wait=, timeout=) -> Slot | None`, `snapshot()`):

- LocalLimiter: an in-process FIFO semaphore, the default.
- RedisLimiter (proxy/resilience/redis_limiter.py): one cap shared by every replica, with
  expiring leases so a crashed replica's slots come back.

An upstream without `max_concurrent_requests` gets an uncapped LocalLimiter
that only counts, so in-flight numbers exist for every upstream.

LimiterRegistry is a long-lived service: it outlives config generations and
keeps each upstream's limiter, with its queue and held slots, across reloads,
only resizing it.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable, Optional

from proxy.config.model import Config, ConcurrencyConfig

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


class LimiterRegistry:
    """Limiters by upstream name; `configure()` on every config generation."""

    def __init__(self) -> None:
        self._limiters: dict[str, Any] = {}
        self._backend: Any = None  # proxy.resilience.redis_limiter.RedisBackend while concurrency.backend is redis
        self._retired: list[Any] = []
        self._wait_observers: list[WaitObserver] = []

    def configure(self, config: Config) -> None:
        self._use_backend(config.concurrency)
        for name, upstream in config.upstreams.items():
            self._limiters[name] = self._fitting(name, upstream.max_concurrent_requests)

    def _use_backend(self, settings: ConcurrencyConfig) -> None:
        current = self._backend
        if settings.backend == "redis" and (current is None or current.settings != settings):
            from proxy.resilience.redis_limiter import RedisBackend  # the redis package is only needed when used
            self._backend = RedisBackend(settings)
        elif settings.backend == "local":
            self._backend = None
        if current is not None and current is not self._backend:
            self._retired.append(current)  # slots held through it still release through it

    def _fitting(self, name: str, capacity: int | None) -> Any:
        """The current limiter, resized, when it is of the right kind; else a new one."""
        current = self._limiters.get(name)
        backend = self._backend if capacity is not None else None  # uncapped: count locally
        if current is not None and current.backend is backend:
            current.resize(capacity)
            return current
        if backend is not None:
            return backend.limiter(name, capacity)
        return LocalLimiter(name, capacity)

    def get(self, name: str) -> Any:
        """The upstream's limiter: a LocalLimiter or a proxy.resilience.redis_limiter.RedisLimiter."""
        limiter = self._limiters.get(name)
        if limiter is None:
            limiter = self._limiters[name] = LocalLimiter(name, None)
        return limiter

    def names(self) -> list[str]:
        return list(self._limiters)

    def snapshot(self, name: str) -> tuple[int, int]:
        """(in flight, queued) for one upstream, as seen by this process."""
        limiter = self._limiters.get(name)
        return limiter.snapshot() if limiter is not None else (0, 0)

    def stats(self, name: str) -> dict[str, int]:
        inflight, queued = self.snapshot(name)
        return {"inflight": inflight, "queued": queued}

    def add_wait_observer(self, observer: WaitObserver) -> None:
        """`observer(upstream, seconds)` is called after every granted slot (metrics)."""
        self._wait_observers.append(observer)

    def observe_wait(self, name: str, seconds: float) -> None:
        for observer in self._wait_observers:
            observer(name, seconds)

    async def close(self) -> None:
        backends = self._retired + ([self._backend] if self._backend is not None else [])
        self._retired, self._backend = [], None
        for backend in backends:
            await backend.close()
