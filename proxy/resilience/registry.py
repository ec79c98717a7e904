"""Limiters by upstream name, local or shared through Redis as `concurrency.backend` says;
kept across config reloads so slots held by requests in flight stay counted."""
from __future__ import annotations

from typing import Any

from proxy.config.model import ConcurrencyConfig, Config
from proxy.resilience.limiter import LocalLimiter, WaitObserver
from proxy.resilience.redis_limiter import RedisBackend  # imports the redis package only when a backend starts


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
