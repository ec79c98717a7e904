"""Fallback through the real server: a request reaches an answer from the next target
when the first fails, streaming and not, and a stream that already began is never
silently truncated."""
from __future__ import annotations

import aiohttp
import openai
import pytest

from tests import faults
from tests.conftest import client_for
from tests.faults import ChatUpstream, backup, main  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "hello"}]


def config(main_url: str, backup_url: str, *, alias_extra: str = "", main_extra: str = "") -> str:
    return f"""
    health: {{enabled: false}}
    upstreams:
      main:
        base_url: {main_url}
        discover_models: false
        timeout: {{connect: 1, first_byte: 0.5, total: 10}}
        {main_extra}
      backup:
        base_url: {backup_url}
        discover_models: false
    models:
      smart:
        targets: [main/m1, backup/m2]
        {alias_extra}
    """


def chat_requests(upstream: ChatUpstream) -> int:
    return len(upstream.requests)


async def ask(proxy, stream: bool, model: str = "smart"):
    """(answer text, response headers) the way an application would read them."""
    client = client_for(proxy)
    if not stream:
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        return raw.parse().choices[0].message.content, raw.headers
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=True)
    text, ids = "", set()
    async for piece in raw.parse():
        ids.add(piece.id)
        if piece.choices and piece.choices[0].delta.content:
            text += piece.choices[0].delta.content
    assert ids == {"chatcmpl-test"}, f"chunks from a failed attempt reached the client: {ids}"
    return text, raw.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_main_answering_500_falls_back(proxy_factory, main, backup, stream):
    main.fail_status = 500
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    text, headers = await ask(proxy, stream)
    assert text == "answer from backup"
    assert headers["x-byok-upstream"] == "backup"
    assert headers["x-byok-fallbacks"] == "main/m1:500"
    assert chat_requests(main) == 1 and chat_requests(backup) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_refused_connection_falls_back(proxy_factory, backup, stream):
    proxy = await proxy_factory(config(faults.closed_port(), f"{backup.url}/v1"))
    text, headers = await ask(proxy, stream)
    assert text == "answer from backup"
    assert headers["x-byok-fallbacks"] == "main/m1:connect"


@pytest.mark.parametrize("stream", [False, True])
async def test_main_hanging_before_first_byte_falls_back(proxy_factory, main, backup, stream):
    main.override = faults.hang(3)
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    text, headers = await ask(proxy, stream)
    assert text == "answer from backup"
    assert headers["x-byok-fallbacks"] == "main/m1:timeout"


async def test_429_with_retry_after_cools_the_upstream_and_moves_on(proxy_factory, main, backup):
    main.override = faults.status(429, retry_after=30)
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    text, headers = await ask(proxy, stream=True)
    assert text == "answer from backup"
    assert headers["x-byok-fallbacks"] == "main/m1:429"
    # While main cools down it is not even asked: the next request goes straight to backup.
    text, headers = await ask(proxy, stream=False)
    assert text == "answer from backup"
    assert headers["x-byok-fallbacks"] == "main/m1:cooling"
    assert chat_requests(main) == 1 and chat_requests(backup) == 2


@pytest.mark.parametrize("fault", [faults.drop_before_content(), faults.error_event_before_content(),
                                   faults.drop_before_content(delay=3)],
                         ids=["reset", "error-event", "silent-past-first-byte"])
async def test_stream_failing_before_first_content_switches_invisibly(proxy_factory, main, backup, fault):
    main.override = fault
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions",
                                json={"model": "smart", "messages": MESSAGES, "stream": True}) as response:
            assert response.status == 200
            assert response.headers["x-byok-upstream"] == "backup"
            events = faults.sse_events(await response.read())
    assert b"chatcmpl-fault" not in b"".join(events), "the failed attempt's preamble reached the client"
    roles = [event for event in events if b'"role"' in event]
    assert len(roles) == 1, "exactly one role chunk: the backup's"
    assert events[-1] == b"[DONE]"
    # and the SDK reads a normal answer
    text, _ = await ask(proxy, stream=True)
    assert text == "answer from backup"


