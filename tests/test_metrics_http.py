"""GET /metrics after real traffic through the real server, with the openai SDK.

Each test sends requests the way an application would and reads the
exposition the way Prometheus would, then checks the series that traffic
must have moved.
"""
from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.logs import ACCESS_LOGGER
from tests.conftest import client_for
from tests.upstreams.openai_upstream import OpenAIUpstream

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "count my tokens please"}]


async def scrape(proxy) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: dict, name: str, **labels: str) -> float:
    if name == "byok_requests_total":
        labels.setdefault("api", "chat")  # these tests drive Chat Completions
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (sample_name, sample_labels), v in samples.items()
               if sample_name == name and wanted <= set(sample_labels))


@pytest.fixture
async def backup():
    upstream = await OpenAIUpstream(reply="from the backup").start()
    yield upstream
    await upstream.close()


def config(primary_url: str, backup_url: str, extra: str = "") -> str:
    return f"""
    health: {{enabled: false}}
    upstreams:
      primary:
        base_url: {primary_url}
        discover_models: false
        models: {{gpt-test: {{}}}}
        {extra}
      backup:
        base_url: {backup_url}
        discover_models: false
      demo:
        format: mock
        models: {{echo-1: {{}}}}
    models:
      main: [primary/gpt-test, backup/gpt-backup]
    """


async def test_streamed_and_plain_requests_count_with_tokens_and_time_to_first_token(
        openai_upstream, backup, proxy_factory):
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    client = client_for(proxy)
    await client.chat.completions.create(model="main", messages=MESSAGES)
    stream = await client.chat.completions.create(model="main", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)  # the usage the proxy asked for is not shown
    samples = await scrape(proxy)
    labels = {"upstream": "primary", "model": "gpt-test"}
    assert value(samples, "byok_requests_total", status="200", **labels) == 2
    assert value(samples, "byok_request_duration_seconds_count", **labels) == 2
    assert value(samples, "byok_time_to_first_token_seconds_count", **labels) == 1  # streams only
    # 5 prompt tokens each; 4 completion tokens plain, 3 streamed pieces ("hello from upstream")
    assert value(samples, "byok_tokens_total", direction="in", **labels) == 10
    assert value(samples, "byok_tokens_total", direction="out", **labels) == 7
    assert value(samples, "byok_proxy_overhead_seconds_count") == 2
    assert value(samples, "byok_queue_wait_seconds_count", upstream="primary") == 2
    assert value(samples, "byok_inflight_requests", upstream="primary") == 0


async def test_fallbacks_count_by_reason_and_the_request_counts_where_it_was_served(
        openai_upstream, backup, proxy_factory):
    openai_upstream.fail_status = 503
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    completion = await client_for(proxy).chat.completions.create(model="main", messages=MESSAGES)
    assert completion.choices[0].message.content == "from the backup"
    samples = await scrape(proxy)
    assert value(samples, "byok_fallbacks_total", **{"from": "primary", "to": "backup", "reason": "503"}) == 1
    # gpt-backup is an alias target, so it is a label; the request is counted once, where it was served
    assert value(samples, "byok_requests_total", upstream="backup", model="gpt-backup", status="200") == 1
    assert total(samples, "byok_requests_total") == 1
    assert value(samples, "byok_proxy_overhead_seconds_count") == 0  # two attempts: not pure proxy time


async def test_unknown_models_are_counted_as_other(proxy_factory, openai_upstream, backup):
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    client = client_for(proxy)
    for index in range(3):
        await client.chat.completions.create(model=f"demo/made-up-{index}", messages=MESSAGES)
    await client.chat.completions.create(model="demo/echo-1", messages=MESSAGES)
    samples = await scrape(proxy)
    assert value(samples, "byok_requests_total", upstream="demo", model="other", status="200") == 3
    assert value(samples, "byok_requests_total", upstream="demo", model="echo-1", status="200") == 1
    models = {dict(labels).get("model") for (name, labels), count in samples.items()
              if name == "byok_requests_total" and count}
    assert models == {"other", "echo-1"}


