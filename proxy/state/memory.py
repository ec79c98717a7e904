"""The in-memory store: bounded by `max_bytes` in total and by `ttl`, oldest evicted first.

Every record lives exactly `ttl` seconds, so insertion order is also expiry order: expired
records are always at the head, and so is the oldest one to evict for room.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Optional

from proxy.config.model import StoreConfig


class MemoryStore:
    def __init__(self, settings: StoreConfig, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.max_bytes = settings.max_bytes_count
        self._clock = clock
        self._records: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # id -> (expires at, record)
        self.size = 0

    async def get(self, response_id: str) -> Optional[bytes]:
        self._expire()
        entry = self._records.get(response_id)
        return entry[1] if entry is not None else None

    async def put(self, response_id: str, record: bytes) -> bool:
        if len(record) > self.max_bytes:
            return False
        self._drop(response_id)
        self._expire()
        while self._records and self.size + len(record) > self.max_bytes:
            self._drop(next(iter(self._records)))
        self._records[response_id] = (self._clock() + self.settings.ttl, record)
        self.size += len(record)
        return True

    async def delete(self, response_id: str) -> bool:
        self._expire()
        return self._drop(response_id)

    def available(self) -> bool:
        return True

    async def close(self) -> None:
        self._records.clear()
        self.size = 0

    def _expire(self) -> None:
        now = self._clock()
        while self._records:
            oldest, (expires_at, _) = next(iter(self._records.items()))
            if expires_at > now:
                return
            self._drop(oldest)

    def _drop(self, response_id: str) -> bool:
        entry = self._records.pop(response_id, None)
        if entry is None:
            return False
        self.size -= len(entry[1])
        return True
