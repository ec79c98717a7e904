"""Load generators: closed loop, open loop at a fixed rate, streams, and many slow streams.

Every loop is bounded twice, by a request count and by a wall-clock deadline, so a stuck
or saturated server ends a run instead of hanging it. Latencies are measured on the
machine-wide monotonic clock in nanoseconds and summarised in milliseconds.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

import orjson

from bench.httpclient import ClientConnection, ConnectionClosed, StreamRecord, build_request

CHAT_PATH = "/v1/chat/completions"


def chat_body(model: str, stream: bool = False) -> bytes:
    body = {"model": model,
            "messages": [{"role": "system", "content": "You are a concise assistant."},
                         {"role": "user", "content": "Say hello in one short sentence, please."}],
            "max_tokens": 64, "temperature": 0}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def responses_body(model: str, stream: bool = False, store: bool = False) -> bytes:
    """The same question in the Responses API's shape (`store` true: the proxy keeps it)."""
    body = {"model": model, "instructions": "You are a concise assistant.",
            "input": [{"role": "user", "content": "Say hello in one short sentence, please."}],
            "max_output_tokens": 64, "temperature": 0, "store": store}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def messages_body(model: str, stream: bool = False) -> bytes:
    """The same question in the Anthropic Messages API's shape."""
    body = {"model": model, "system": "You are a concise assistant.",
            "messages": [{"role": "user", "content": "Say hello in one short sentence, please."}],
            "max_tokens": 64, "temperature": 0}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


RESPONSES_PATH = "/v1/responses"
MESSAGES_PATH = "/v1/messages"
_BODIES = {RESPONSES_PATH: responses_body, MESSAGES_PATH: messages_body}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str = CHAT_PATH
    # the client's API: the body's shape follows the path unless a native upstream takes chat bodies there
    shaped: bool = True
    stored: bool = False  # Responses requests with store: true

    def request(self, model: str, stream: bool = False) -> bytes:
        if self.shaped and self.path == RESPONSES_PATH:
            body = responses_body(model, stream, self.stored)
        else:
            body = (_BODIES.get(self.path, chat_body) if self.shaped else chat_body)(model, stream)
        headers = {"anthropic-version": "2023-06-01"} if self.path == MESSAGES_PATH else None
        return build_request(self.host, self.port, self.path, body, headers)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[min(rank, len(sorted_values) - 1)]


def summarize_ns(values_ns: list[int]) -> dict:
    values = sorted(value / 1e6 for value in values_ns)
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": percentile(values, 0.50), "p90_ms": percentile(values, 0.90),
            "p99_ms": percentile(values, 0.99), "max_ms": values[-1], "mean_ms": sum(values) / len(values)}


def _error_name(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__


# ---- closed loop: N connections, each sending its next request as soon as the last ends ----

async def closed_loop(endpoint: Endpoint, model: str, concurrency: int, duration: float,
                      max_requests: int = 10_000_000, payload: bytes | None = None) -> dict:
    """`payload`: a whole prepared HTTP request to send instead of the endpoint's for `model`."""
    payload = payload or endpoint.request(model)
    latencies: list[int] = []
    errors: Counter = Counter()
    statuses: Counter = Counter()
    deadline = time.monotonic() + duration
    budget = [max_requests]

    async def worker() -> None:
        connection = None
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            try:
                if connection is None or connection.closed:
                    connection = await ClientConnection.open(endpoint.host, endpoint.port)
                response = await asyncio.wait_for(connection.request(payload), timeout=max(0.1, deadline - time.monotonic() + 5))
            except (OSError, ConnectionClosed, asyncio.TimeoutError) as exc:
                errors[_error_name(exc)] += 1
                connection = None
                continue
            statuses[response.status] += 1
            if response.status == 200:
                latencies.append(response.latency_ns)
        if connection is not None:
            connection.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"concurrency": concurrency, "seconds": elapsed, "ok": len(latencies),
            "rps": len(latencies) / elapsed if elapsed else 0.0, "latency": summarize_ns(latencies),
            "statuses": {str(k): v for k, v in statuses.items()}, "errors": dict(errors)}


# ---- open loop: requests start on a fixed schedule whatever the server does ---------------

