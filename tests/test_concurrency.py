"""Concurrency caps through the real server: never more than the cap in flight, a FIFO
queue bounded by queue_timeout, overflow to the next target, slots that always come back."""
from __future__ import annotations

import asyncio
import textwrap
import time

import aiohttp
import openai
import pytest

from proxy.config.model import parse_config
from proxy.resilience.limiter import LocalLimiter
from tests.conftest import client_for
from tests.faults import ChatUpstream, backup, main  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "hello"}]


def config(main_url: str, *, cap: int = 2, queue_timeout: float = 30, backup_url: str | None = None,
           backup_cap: int | None = None) -> str:
    backup = ""
    targets = "[main/m1]"
    if backup_url:
        cap_line = f"max_concurrent_requests: {backup_cap}" if backup_cap else ""
        backup = f"""
      backup:
        base_url: {backup_url}/v1
        discover_models: false
        {cap_line}"""
        targets = "[main/m1, backup/m2]"
    return f"""
    health: {{enabled: false}}
    upstreams:
      main:
        base_url: {main_url}/v1
        discover_models: false
        max_concurrent_requests: {cap}
        queue_timeout: {queue_timeout}{backup}
    models:
      smart: {{targets: {targets}}}
    """


async def ask(client, stream: bool = False) -> tuple[str, str]:
    """(answer, which upstream served it)."""
    if not stream:
        raw = await client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
        return raw.parse().choices[0].message.content, raw.headers["x-byok-upstream"]
    raw = await client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    text = ""
    async for piece in raw.parse():
        if piece.choices and piece.choices[0].delta.content:
            text += piece.choices[0].delta.content
    return text, raw.headers["x-byok-upstream"]


def chat_requests(upstream: ChatUpstream) -> int:
    return len(upstream.requests)


# ---- through the server --------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_cap_of_two_holds_with_ten_parallel_slow_requests(proxy_factory, main, stream):
    if stream:
        main.chunk_delay = 0.05  # slow streams: the slot must be held until each ends
    else:
        main.delay_before_headers = 0.2
    proxy = await proxy_factory(config(main.url, cap=2))
    client = client_for(proxy)
    answers = await asyncio.gather(*(ask(client, stream) for _ in range(10)))
    assert answers == [("hello from upstream", "main")] * 10
    assert main.chat_max_inflight == 2
    assert proxy.app.services.limiters.snapshot("main") == (0, 0)


async def test_short_queue_timeout_gives_429_with_retry_after(proxy_factory, main):
    main.delay_before_headers = 1.5
    proxy = await proxy_factory(config(main.url, cap=1, queue_timeout=0.2))
    client = client_for(proxy)
    results = await asyncio.gather(*(ask(client) for _ in range(3)), return_exceptions=True)
    refused = [result for result in results if isinstance(result, openai.RateLimitError)]
    assert len(refused) == 2 and ("hello from upstream", "main") in results
    for error in refused:
        assert error.response.headers["retry-after"] == "1"
        assert error.code == "queue_timeout"
        assert "concurrency limit (1)" in error.message
    assert chat_requests(main) == 1
    assert proxy.app.services.limiters.snapshot("main") == (0, 0)


async def test_saturated_main_overflows_to_the_fallback_target(proxy_factory, main, backup):
    main.delay_before_headers = 1.0
    proxy = await proxy_factory(config(main.url, cap=1, queue_timeout=0.2, backup_url=backup.url))
    client = client_for(proxy)
    started = time.monotonic()
    first = asyncio.ensure_future(ask(client))
    await _until(lambda: main.chat_inflight == 1)
    overflowed = await asyncio.gather(*(ask(client, stream) for stream in (False, True)))
    assert overflowed == [("answer from backup", "backup")] * 2
    assert time.monotonic() - started < 1.0, "overflow went at once, without waiting for main"  # main takes 1 s
    assert await first == ("hello from upstream", "main")
    assert chat_requests(main) == 1


async def test_when_every_target_is_full_the_request_queues_on_the_first(proxy_factory, main, backup):
    main.delay_before_headers = backup.delay_before_headers = 0.5
    proxy = await proxy_factory(config(main.url, cap=1, queue_timeout=10,
                                       backup_url=backup.url, backup_cap=1))
    client = client_for(proxy)
    results = await asyncio.gather(*(ask(client) for _ in range(3)))
    served = sorted(upstream for _, upstream in results)
    assert served == ["backup", "main", "main"]
    assert main.chat_max_inflight == 1 and backup.chat_max_inflight == 1