async def test_refusals_before_routing_are_counted_without_an_upstream(proxy_factory, openai_upstream, backup):
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    with pytest.raises(openai.NotFoundError):
        await client_for(proxy).chat.completions.create(model="no-such-model", messages=MESSAGES)
    samples = await scrape(proxy)
    assert value(samples, "byok_requests_total", upstream="none", model="other", status="404") == 1


async def test_upstream_errors_are_counted_with_their_status(proxy_factory, openai_upstream, backup):
    openai_upstream.fail_status = 400
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    with pytest.raises(openai.BadRequestError):
        await client_for(proxy).chat.completions.create(model="primary/gpt-test", messages=MESSAGES)
    samples = await scrape(proxy)
    assert value(samples, "byok_requests_total", upstream="primary", model="gpt-test", status="400") == 1


async def test_concurrency_rejections_and_queue_state_are_exposed(proxy_factory, openai_upstream, backup):
    openai_upstream.chunk_delay = 0.3
    proxy = await proxy_factory(config(openai_upstream.url, backup.url,
                                       extra="max_concurrent_requests: 1\n        queue_timeout: 0.2"))
    client = client_for(proxy)
    holder = await client.chat.completions.create(model="primary/gpt-test", messages=MESSAGES, stream=True)
    first = await holder.__anext__()  # the slot is now held by a live stream
    assert first is not None
    waiting = asyncio.ensure_future(client.chat.completions.create(model="primary/gpt-test", messages=MESSAGES))
    await asyncio.sleep(0.1)
    during = await scrape(proxy)
    assert value(during, "byok_inflight_requests", upstream="primary") == 1
    assert value(during, "byok_queued_requests", upstream="primary") == 1
    with pytest.raises(openai.RateLimitError):
        await waiting
    async for _ in holder:
        pass
    after = await scrape(proxy)
    assert value(after, "byok_rejected_total", upstream="primary", reason="queue_timeout") == 1
    assert value(after, "byok_requests_total", upstream="primary", model="gpt-test", status="429") == 1
    assert value(after, "byok_inflight_requests", upstream="primary") == 0


async def test_a_client_that_leaves_mid_stream_is_counted_as_499(proxy_factory, openai_upstream, backup):
    openai_upstream.chunks = ["a", "b", "c", "d", "e", "f"]
    openai_upstream.chunk_delay = 0.2
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json={
                "model": "primary/gpt-test", "messages": MESSAGES, "stream": True}) as response:
            async for line in response.content:
                if b'{"content": "a"}' in line:
                    break
    for _ in range(50):
        samples = await scrape(proxy)
        if value(samples, "byok_requests_total", upstream="primary", model="gpt-test", status="499"):
            break
        await asyncio.sleep(0.05)
    assert value(samples, "byok_requests_total", upstream="primary", model="gpt-test", status="499") == 1
    assert value(samples, "byok_inflight_requests", upstream="primary") == 0


async def test_each_request_writes_one_access_line(proxy_factory, openai_upstream, backup, caplog):
    openai_upstream.fail_status = 500
    proxy = await proxy_factory(config(openai_upstream.url, backup.url))
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    stream = await client_for(proxy).chat.completions.create(
        model="main", messages=MESSAGES, stream=True, extra_headers={"x-request-id": "trace-me-1"})
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "from the backup"
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    fields = record.byok_fields
    assert fields["request_id"] == "trace-me-1"
    assert fields["model"] == "main"
    assert fields["upstreams"] == ["primary/gpt-test", "backup/gpt-backup"]
    assert fields["served_by"] == "backup" and fields["status"] == 200 and fields["stream"] is True
    assert fields["fallback_reason"] == "500"
    assert fields["ttft_ms"] is not None and fields["duration_ms"] >= fields["ttft_ms"]
    assert fields["tokens_out"] == 3
    json.dumps(fields)  # serializable as is
