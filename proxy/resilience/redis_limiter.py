"""The Redis-backed limiter: one concurrency cap shared by every replica.

A held slot is a lease in a Redis sorted set scored by its expiry; this process
renews its leases while they are held, so a crashed replica's slots come back
after `concurrency.lease_seconds`. Waiters queue in Redis too, by ticket, so
the queue is FIFO across replicas; release notices travel over pub/sub so a
waiter on any replica wakes at once (with polling as the backstop). When Redis
cannot be reached the limiter falls back to a per-replica cap, logged, rather
than failing requests.

Imported only when `concurrency.backend: redis` is configured; the `redis`
package is an optional dependency.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from proxy.config.model import ConcurrencyConfig
from proxy.resilience.limiter import LocalLimiter, Slot

log = logging.getLogger(__name__)

# Expired leases and stale waiters are swept first; then the caller gets a slot when
# one is free and it is within the first `free` places of the queue (a caller that is
# not queued counts as behind everyone who is). Time is Redis's own clock, so replicas
# with skewed clocks agree on expiry.
_ACQUIRE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local slots, queue, queue_expiry = KEYS[1], KEYS[2], KEYS[3]
local id, capacity, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local stale = redis.call('ZRANGEBYSCORE', queue_expiry, '-inf', now)
for _, waiter in ipairs(stale) do
  redis.call('ZREM', queue, waiter)
  redis.call('ZREM', queue_expiry, waiter)
end
local free = capacity - redis.call('ZCARD', slots)
if free <= 0 then return 0 end
local rank = redis.call('ZRANK', queue, id)
if not rank then rank = redis.call('ZCARD', queue) end
if rank >= free then return 0 end
redis.call('ZADD', slots, now + lease_ms, id)
redis.call('ZREM', queue, id)
redis.call('ZREM', queue_expiry, id)
return 1
"""

_ENQUEUE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ticket = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], ticket, ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return ticket
"""

# Pushes the expiry of every lease (KEYS[1]) and waiter (KEYS[2]) this replica still
# holds; XX so a lease that already expired is not silently re-created over the cap.
_RENEW = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local held = tonumber(ARGV[2])
local lost = 0
for index = 3, #ARGV do
  local key = KEYS[1]
  if index - 2 > held then key = KEYS[2] end
  if redis.call('ZADD', key, 'XX', 'CH', expiry, ARGV[index]) == 0 and key == KEYS[1] then
    lost = lost + 1
  end
end
return lost
"""