async def test_mid_stream_drop_ends_with_an_error_event_not_a_truncation(proxy_factory, main, backup):
    main.override = faults.drop_mid_stream(["partial", " answer"])
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions",
                                json={"model": "smart", "messages": MESSAGES, "stream": True}) as response:
            assert response.status == 200
            events = faults.sse_events(await response.read())
    assert any(b"partial" in event for event in events)
    assert b"[DONE]" not in events
    last = events[-1]
    assert last.startswith(b'{"error"') and b"main" in last
    assert chat_requests(backup) == 0, "a committed stream must not restart elsewhere"
    # The official SDK surfaces it as an error instead of a short answer.
    stream = await client_for(proxy).chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    received = ""
    with pytest.raises(openai.APIError):
        async for piece in stream:
            if piece.choices and piece.choices[0].delta.content:
                received += piece.choices[0].delta.content
    assert received == "partial answer"


async def test_client_errors_are_not_retried_elsewhere(proxy_factory, main, backup):
    main.override = faults.status(400, message="messages[0] is malformed")
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(proxy, stream=False)
    assert "messages[0] is malformed" in str(caught.value)
    assert chat_requests(backup) == 0


async def test_fallback_on_decides_which_failures_move_on(proxy_factory, main, backup):
    main.fail_status = 500
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1",
                                       alias_extra="fallback_on: [connect, timeout]"))
    with pytest.raises(openai.InternalServerError) as caught:
        await ask(proxy, stream=False)
    assert caught.value.status_code == 502
    assert chat_requests(backup) == 0


async def test_when_every_target_fails_the_last_failure_lists_every_attempt(proxy_factory, main, backup):
    main.override = faults.status(500, message="main is broken")
    backup.override = faults.status(503, message="backup is overloaded")
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(proxy, stream=True)
    assert caught.value.status_code == 503  # the last failure
    message = caught.value.message
    assert "main/m1" in message and "main is broken" in message
    assert "backup/m2" in message and "backup is overloaded" in message


async def test_retries_the_same_target_before_moving_on(proxy_factory, main, backup):
    calls = []
    flaky = faults.status(502)

    async def fails_once(request):
        calls.append(1)
        if len(calls) == 1:
            return await flaky(request)
        main.override = None
        return await main._route(request, await request.read())

    main.override = fails_once
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1", main_extra="retries: 2"))
    text, headers = await ask(proxy, stream=False)
    assert text == "hello from upstream"
    assert headers["x-byok-upstream"] == "main"
    assert chat_requests(main) == 2 and chat_requests(backup) == 0


async def test_lone_target_429_waits_out_a_short_retry_after(proxy_factory, main):
    limited = faults.status(429, retry_after=1)

    async def limited_once(request):
        main.override = None
        return await limited(request)

    main.override = limited_once
    proxy = await proxy_factory(f"""
    health: {{enabled: false}}
    upstreams:
      main: {{base_url: {main.url}/v1, discover_models: false, queue_timeout: 5}}
    """)
    text, _ = await ask(proxy, stream=False, model="main/gpt-test")
    assert text == "hello from upstream"
    assert chat_requests(main) == 2


async def test_lone_target_429_beyond_the_budget_returns_429_with_retry_after(proxy_factory, main):
    main.override = faults.status(429, retry_after=120, message="slow down")
    proxy = await proxy_factory(f"""
    health: {{enabled: false}}
    upstreams:
      main: {{base_url: {main.url}/v1, discover_models: false, queue_timeout: 1}}
    """)
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(proxy, stream=False, model="main/gpt-test")
    assert caught.value.response.headers["retry-after"] == "120"
    assert "slow down" in caught.value.message
    # While it cools down, the proxy answers 429 itself without calling it.
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(proxy, stream=True, model="main/gpt-test")
    assert int(caught.value.response.headers["retry-after"]) > 100
    assert chat_requests(main) == 1


async def test_with_the_others_failed_it_waits_for_a_short_cool_down(proxy_factory, main, backup):
    main.override = faults.status(500)
    limited = faults.status(429, retry_after=1)

    async def limited_once(request):
        backup.override = None
        return await limited(request)

    backup.override = limited_once
    proxy = await proxy_factory(config(f"{main.url}/v1", f"{backup.url}/v1"))
    text, headers = await ask(proxy, stream=True)
    assert text == "answer from backup"
    assert headers["x-byok-fallbacks"] == "main/m1:500,backup/m2:429"
    assert chat_requests(backup) == 2
