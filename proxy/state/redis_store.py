"""The Redis store: every replica continues every conversation.

Each record is one key with Redis's own expiry (`ttl`); `max_bytes` caps one record (the
store's total is Redis's `maxmemory` to bound). Timeouts are short and an outage is
remembered for a few seconds, so a request that needs the store gets a 503 at once instead of
waiting on a dead server; requests with `store: false` never touch it.

Imported only when `responses.store.backend: redis` is configured.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Optional

from proxy.config.model import StoreConfig
from proxy.state.store import StoreUnavailable

log = logging.getLogger(__name__)


class RedisStore:
    OUTAGE_SECONDS = 2.0  # after a failure, answer 503 at once this long before trying again

    def __init__(self, settings: StoreConfig):
        try:
            import redis.asyncio as redis_asyncio
            from redis.exceptions import RedisError
        except ImportError:
            raise RuntimeError("responses store backend 'redis' needs the redis package: "
                               "pip install 'byok-proxy[redis]'") from None
        assert settings.url is not None  # the config loader insists on it
        self.settings = settings
        self.max_bytes = settings.max_bytes_count
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
        self._client = redis_asyncio.Redis.from_url(settings.url.reveal(), socket_connect_timeout=1.0,
                                                    socket_timeout=2.0)
        self._down_until = 0.0

    def _key(self, response_id: str) -> str:
        return f"{self.settings.key_prefix}:{response_id}"

    async def get(self, response_id: str) -> Optional[bytes]:
        return await self._call(self._client.get(self._key(response_id)))

    async def put(self, response_id: str, record: bytes) -> bool:
        if len(record) > self.max_bytes:
            return False
        await self._call(self._client.set(self._key(response_id), record,
                                          px=max(1, int(self.settings.ttl * 1000))))
        return True

    async def delete(self, response_id: str) -> bool:
        return bool(await self._call(self._client.delete(self._key(response_id))))

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, command: Awaitable[Any]) -> Any:
        if not self.available():
            close = getattr(command, "close", None)
            if close is not None:
                close()  # the coroutine is never awaited
            raise StoreUnavailable("the responses store (redis) cannot be reached; try again shortly")
        try:
            return await command
        except self._errors as exc:
            self._down_until = time.monotonic() + self.OUTAGE_SECONDS
            log.warning("responses store: redis failed (%s); requests that need it get 503 for %gs",
                        type(exc).__name__, self.OUTAGE_SECONDS)
            raise StoreUnavailable("the responses store (redis) cannot be reached; try again shortly") from None