class RedisBackend:
    """One Redis connection pool per process, shared by every RedisLimiter: it runs the
    scripts, renews leases, and turns release notices from any replica into wake-ups."""

    POLL_SECONDS = 0.25  # backstop for wake-ups lost with the pub/sub connection, and for expiries
    OUTAGE_SECONDS = 5.0  # after a Redis error, use per-replica caps this long before trying again

    def __init__(self, settings: ConcurrencyConfig):
        try:
            import redis.asyncio as redis_asyncio
            from redis.exceptions import RedisError
        except ImportError:
            raise RuntimeError("concurrency backend 'redis' needs the redis package: "
                               "pip install 'byok-proxy[redis]'") from None
        self.settings = settings
        self.errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
        assert settings.url is not None  # the config loader insists on it
        self.client = redis_asyncio.Redis.from_url(settings.url.reveal(), socket_connect_timeout=1.0,
                                                   socket_timeout=2.0)
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.channel = f"{settings.key_prefix}:released"
        self._acquire = self.client.register_script(_ACQUIRE)
        self._enqueue = self.client.register_script(_ENQUEUE)
        self._renew = self.client.register_script(_RENEW)
        self._limiters: dict[str, RedisLimiter] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._workers: list[asyncio.Task[Any]] = []
        self.down_until = 0.0

    def keys(self, name: str) -> tuple[str, str, str, str]:
        base = f"{self.settings.key_prefix}:{{{name}}}"  # one hash slot per upstream for Redis Cluster
        return f"{base}:slots", f"{base}:queue", f"{base}:queue_expiry", f"{base}:ticket"

    def limiter(self, name: str, capacity: int) -> "RedisLimiter":
        limiter = self._limiters[name] = RedisLimiter(name, capacity, self)
        return limiter

    # -- scripts -----------------------------------------------------------------------------

    async def try_acquire(self, limiter: "RedisLimiter", lease_id: str) -> bool:
        self._start_workers()
        slots, queue, queue_expiry, _ = limiter.keys
        granted = await self._acquire(keys=[slots, queue, queue_expiry],
                                      args=[lease_id, limiter.capacity, self.lease_ms])
        return bool(granted)

    async def enqueue(self, limiter: "RedisLimiter", lease_id: str) -> None:
        _, queue, queue_expiry, ticket = limiter.keys
        await self._enqueue(keys=[queue, queue_expiry, ticket], args=[lease_id, self.lease_ms])

    def forget(self, limiter: "RedisLimiter", lease_id: str, *, released: bool) -> None:
        """Remove a lease or queue place in the background (callers may be mid-cancellation)."""
        self._spawn(self._forget(limiter, lease_id, released))

    async def _forget(self, limiter: "RedisLimiter", lease_id: str, released: bool) -> None:
        slots, queue, queue_expiry, _ = limiter.keys
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(slots, lease_id).zrem(queue, lease_id).zrem(queue_expiry, lease_id)
                if released:
                    pipe.publish(self.channel, limiter.name)
                await pipe.execute()
        except self.errors as exc:
            log.warning("concurrency: could not release a redis slot of '%s' (it expires with its lease): %s",
                        limiter.name, exc)

    # -- background work ---------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_workers(self) -> None:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._renew_forever()), loop.create_task(self._listen_forever())]

    async def _renew_forever(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            for limiter in list(self._limiters.values()):
                held, waiting = list(limiter.held_ids), list(limiter.waiting_ids)
                if not held and not waiting:
                    continue
                slots, _, queue_expiry, _ = limiter.keys
                try:
                    lost = await self._renew(keys=[slots, queue_expiry],
                                             args=[self.lease_ms, len(held), *held, *waiting])
                except self.errors as exc:
                    log.warning("concurrency: cannot renew redis leases of '%s': %s", limiter.name, exc)
                    continue
                if lost:
                    log.warning("concurrency: %d redis lease(s) of '%s' expired while held "
                                "(Redis unreachable longer than lease_seconds?)", lost, limiter.name)

    async def _listen_forever(self) -> None:
        """Release notices from every replica wake this replica's waiters at once."""
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        limiter = self._limiters.get(_text(message.get("data")))
                        if limiter is not None:
                            limiter.wake()
            except self.errors:
                await asyncio.sleep(self.POLL_SECONDS * 4)  # waiters poll meanwhile
            finally:
                await pubsub.aclose()

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, *self._background, return_exceptions=True)
        self._workers = []
        await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    """A cap shared across replicas. `snapshot()` counts this replica's slots and waiters."""

    def __init__(self, name: str, capacity: int, backend: RedisBackend):
        self.name = name
        self.capacity = capacity
        self.backend = backend
        self.keys = backend.keys(name)
        self.held_ids: set[str] = set()
        self.waiting_ids: set[str] = set()
        self.local = LocalLimiter(name, capacity)  # used only while Redis is unreachable
        self._changed = asyncio.Event()

    def snapshot(self) -> tuple[int, int]:
        inflight, queued = self.local.snapshot()
        return inflight + len(self.held_ids), queued + len(self.waiting_ids)

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        self.local.resize(capacity)
        self.wake()

    def wake(self) -> None:
        self._changed.set()

    async def acquire(self, *, wait: bool, timeout: float | None) -> Slot | None:
        if time.monotonic() < self.backend.down_until:
            return await self.local.acquire(wait=wait, timeout=timeout)
        started = time.monotonic()
        try:
            return await self._acquire(uuid.uuid4().hex, wait, timeout, started)
        except self.backend.errors as exc:
            self.backend.down_until = time.monotonic() + self.backend.OUTAGE_SECONDS
            log.warning("concurrency: redis unreachable, capping '%s' per replica for now: %s", self.name, exc)
            left = None if timeout is None else timeout - (time.monotonic() - started)
            return await self.local.acquire(wait=wait, timeout=left)

    async def _acquire(self, lease_id: str, wait: bool, timeout: float | None, started: float) -> Slot | None:
        granted = settled = False
        try:
            granted = await self.backend.try_acquire(self, lease_id)
            settled = not granted  # Redis holds nothing under this id
            if granted or not wait or (timeout is not None and timeout <= 0):
                return self._slot(lease_id, 0.0) if granted else None
            settled = False
            granted = await self._wait_in_queue(lease_id, started, timeout)
            return self._slot(lease_id, time.monotonic() - started) if granted else None
        finally:
            self.waiting_ids.discard(lease_id)
            if not granted and not settled:  # queued, failed or cancelled mid-script: leave nothing behind
                self.backend.forget(self, lease_id, released=False)

    async def _wait_in_queue(self, lease_id: str, started: float, timeout: float | None) -> bool:
        self.waiting_ids.add(lease_id)
        await self.backend.enqueue(self, lease_id)
        while True:
            self._changed.clear()
            if await self.backend.try_acquire(self, lease_id):
                return True
            pause = self.backend.POLL_SECONDS
            if timeout is not None:
                remaining = timeout - (time.monotonic() - started)
                if remaining <= 0:
                    return False
                pause = min(pause, remaining)
            try:
                await asyncio.wait_for(self._changed.wait(), pause)
            except asyncio.TimeoutError:
                pass

    def _slot(self, lease_id: str, waited: float) -> Slot:
        self.held_ids.add(lease_id)
        return Slot(lambda: self._release(lease_id), waited)

    def _release(self, lease_id: str) -> None:
        self.held_ids.discard(lease_id)
        self.wake()
        self.backend.forget(self, lease_id, released=True)
