"""The store contract, and the one factory that builds the configured backend.

Records are user content (prompts, answers): a store never logs one, nor an id's record size
next to its content; a failure is reported by what failed, never by what was being kept.
"""
from __future__ import annotations

from typing import Optional, Protocol

from proxy.config.model import StoreConfig
from proxy.core.errors import ServiceUnavailable


class StoreUnavailable(ServiceUnavailable):
    """The configured store cannot be reached: the request that needs it gets a 503 at once."""

    code = "store_unavailable"


class ResponseStore(Protocol):
    settings: StoreConfig

    async def get(self, response_id: str) -> Optional[bytes]:
        """The record, or None when it was never stored, was deleted, or expired."""

    async def put(self, response_id: str, record: bytes) -> bool:
        """Keep `record` for the TTL; False when it is larger than the store keeps."""

    async def delete(self, response_id: str) -> bool:
        """True when there was a record to delete."""

    def available(self) -> bool:
        """False while the backend is known to be down (no I/O: a request needing it fails fast)."""

    async def close(self) -> None: ...


def create_store(settings: StoreConfig) -> ResponseStore:
    if settings.backend == "redis":
        from proxy.state.redis_store import RedisStore  # the redis package is optional
        return RedisStore(settings)
    from proxy.state.memory import MemoryStore
    return MemoryStore(settings)
