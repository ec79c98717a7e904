"""Connecting to an upstream (proxy/upstream/dns.py): a host's addresses are looked up once per
DNS_TTL and shared by concurrent lookups, forgotten when no address connects, and raced with
happy eyeballs, so an address that never answers does not keep the connection from the next."""
from __future__ import annotations

import asyncio
import socket

import pytest

from proxy.upstream import dns
from proxy.upstream import pool as upstream_client
from tests.helpers import free_port
from tests.upstreams.scripted_upstream import MODEL_LIST, Reply, ScriptedUpstream

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def lookups(monkeypatch):
    """Every getaddrinfo the resolver asks, answered with loopback."""
    asked = []

    async def getaddrinfo(host, port, **kwargs):
        asked.append((host, port))
        await asyncio.sleep(0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return asked


async def test_addresses_are_reused_until_the_ttl_passes(lookups):
    clock = Clock()
    resolver = dns.Resolver(ttl=300.0, clock=clock)
    first = await resolver.resolve("api.example.test", 443)
    clock.now += 299
    assert await resolver.resolve("api.example.test", 443) == first
    assert lookups == [("api.example.test", 443)]
    clock.now += 2
    await resolver.resolve("api.example.test", 443)
    assert lookups == [("api.example.test", 443)] * 2


async def test_concurrent_lookups_of_one_host_share_one_query(lookups):
    resolver = dns.Resolver()
    answers = await asyncio.gather(*(resolver.resolve("api.example.test", 443) for _ in range(20)))
    assert lookups == [("api.example.test", 443)] and all(answer == answers[0] for answer in answers)


async def test_a_host_whose_addresses_all_fail_is_looked_up_again(lookups):
    resolver = dns.Resolver()
    port = free_port()  # nothing listens
    with pytest.raises(OSError):
        await dns.connect("moved.example.test", port, resolver)
    with pytest.raises(OSError):
        await dns.connect("moved.example.test", port, resolver)
    assert lookups == [("moved.example.test", port)] * 2


async def test_an_address_that_never_answers_does_not_hold_up_the_next(monkeypatch):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=MODEL_LIST)).start()
    resolver = dns.Resolver()
    # A dual-stack name whose first address is unroutable (TEST-NET-1), the second the upstream.
    resolver._cache[("dual.example.test", upstream.port)] = (float("inf"), [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", upstream.port)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", upstream.port))])
    monkeypatch.setattr(dns, "RESOLVER", resolver)
    pool = upstream_client.Pool(f"http://dual.example.test:{upstream.port}/v1")
    try:
        loop = asyncio.get_running_loop()
        response = await upstream_client.send(pool, "GET", pool.target("models"), {}, b"", connect_timeout=20,
                                              read_timeout=20, deadline=loop.time() + 20)
        assert response.status == 200 and b'"data"' in await response.read()
        response.release()
    finally:
        pool.close()
        await upstream.close()
    assert [seen.path for seen in upstream.seen] == ["/v1/models"]