async def open_loop(endpoint: Endpoint, model: str, rate: float, duration: float, timeout: float = 10.0,
                    max_inflight: int = 2000, warm_connections: int = 32) -> dict:
    """Send `rate` requests per second for `duration` seconds.

    A request that finds no idle connection gets a new one, so a slow answer never delays
    the next send (no coordinated omission). `latency` counts from the moment the request
    was written; `latency_from_schedule` from its scheduled time, which also charges the
    generator's own lateness (`send_lag`, timer granularity is 1 ms under uvloop). Past `max_inflight` open requests the server is saturated
    and further sends are counted as `dropped` instead of opening yet more sockets.
    """
    payload = endpoint.request(model)
    total = max(1, int(rate * duration))
    interval_ns = int(1e9 / rate)
    idle: list[ClientConnection] = []
    for _ in range(min(warm_connections, total)):
        idle.append(await ClientConnection.open(endpoint.host, endpoint.port))
    latencies: list[int] = []
    scheduled_latencies: list[int] = []
    lags: list[int] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    inflight: set[asyncio.Task] = set()
    dropped = 0

    async def one(scheduled_ns: int) -> None:
        connection = idle.pop() if idle else None
        try:
            if connection is None or connection.closed:
                connection = await ClientConnection.open(endpoint.host, endpoint.port)
            lags.append(time.monotonic_ns() - scheduled_ns)
            response = await asyncio.wait_for(connection.request(payload), timeout)
        except (OSError, ConnectionClosed, asyncio.TimeoutError) as exc:
            errors[_error_name(exc)] += 1
            if connection is not None:
                connection.abort()
            return
        statuses[response.status] += 1
        if response.status == 200:
            latencies.append(response.latency_ns)
            scheduled_latencies.append(response.done_ns - scheduled_ns)
        if not connection.closed:
            idle.append(connection)

    start_ns = time.monotonic_ns() + 5_000_000
    for index in range(total):
        scheduled_ns = start_ns + index * interval_ns
        wait = (scheduled_ns - time.monotonic_ns()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        if len(inflight) >= max_inflight:
            dropped += 1
            continue
        task = asyncio.ensure_future(one(scheduled_ns))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    sent_seconds = (time.monotonic_ns() - start_ns) / 1e9
    if inflight:
        await asyncio.wait(set(inflight), timeout=timeout + 1)
    for task in list(inflight):
        task.cancel()
        errors["unfinished"] += 1
    for connection in idle:
        connection.close()
    return {"rate": rate, "seconds": sent_seconds, "scheduled": total, "ok": len(latencies), "dropped": dropped,
            "achieved_rps": len(latencies) / max(sent_seconds, 1e-9), "latency": summarize_ns(latencies),
            "latency_from_schedule": summarize_ns(scheduled_latencies), "send_lag": summarize_ns(lags), "statuses": {str(k): v for k, v in statuses.items()},
            "errors": dict(errors)}


# ---- streams: time to first content chunk and per-chunk delay ------------------------------

async def stream_latency(endpoint: Endpoint, model: str, concurrency: int, streams_per_worker: int,
                         timeout: float = 30.0) -> dict:
    payload = endpoint.request(model, stream=True)
    records: list[StreamRecord] = []
    errors: Counter = Counter()
    statuses: Counter = Counter()

    async def worker() -> None:
        connection = None
        for _ in range(streams_per_worker):
            record = StreamRecord()
            connection, response = await _stream_once(connection, endpoint, payload, record, timeout, errors)
            if response is None:
                continue
            statuses[response.status] += 1
            if response.status == 200 and record.done and record.first_content_ns:
                records.append(record)
            elif response.status == 200:
                errors["incomplete_stream"] += 1
        if connection is not None:
            connection.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    first = [record.first_content_ns - record.sent_ns for record in records]
    delays = [delay for record in records for delay in record.delays_ns]
    return {"concurrency": concurrency, "seconds": elapsed, "streams": len(records),
            "chunks_per_stream": (sum(r.content_events for r in records) / len(records)) if records else 0,
            "first_chunk": summarize_ns(first), "chunk_delay": summarize_ns(delays),
            "statuses": {str(k): v for k, v in statuses.items()}, "errors": dict(errors)}


async def _stream_once(connection, endpoint: Endpoint, payload: bytes, record: "StreamRecord", timeout: float,
                       errors: Counter):
    """One streamed request on a reused keep-alive connection (opened when needed).
    Returns (connection, response); (None, None) after a failure, which is counted in `errors`."""
    try:
        if connection is None or connection.closed:
            connection = await ClientConnection.open(endpoint.host, endpoint.port)
        return connection, await asyncio.wait_for(connection.request(payload, record), timeout)
    except (OSError, ConnectionClosed, asyncio.TimeoutError) as exc:
        errors[_error_name(exc)] += 1
        return None, None


async def stream_throughput(endpoint: Endpoint, model: str, concurrency: int, streams_per_worker: int,
                            timeout: float = 60.0) -> dict:
    """Content chunks per second when the upstream sends as fast as it can."""
    payload = endpoint.request(model, stream=True)
    chunks = [0]
    errors: Counter = Counter()

    async def worker() -> None:
        connection = None
        for _ in range(streams_per_worker):
            record = StreamRecord(keep_delays=False)
            connection, response = await _stream_once(connection, endpoint, payload, record, timeout, errors)
            if response is None:
                continue
            if response.status != 200 or not record.done:
                errors[f"status_{response.status}" if response.status != 200 else "incomplete_stream"] += 1
            chunks[0] += record.content_events
        if connection is not None:
            connection.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"concurrency": concurrency, "seconds": elapsed, "chunks": chunks[0],
            "chunks_per_s": chunks[0] / elapsed if elapsed else 0.0, "errors": dict(errors)}


