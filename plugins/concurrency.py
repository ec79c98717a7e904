"""The `concurrency` middleware: a slot of the target upstream's limiter per attempt.

The slot is held for as long as the upstream is busy with the request: until a
plain answer comes back, or until the stream ends or the client goes away (the
stream wrapper releases it in its `finally`). Saturated: with `request.no_wait`
(set by fallback while other targets remain) it fails at once so the request
can overflow; otherwise it queues FIFO for up to `queue_timeout`, then 429.
"""
from __future__ import annotations

import math
import time

from proxy.api import Handler, PluginContext, ProxyRequest, ProxyResponse, RateLimited
from proxy.resilience.limiter import Slot
from proxy.resilience.registry import LimiterRegistry
from proxy.streams.guard import GuardedStream

# When a slot is refused, suggest retrying after about one queue_timeout, within these bounds.
RETRY_AFTER_BOUNDS = (1.0, 30.0)
BUSY_CODE = "concurrency_limit"  # refused without queueing, so fallback can overflow


class Concurrency:
    def __init__(self, limiters: LimiterRegistry):
        self.limiters = limiters

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        target = request.target
        if target is None:
            return await call_next(request)
        slot = await self._acquire(request)
        try:
            response = await call_next(request)
        except BaseException:
            slot.release()
            raise
        if response.events is None:
            slot.release()
        else:
            response.events = GuardedStream(response.events, on_close=slot.release)
        return response

    async def _acquire(self, request: ProxyRequest) -> Slot:
        upstream = request.target.upstream  # type: ignore[union-attr]
        limiter = self.limiters.get(upstream.name)
        timeout = upstream.queue_timeout
        remaining = request.remaining()
        if remaining is not None:
            timeout = max(0.0, min(timeout, remaining))
        started = time.monotonic()
        slot = await limiter.acquire(wait=not request.no_wait, timeout=timeout)
        if slot is None:
            raise _refusal(request, time.monotonic() - started)
        request.trace.queue_wait += slot.waited
        self.limiters.observe_wait(upstream.name, slot.waited)
        return slot


def _refusal(request: ProxyRequest, waited: float) -> RateLimited:
    upstream = request.target.upstream  # type: ignore[union-attr]
    low, high = RETRY_AFTER_BOUNDS
    retry_after = min(high, max(low, math.ceil(upstream.queue_timeout)))
    cap = upstream.max_concurrent_requests
    if request.no_wait:
        return RateLimited(f"upstream '{upstream.name}' is at its concurrency limit ({cap})",
                           retry_after=retry_after, code=BUSY_CODE)
    return RateLimited(f"upstream '{upstream.name}' is at its concurrency limit ({cap}) and no slot "
                       f"came free within {waited:.1f} s (queue_timeout {upstream.queue_timeout:g} s)",
                       retry_after=retry_after)


def create(context: PluginContext) -> Concurrency:
    # Always on: uncapped upstreams get counting-only limiters, so in-flight numbers exist for all.
    limiters: LimiterRegistry = context.services.limiters
    limiters.configure(context.config)
    return Concurrency(limiters)
