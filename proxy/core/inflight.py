"""The one in-flight tracker: how many requests (streams included) are running, and an
asyncio.Event that is set whenever none is. Drain waits on it before interrupting what is
left; a config reload waits on its old generation's tracker before closing that generation.
Waiting is an `Event.wait`, not a polling loop.
"""
from __future__ import annotations

import asyncio


class InFlight:
    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    def enter(self) -> None:
        self._count += 1
        self._idle.clear()

    def leave(self) -> None:
        self._count -= 1
        if self._count <= 0:
            self._count = 0
            self._idle.set()

    async def wait_idle(self, timeout: float | None) -> bool:
        """True once nothing is in flight; False when `timeout` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
