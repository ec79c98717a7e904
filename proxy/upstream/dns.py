"""Opening a TCP connection to a host: its addresses cached for DNS_TTL seconds, then tried
with happy eyeballs (RFC 8305).

Why a cache: every new pooled connection would otherwise ask the resolver again (a thread-pool
getaddrinfo per connection, which aiohttp's client avoided with a 300 s cache). Why happy
eyeballs: on a dual-stack host whose IPv6 route is broken, trying the addresses one after the
other waits out a whole connect timeout before IPv4 gets its turn; racing them, staggered by
HAPPY_EYEBALLS_DELAY, connects as soon as any address answers. Addresses alternate between
families (interleave) as the RFC advises.

A connection that fails on every address drops the host from the cache, so an upstream that
moved is looked up again on the next attempt rather than after the TTL.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable

import aiohappyeyeballs

DNS_TTL = 300.0              # seconds a resolved host's addresses are reused (aiohttp's default)
HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address is tried alongside (RFC 8305's 250 ms)

AddrInfo = tuple  # (family, type, proto, canonname, sockaddr), as getaddrinfo returns them


class Resolver:
    """Addresses per (host, port), each kept for `ttl` seconds; concurrent lookups of one host share one query."""

    def __init__(self, ttl: float = DNS_TTL, clock: Callable[[], float] = time.monotonic):
        self._ttl, self._clock = ttl, clock
        self._cache: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[AddrInfo]]] = {}

    async def resolve(self, host: str, port: int) -> list[AddrInfo]:
        key = (host, port)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        pending = self._pending.get(key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():  # one loop's, gone with it
            pending = self._pending[key] = asyncio.ensure_future(self._lookup(key))
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)  # a cancelled caller leaves the query to the others

    def _settled(self, key: tuple[str, int], done: asyncio.Future) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every caller may have given up waiting

    async def _lookup(self, key: tuple[str, int]) -> list[AddrInfo]:
        infos = await asyncio.get_running_loop().getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
        self._cache[key] = (self._clock() + self._ttl, infos)
        return infos

    def forget(self, host: str, port: int) -> None:
        self._cache.pop((host, port), None)


RESOLVER = Resolver()


async def connect(host: str, port: int, resolver: Resolver | None = None) -> socket.socket:
    """A connected, non-blocking socket to host:port; OSError (socket.gaierror for DNS) when none."""
    resolver = resolver or RESOLVER
    infos = await resolver.resolve(host, port)
    try:
        return await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                                                       interleave=1)
    except OSError:
        resolver.forget(host, port)
        raise