# ---- many slow streams held open at once (the memory test) ---------------------------------

async def hold_streams(endpoint: Endpoint, model: str, count: int, connect_rate: float,
                       on_plateau: Callable[[dict], Awaitable[None]], settle: float = 5.0,
                       timeout: float = 120.0) -> dict:
    """Open `count` slow streams at `connect_rate` per second and keep them all open.

    A stream counts as held once its first content chunk has arrived and until it ends.
    When every stream has started (or `settle` seconds after the last one was sent) the
    `on_plateau` callback runs with the current counts: that is when memory is sampled.
    Then the streams run to their natural end, bounded by `timeout`.
    """
    payload = endpoint.request(model, stream=True)
    state = {"held": 0, "max_held": 0, "completed": 0, "failed": 0, "started": 0}
    errors: Counter = Counter()
    connections: list[ClientConnection] = []

    def held() -> None:
        state["started"] += 1
        state["held"] += 1
        state["max_held"] = max(state["max_held"], state["held"])

    async def one() -> None:
        record = StreamRecord(keep_delays=False, on_first_content=held)
        try:
            connection = await ClientConnection.open(endpoint.host, endpoint.port)
            connections.append(connection)
            response = await connection.request(payload, record)
            if response.status == 200 and record.done:
                state["completed"] += 1
            else:
                state["failed"] += 1
                errors[f"status_{response.status}" if response.status != 200 else "incomplete_stream"] += 1
            connection.close()
        except (OSError, ConnectionClosed) as exc:
            state["failed"] += 1
            errors[_error_name(exc)] += 1
        finally:
            if record.first_content_ns:
                state["held"] -= 1

    tasks = []
    started = time.monotonic()
    deadline = started + timeout
    for index in range(count):
        due = started + index / connect_rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        tasks.append(asyncio.ensure_future(one()))
    settle_until = time.monotonic() + settle
    while state["started"] + state["failed"] < count and time.monotonic() < settle_until:
        await asyncio.sleep(0.1)
    plateau = dict(state, ramp_seconds=time.monotonic() - started)
    await on_plateau(plateau)
    if tasks:
        await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
    unfinished = [task for task in tasks if not task.done()]
    for task in unfinished:
        task.cancel()
    for connection in connections:
        connection.abort()
    if unfinished:
        await asyncio.wait(unfinished, timeout=5)
    errors["unfinished"] += len(unfinished)
    return {"count": count, "held_at_plateau": plateau["held"], "max_held": state["max_held"],
            "completed": state["completed"], "failed": state["failed"] + len(unfinished),
            "ramp_seconds": plateau["ramp_seconds"], "seconds": time.monotonic() - started,
            "errors": {k: v for k, v in errors.items() if v}}
