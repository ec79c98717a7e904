"""The Redis-backed cap: one limit shared by every replica, through a real redis-server.

Replicas are real `python -m proxy serve` processes; one is killed with SIGKILL
mid-request to prove its slot comes back when its lease runs out.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from proxy.config.model import parse_config
from proxy.resilience.registry import LimiterRegistry
from tests.conftest import client_for
from tests.faults import closed_port, main  # noqa: F401 (fixture)
from tests.helpers import free_port, spawn_proxy, wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server is not installed (CI installs it)"),
]
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def redis_url():
    port = free_port()
    server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def concurrency_block(url: str, lease: float = 2.0, prefix: str | None = None) -> str:
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"  # a key space of its own for each test
    return f"concurrency: {{backend: redis, url: '{url}', lease_seconds: {lease}, key_prefix: '{prefix}'}}"


def replica_registries(url: str, cap: int, count: int = 2, lease: float = 2.0) -> list[LimiterRegistry]:
    """What `count` replicas with one config hold: separate registries, one Redis key space."""
    config = parse_config(textwrap.dedent(f"""
    {concurrency_block(url, lease)}
    upstreams:
      main: {{format: mock, max_concurrent_requests: {cap}}}
    """))
    registries = [LimiterRegistry() for _ in range(count)]
    for registry in registries:
        registry.configure(config)
    return registries


# ---- the limiter against Redis ------------------------------------------------------------

async def test_two_replicas_share_one_cap_first_in_first_out(redis_url):
    replicas = replica_registries(redis_url, cap=2)
    holding, most, order = 0, 0, []

    async def use(number: int) -> None:
        nonlocal holding, most
        slot = await replicas[number % 2].get("main").acquire(wait=True, timeout=20)
        assert slot is not None
        holding += 1
        most = max(most, holding)
        order.append(number)
        await asyncio.sleep(0.05)
        holding -= 1
        slot.release()

    tasks = []
    for number in range(8):
        tasks.append(asyncio.ensure_future(use(number)))
        await asyncio.sleep(0.03)  # each joins the queue in turn
    await asyncio.gather(*tasks)
    assert most == 2
    assert order == sorted(order), "waiters from both replicas are served in arrival order"
    for replica in replicas:
        assert replica.snapshot("main") == (0, 0)
        await replica.close()
    assert await redis_entries(redis_url, replicas[0]) == (0, 0)


async def test_timeouts_and_cancellations_leave_nothing_in_redis(redis_url):
    first, second = replica_registries(redis_url, cap=1)
    holder = await first.get("main").acquire(wait=False, timeout=None)
    assert await second.get("main").acquire(wait=True, timeout=0.3) is None
    waiting = asyncio.ensure_future(second.get("main").acquire(wait=True, timeout=10))
    await asyncio.sleep(0.3)
    assert second.snapshot("main") == (0, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    holder.release()
    for registry in (first, second):
        await registry.close()
    assert await redis_entries(redis_url, first) == (0, 0)


async def redis_entries(url: str, registry: LimiterRegistry) -> tuple[int, int]:
    """(leases, queue places) stored in Redis for the upstream `main`."""
    import redis.asyncio as redis_asyncio
    slots, queue, _, _ = registry.get("main").keys
    client = redis_asyncio.Redis.from_url(url)
    try:
        return await client.zcard(slots), await client.zcard(queue)
    finally:
        await client.aclose()


async def test_a_held_slot_outlives_its_lease_while_renewed(redis_url):
    owner, other = replica_registries(redis_url, cap=1, lease=0.6)
    slot = await owner.get("main").acquire(wait=False, timeout=None)
    assert slot is not None
    await asyncio.sleep(1.5)  # more than two leases long
    assert await other.get("main").acquire(wait=False, timeout=None) is None, "renewal kept the slot"
    slot.release()
    again = await other.get("main").acquire(wait=True, timeout=5)
    assert again is not None
    again.release()
    for registry in (owner, other):
        await registry.close()


async def test_without_redis_the_cap_still_holds_per_replica(caplog):
    [registry] = replica_registries(closed_port().replace("http", "redis").removesuffix("/v1"), cap=1, count=1)
    limiter = registry.get("main")
    slot = await limiter.acquire(wait=False, timeout=None)
    assert slot is not None, "an unreachable Redis must not fail requests"
    assert await limiter.acquire(wait=False, timeout=None) is None
    assert limiter.snapshot() == (1, 0)
    slot.release()
    assert limiter.snapshot() == (0, 0)
    assert "redis unreachable" in caplog.text
    await registry.close()


# ---- three proxy processes ------------------------------------------------------------------

@pytest.fixture
def replicas(tmp_path: Path, redis_url, main):
    """Three `byok-proxy serve` processes sharing one Redis cap of 2 (2 s leases)."""
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""
    health: {{enabled: false}}
    shutdown_grace: 1
    {concurrency_block(redis_url, lease=2.0)}
    upstreams:
      main:
        base_url: {main.url}/v1
        discover_models: false
        max_concurrent_requests: 2
        queue_timeout: 20
    """))
    ports = [free_port() for _ in range(3)]
    processes = [spawn_proxy(str(config), port, env={"BYOK_NO_UVLOOP": "1"}) for port in ports]
    try:
        for port, process in zip(ports, processes):
            wait_for_port(port, timeout=30, process=process)
        yield [_Replica(f"http://127.0.0.1:{port}", process) for port, process in zip(ports, processes)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


class _Replica:
    def __init__(self, url: str, process: subprocess.Popen):
        self.url, self.process = url, process

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


async def ask(replica) -> str:
    async with client_for(replica) as client:
        answer = await client.chat.completions.create(model="main/m", messages=MESSAGES)
    return answer.choices[0].message.content


async def test_three_replicas_never_exceed_the_shared_cap(replicas, main):
    main.delay_before_headers = 0.3
    answers = await asyncio.gather(*(ask(replicas[number % 3]) for number in range(12)))
    assert answers == ["hello from upstream"] * 12
    assert main.chat_max_inflight == 2


async def test_a_killed_replica_does_not_keep_its_slot_beyond_the_lease(replicas, main):
    main.delay_before_headers = 30  # both requests hold their slot until we let go
    doomed = asyncio.ensure_future(ask(replicas[0]))
    survivor = asyncio.ensure_future(ask(replicas[1]))
    deadline = time.monotonic() + 15
    while main.chat_inflight < 2:
        assert time.monotonic() < deadline, "the two requests never reached the upstream"
        await asyncio.sleep(0.05)
    replicas[0].process.send_signal(signal.SIGKILL)  # no chance to release anything
    replicas[0].process.wait(10)
    main.delay_before_headers = 0.0
    killed_at = time.monotonic()
    # The cap is full (one dead lease, one live request): this waits for the dead lease to expire.
    assert await ask(replicas[2]) == "hello from upstream"
    assert time.monotonic() - killed_at < 2.0 + 6.0, "the dead replica's slot came back with its lease"
    assert main.chat_max_inflight == 2
    survivor.cancel()
    for task in (doomed, survivor):
        with pytest.raises(BaseException):
            await task