async def test_streaming_client_disconnect_frees_its_slot_at_once(proxy_factory, main):
    main.chunks = [f" word{index}" for index in range(40)]
    main.chunk_delay = 0.25  # a 10 s stream
    proxy = await proxy_factory(config(main.url, cap=1, queue_timeout=30))
    client = client_for(proxy)
    stream = await client.chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    async for piece in stream:
        if piece.choices and piece.choices[0].delta.content:
            break  # the first word arrived: the slot is surely held
    queued = asyncio.ensure_future(client_for(proxy).chat.completions.create(model="smart", messages=MESSAGES))
    await _until(lambda: proxy.app.services.limiters.snapshot("main") == (1, 1))
    async with aiohttp.ClientSession() as session:  # what operators see meanwhile
        async with session.get(f"{proxy.base_url}/upstreams") as response:
            [entry] = (await response.json())["data"]
        async with session.get(f"{proxy.url}/metrics") as response:
            exposition = await response.text()
    assert (entry["inflight"], entry["queued"]) == (1, 1)
    assert 'byok_inflight_requests{upstream="main"} 1.0' in exposition
    assert 'byok_queued_requests{upstream="main"} 1.0' in exposition
    hung_up = time.monotonic()
    await stream.close()  # the client goes away mid-stream
    main.chunk_delay = 0.0
    answer = await asyncio.wait_for(queued, 10)
    # The queued request ran as soon as the stream was abandoned, not after its 10 s.
    assert time.monotonic() - hung_up < 5.0
    assert answer.choices[0].message.content == "hello from upstream"
    await _until(lambda: main.chat_inflight == 0)  # the upstream saw the hang-up too
    assert proxy.app.services.limiters.snapshot("main") == (0, 0)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/metrics") as response:
            exposition = await response.text()
    assert 'byok_queue_wait_seconds_count{upstream="main"} 2.0' in exposition  # both granted slots


async def test_failed_attempts_give_their_slot_back(proxy_factory, main):
    main.fail_status = 500
    proxy = await proxy_factory(config(main.url, cap=1, queue_timeout=0.5))
    client = client_for(proxy)
    for stream in (False, True, False):
        with pytest.raises(openai.InternalServerError):
            await ask(client, stream)
    assert proxy.app.services.limiters.snapshot("main") == (0, 0)
    main.fail_status = None
    assert await ask(client) == ("hello from upstream", "main")


async def test_a_reload_keeps_held_slots_and_applies_the_new_cap(proxy_factory, main):
    main.chunks = [f" word{index}" for index in range(20)]
    main.chunk_delay = 0.1
    proxy = await proxy_factory(config(main.url, cap=1, queue_timeout=0.2))
    limiters = proxy.app.services.limiters
    limiter = limiters.get("main")
    client = client_for(proxy)
    long_stream = asyncio.ensure_future(ask(client, stream=True))
    await _until(lambda: limiters.snapshot("main") == (1, 0) and main.emitted_at)  # it is streaming
    new_config = parse_config(textwrap.dedent(config(main.url, cap=2, queue_timeout=0.2)))
    await asyncio.wait_for(proxy.app.swap(new_config), 10)
    assert limiters.get("main") is limiter and limiter.capacity == 2
    main.chunks, main.chunk_delay = None, 0.0
    assert await asyncio.wait_for(ask(client), 10) == ("hello from upstream", "main")  # the second slot, no 429
    text, _ = await asyncio.wait_for(long_stream, 10)
    assert text == "".join(f" word{index}" for index in range(20))
    assert limiters.snapshot("main") == (0, 0)


# ---- the in-process limiter itself ---------------------------------------------------------

async def test_local_limiter_serves_waiters_first_in_first_out():
    limiter = LocalLimiter("u", 1)
    holder = await limiter.acquire(wait=False, timeout=None)
    order: list[int] = []

    async def waiter(number: int) -> None:
        slot = await limiter.acquire(wait=True, timeout=5)
        order.append(number)
        await asyncio.sleep(0.01)
        slot.release()

    tasks = []
    for number in range(5):
        tasks.append(asyncio.ensure_future(waiter(number)))
        await asyncio.sleep(0)  # each joins the queue in turn
    assert limiter.snapshot() == (1, 5)
    assert await limiter.acquire(wait=False, timeout=None) is None, "a newcomer must not jump the queue"
    holder.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.snapshot() == (0, 0)


async def test_local_limiter_timeout_and_cancellation_leave_nothing_behind():
    limiter = LocalLimiter("u", 1)
    holder = await limiter.acquire(wait=False, timeout=None)
    assert await limiter.acquire(wait=True, timeout=0.05) is None
    cancelled = asyncio.ensure_future(limiter.acquire(wait=True, timeout=5))
    await asyncio.sleep(0)
    assert limiter.snapshot() == (1, 1)
    cancelled.cancel()
    holder.release()  # the hand-off and the cancellation race: the slot must not be lost
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert limiter.snapshot() == (0, 0)
    again = await limiter.acquire(wait=False, timeout=None)
    assert again is not None
    again.release()
    again.release()  # idempotent
    assert limiter.snapshot() == (0, 0)


async def test_local_limiter_grant_then_cancel_returns_the_slot():
    limiter = LocalLimiter("u", 1)
    holder = await limiter.acquire(wait=False, timeout=None)
    waiting = asyncio.ensure_future(limiter.acquire(wait=True, timeout=5))
    await asyncio.sleep(0)
    holder.release()  # handed to the waiter...
    waiting.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter.snapshot() == (0, 0)


async def test_uncapped_limiter_only_counts():
    limiter = LocalLimiter("u", None)
    slots = [await limiter.acquire(wait=False, timeout=None) for _ in range(50)]
    assert all(slots) and limiter.snapshot() == (50, 0)
    for slot in slots:
        slot.release()
    assert limiter.snapshot() == (0, 0)


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
