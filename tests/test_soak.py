"""A bounded soak: thousands of requests through a real `byok-proxy serve` process with
random upstream faults and random client disconnects. Every request must end with a
full answer or a clear error, none may hang, and in-flight and queued counts return to 0."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import subprocess
import sys
import textwrap
import time

import aiohttp
import openai
import pytest
from aiohttp import web

from tests import faults
from tests.faults import ChatUpstream
from tests.helpers import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.timeout(150)

REQUESTS = int(os.environ.get("BYOK_SOAK_REQUESTS", "2500"))
TIME_LIMIT = float(os.environ.get("BYOK_SOAK_SECONDS", "50"))  # stop issuing new requests after this
PARALLEL = 48
HANG_LIMIT = 30.0  # a request still open after this long counts as hung
REPLY = "the quick brown fox jumps over the lazy dog"
MESSAGES = [{"role": "user", "content": "soak"}]
SEED = int(os.environ.get("BYOK_SOAK_SEED", str(random.randrange(1 << 30))))

# (weight, fault) per chat request the upstreams receive; None answers normally.
FAULTS = [
    (70, None),
    (6, faults.status(500)),
    (3, faults.status(429)),
    (1, faults.status(429, retry_after=1)),
    (5, faults.drop_before_content()),
    (4, faults.error_event_before_content()),
    (5, faults.drop_mid_stream(["the quick", " brown"])),
    (2, faults.hang(3)),  # past first_byte: a timeout
    (4, "reset"),
]


def faulty(upstream: ChatUpstream, rng: random.Random):
    weights = [weight for weight, _ in FAULTS]
    choices = [fault for _, fault in FAULTS]

    async def handler(request: web.Request) -> web.StreamResponse:
        fault = rng.choices(choices, weights)[0]
        if fault == "reset":  # the connection dies before any answer
            request.transport.abort()
            return web.Response()
        if fault is not None:
            return await fault(request)
        return await upstream._route(request, await request.read())
    return handler


@pytest.fixture
async def upstreams():
    rng = random.Random(SEED)
    started = []
    for _ in range(3):
        upstream = await ChatUpstream(reply=REPLY, chunk_delay=0.005).start()
        upstream.override = faulty(upstream, rng)
        started.append(upstream)
    yield started
    for upstream in started:
        await upstream.close()


@pytest.fixture
def proxy(tmp_path, upstreams):
    # (name, cap, extra settings): caps of 6, 4 and 2 against 48 parallel clients keep queues busy.
    layout = [("main", 6, "retries: 1"), ("backup", 4, ""), ("spare", 2, "")]
    blocks = "".join(f"""
      {name}:
        base_url: {upstream.url}/v1
        discover_models: false
        max_concurrent_requests: {cap}
        queue_timeout: 2
        timeout: {{connect: 1, first_byte: 1, total: 20}}
        circuit: {{failures: 8, cooldown: 1}}
        {extra}""" for (name, cap, extra), upstream in zip(layout, upstreams))
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent("""
    health: {enabled: false}
    shutdown_grace: 2
    logging: {requests: false, level: error}
    upstreams:""" + blocks + """
    models:
      soak: {targets: [main/m1, backup/m2, spare/m3]}
    """))
    port = free_port()
    log = open(tmp_path / "proxy.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        try:
            wait_for_port(port, timeout=30)
        except TimeoutError:
            raise RuntimeError((tmp_path / "proxy.log").read_text()) from None
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class Outcomes(collections.Counter):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def bad(self, what: str) -> None:
        self["bad"] += 1
        if len(self.problems) < 20:
            self.problems.append(what)


async def one_request(client, rng: random.Random, outcomes: Outcomes) -> None:
    stream = rng.random() < 0.6
    hang_up = rng.random() < 0.12  # this client goes away early
    try:
        if stream:
            await asyncio.wait_for(streamed(client, hang_up, outcomes), HANG_LIMIT)
        elif hang_up:
            call = client.chat.completions.create(model="soak", messages=MESSAGES)
            try:
                await asyncio.wait_for(call, rng.uniform(0.0, 0.05))  # gives up mid-request
                outcomes["full"] += 1
            except asyncio.TimeoutError:
                outcomes["client_hung_up"] += 1
        else:
            answer = await asyncio.wait_for(client.chat.completions.create(model="soak", messages=MESSAGES),
                                            HANG_LIMIT)
            check_full(answer.choices[0].message.content, answer.choices[0].finish_reason, outcomes)
    except asyncio.TimeoutError:
        outcomes.bad("a request hung")
    except openai.APIStatusError as error:
        clear_error(error.status_code, error.message, outcomes)
    except openai.APIConnectionError as error:
        outcomes.bad(f"connection failed: {error!r}")


async def streamed(client, hang_up: bool, outcomes: Outcomes) -> None:
    stream = await client.chat.completions.create(model="soak", messages=MESSAGES, stream=True)
    text, finish = "", None
    try:
        async for piece in stream:
            if piece.choices:
                text += piece.choices[0].delta.content or ""
                finish = piece.choices[0].finish_reason or finish
            if hang_up and text:
                outcomes["client_hung_up"] += 1
                return
    except openai.APIError as error:  # the stream's error event: clear, never a silent truncation
        if isinstance(error, openai.APIStatusError) or not error.message:
            raise
        outcomes["error_event"] += 1
        return
    finally:
        await stream.close()
    check_full(text, finish, outcomes)


def check_full(text: str | None, finish: str | None, outcomes: Outcomes) -> None:
    if text == REPLY and finish == "stop":
        outcomes["full"] += 1
    else:
        outcomes.bad(f"an answer that is neither full nor an error: {text!r} finish={finish}")


def clear_error(status: int, message: str, outcomes: Outcomes) -> None:
    if status in (429, 502, 503, 504) and "upstream" in message:
        outcomes[f"error_{status}"] += 1
    else:
        outcomes.bad(f"unclear error {status}: {message}")


async def slot_counts(base: str) -> dict[str, tuple[int, int]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/upstreams") as response:
            payload = await response.json()
    return {entry["name"]: (entry["inflight"], entry["queued"]) for entry in payload["data"]}


async def test_soak_every_request_ends_well_and_no_slot_leaks(proxy, upstreams):
    rng = random.Random(SEED + 1)
    outcomes = Outcomes()
    gate = asyncio.Semaphore(PARALLEL)
    clients = [openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key="soak", max_retries=0, timeout=HANG_LIMIT * 2)
               for _ in range(4)]
    started = time.monotonic()

    async def guarded(number: int) -> None:
        async with gate:
            if time.monotonic() - started < TIME_LIMIT:
                await one_request(clients[number % len(clients)], rng, outcomes)

    await asyncio.gather(*(guarded(number) for number in range(REQUESTS)))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.close()

    deadline = time.monotonic() + 10
    while True:
        counts = await slot_counts(proxy)
        if all(count == (0, 0) for count in counts.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    finished = sum(outcomes.values())
    print(f"\nsoak seed={SEED}: {finished} requests in {elapsed:.1f}s: {json.dumps(dict(outcomes))}")
    assert counts == {"main": (0, 0), "backup": (0, 0), "spare": (0, 0)}, f"slots leaked: {counts}"
    assert all(upstream.chat_inflight == 0 for upstream in upstreams)
    assert outcomes["bad"] == 0, "\n".join(outcomes.problems)
    assert finished >= min(REQUESTS, 1000), "the soak ran too few requests to mean much"
    assert outcomes["full"] > finished * 0.6, "fallback should turn most faults into full answers"
    assert outcomes["client_hung_up"] > 0 and outcomes["error_event"] > 0, "the faults were exercised"
    main, backup, spare = upstreams
    assert main.chat_max_inflight <= 6 and backup.chat_max_inflight <= 4 and spare.chat_max_inflight <= 2
