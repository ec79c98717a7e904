"""The proxy in front of an upstream it does not control: a raw loopback server that answers with
malformed heads, endless or inflating bodies, echoed keys, smuggling shapes, garbage, silence,
bad chunk sizes, redirects and HTTP/1.0. Every case ends in a status line naming the upstream
(or an error event, once a stream has begun); then the same proxy serves a normal request, and
neither any answer nor any log line holds a traceback or any 12-character run of the upstream key.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from io import StringIO

import aiohttp
import pytest

from proxy.config.model import LoggingConfig
from proxy.observability.logs import setup_logging
from tests.helpers import start_proxy
from tests.upstreams.hostile_upstream import (COMPLETION, HostileUpstream, answer, chunk, endless, gzip_bomb, raw,
                                              silent, with_head)

pytestmark = pytest.mark.timeout(120)

UPSTREAM_KEY = "sk-hostile-7fQ2xLp9Rk3mWz8vTb6nYc4dHs1gJe5uAo0iKq"
CLIENT_KEY = "proxy-key-hostile-H3kP9sLq2mXw7vRt"
MAX_RESPONSE = 1024 * 1024
OK_HEAD = b"HTTP/1.1 200 OK\r\n"
SSE_CHUNKED = OK_HEAD + b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
JSON_CHUNKED = OK_HEAD + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"

REQUESTS = {  # inbound API -> (path, body without `stream`, extra headers)
    "chat": ("/v1/chat/completions", {"model": "main", "messages": [{"role": "user", "content": "hi"}]}, {}),
    "responses": ("/v1/responses", {"model": "main", "input": "hi", "store": False}, {}),
    "messages": ("/v1/messages", {"model": "main", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
                 {"anthropic-version": "2023-06-01"}),
}


class Session:
    """The proxy, the hostile upstream behind it, and everything either said."""

    def __init__(self, proxy, upstream: HostileUpstream, log: StringIO):
        self.proxy, self.upstream, self.log = proxy, upstream, log
        self.answers: list[str] = []

    async def ask(self, api: str = "chat", stream: bool = False, timeout: float = 60) -> tuple[int, str]:
        path, body, headers = REQUESTS[api]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(self.proxy.url + path, json={**body, "stream": stream},
                                    headers={"Authorization": f"Bearer {CLIENT_KEY}", **headers}) as response:
                text = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
                text += "\n\n" + (await response.read()).decode("utf-8", "replace")
                self.answers.append(text)
                return response.status, text

    async def still_serves(self) -> None:
        """A normal request afterwards is answered normally, and nothing leaked on the way."""
        for stream in (False, True):
            status, text = await self.ask(stream=stream)
            assert status == 200 and "all" in text and "well" in text, text
        for text in [*self.answers, self.log.getvalue()]:
            assert "Traceback" not in text and "Unhandled exception" not in text, text[-3000:]
            for run in _runs(UPSTREAM_KEY):
                assert run not in text, f"a piece of the upstream key ({run!r}) got out: {text[-3000:]}"


def _runs(key: str, length: int = 12) -> set[str]:
    return {key[start:start + length] for start in range(len(key) - length + 1)}


@pytest.fixture
async def hostile():
    upstream = await HostileUpstream().start()
    log = StringIO()
    handler = setup_logging(LoggingConfig(level="debug", format="json"), stream=log)
    proxy = await start_proxy(f"""
        auth: {{api_keys: [{CLIENT_KEY}]}}
        upstreams:
          hostile:
            base_url: {upstream.url}
            api_key: {UPSTREAM_KEY}
            discover_models: false
            timeout: {{connect: 2, first_byte: 3, total: 4}}
            circuit: {{failures: 100}}
        models:
          main: [hostile/gpt-test]
        limits: {{max_response_bytes: {MAX_RESPONSE}}}
        health: {{enabled: false}}
    """)
    try:
        yield Session(proxy, upstream, log)
    finally:
        await proxy.close()
        await upstream.close()
        logging.getLogger().removeHandler(handler)


def _error(text: str) -> str:
    """The error message of an envelope or of a stream's error event, whatever the API."""
    for line in reversed(text.splitlines()):
        payload = line.removeprefix("data: ").strip()
        if payload.startswith("{"):
            parsed = json.loads(payload)
            error = parsed.get("error") or (parsed.get("response") or {}).get("error") or {}
            return error.get("message", "")
    return ""


# ---- malformed heads: a 502 naming the upstream, never a traceback, never a missing status line ----

MALFORMED_HEADS = {
    "bare CR in a value": OK_HEAD + b"X-Request-Id: abc\rInjected: yes\r\n",
    "bare LF in a value": OK_HEAD + b"X-Request-Id: abc\nInjected: yes\r\n",
    "NUL in a value": OK_HEAD + b"X-Ratelimit-Limit: 10\x0020\r\n",
    "bare CR in a name": OK_HEAD + b"X-Ratelimit\rLimit: 10\r\n",
    "a space in a name": OK_HEAD + b"X Ratelimit: 10\r\n",
    "a header without a colon": OK_HEAD + b"no colon here\r\n",
    "an obsolete line fold": OK_HEAD + b"X-Request-Id: abc\r\n folded\r\n",
    "a control character in the reason": b"HTTP/1.1 200 O\x01K\r\n",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("shape", list(MALFORMED_HEADS))
async def test_a_malformed_upstream_head_is_a_502_naming_the_upstream(hostile, shape, stream):
    hostile.upstream.then(with_head(MALFORMED_HEADS[shape]))
    status, text = await hostile.ask(stream=stream)
    assert status == 502, text
    assert "upstream 'hostile'" in _error(text) and "malformed" in _error(text)
    await hostile.still_serves()


@pytest.mark.parametrize("api", list(REQUESTS))
async def test_a_malformed_head_is_a_502_on_every_inbound_api(hostile, api):
    hostile.upstream.then(with_head(MALFORMED_HEADS["bare LF in a value"]))
    status, text = await hostile.ask(api)
    assert status == 502 and "upstream 'hostile'" in _error(text), text
    await hostile.still_serves()


# ---- echoed keys: redacted whole and cut --------------------------------------------------------------

def _echo_cut_at(position: int) -> bytes:
    """A plain-text 400 whose echo of the key starts `position` characters in: the proxy quotes 300."""
    text = ("x" * position + UPSTREAM_KEY + " was refused").encode()
    return answer(text, b"text/plain", b"400 Bad Request")


_ERROR_EVENTS = chunk("a") + b"data: " + json.dumps({"error": {"message": "key " + UPSTREAM_KEY[:25]}}).encode() + b"\n\n"
ECHOES = {
    "whole, in JSON": answer(json.dumps({"error": {"message": f"bad key {UPSTREAM_KEY}", "type": "invalid"}}).encode(),
                             status=b"400 Bad Request"),
    "cut 10 characters in by the 300-character quote": _echo_cut_at(290),
    "cut 20 characters in by the 300-character quote": _echo_cut_at(280),
    "cut by the upstream itself, its tail": answer(f"key ...{UPSTREAM_KEY[-20:]} is invalid".encode(), b"text/plain",
                                                  b"422 Unprocessable Entity"),
    "its head, in a forwarded header": answer(b'{"error": {"message": "no"}}', status=b"429 Too Many Requests",
                                              extra=f"X-Request-Id: {UPSTREAM_KEY[:30]}\r\n".encode()),
    "in the status line's reason": b"HTTP/1.1 401 Bad key " + UPSTREAM_KEY.encode() +
                                   b"\r\nContent-Length: 0\r\n\r\n",
    "in a status line that is not one": b"HTTP/1.1 4011 " + UPSTREAM_KEY.encode() + b"\r\n\r\n",
    "in an error event mid-stream": SSE_CHUNKED + b"%x\r\n%s\r\n0\r\n\r\n" % (len(_ERROR_EVENTS), _ERROR_EVENTS),
}


@pytest.mark.parametrize("api", list(REQUESTS))
@pytest.mark.parametrize("echo", list(ECHOES))
async def test_a_key_the_upstream_echoes_reaches_no_client_and_no_log_in_any_part(hostile, echo, api):
    hostile.upstream.then(raw(ECHOES[echo]))
    status, text = await hostile.ask(api, stream="event" in echo)
    assert status >= 400 or "error" in text, text
    await hostile.still_serves()


async def test_upstream_error_text_keeps_its_meaning_around_the_redaction(hostile):
    hostile.upstream.then(raw(_echo_cut_at(10)))
    status, text = await hostile.ask()
    assert status == 400
    assert "answered HTTP 400: xxxxxxxxxx***" in _error(text)


# ---- every read bounded in time and size ----------------------------------------------------------------

async def test_a_fast_endless_stream_ends_at_timeout_total(hostile):
    hostile.upstream.then(endless(SSE_CHUNKED, chunk("more")))
    started = time.monotonic()
    status, text = await hostile.ask(stream=True)
    assert time.monotonic() - started < 30  # timeout.total is 4 s; the stream would never end
    assert status == 200 and "timeout.total (4s)" in _error(text) and "[DONE]" not in text
    await hostile.still_serves()


async def test_an_endless_json_answer_is_a_502_past_max_response_bytes(hostile):
    hostile.upstream.then(endless(JSON_CHUNKED, b'{"filler": "' + b"x" * 16000 + b'"}'))
    status, text = await hostile.ask()
    assert status == 502
    assert "upstream 'hostile'" in _error(text) and f"limits.max_response_bytes ({MAX_RESPONSE} bytes" in _error(text)
    await hostile.still_serves()


async def test_a_gzip_bomb_as_json_is_a_502_past_max_response_bytes(hostile):
    hostile.upstream.then(gzip_bomb(b'{"id": "', b"x", 256 * 1024 * 1024, b"application/json"))
    status, text = await hostile.ask()
    assert status == 502 and "limits.max_response_bytes" in _error(text), text
    await hostile.still_serves()


async def test_a_gzip_bomb_as_one_sse_event_ends_at_the_event_cap(hostile):
    hostile.upstream.then(gzip_bomb(b"data: ", b"x", 256 * 1024 * 1024, b"text/event-stream"))
    status, text = await hostile.ask(stream=True)
    assert "upstream 'hostile'" in _error(text) and "size limit" in _error(text), text
    await hostile.still_serves()


# ---- the classes that already held, so none regresses ----------------------------------------------------

HOLDING = {
    "Content-Length and Transfer-Encoding both": (OK_HEAD + b"Content-Type: application/json\r\nContent-Length: 3\r\n"
                                                  b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
                                                      len(json.dumps(COMPLETION)), json.dumps(COMPLETION).encode()),
                                                  (200, 502)),
    "two different Content-Lengths": (OK_HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", (502,)),
    "a negative Content-Length": (OK_HEAD + b"Content-Length: -1\r\n\r\n", (502,)),
    "a chunk size that is not hex": (JSON_CHUNKED + b"zz\r\n{}\r\n0\r\n\r\n", (502,)),
    "a negative chunk size": (JSON_CHUNKED + b"-2\r\n{}\r\n0\r\n\r\n", (502,)),
    "an overflowing chunk size": (JSON_CHUNKED + b"ffffffffffffffffffff\r\n{}\r\n", (502,)),
    "a chunk longer than its size": (JSON_CHUNKED + b"1\r\n{}\r\n0\r\n\r\n", (502,)),
    "garbage": (b"\x16\x03\x01 not http at all\r\n\r\n", (502,)),
    "an SSH banner": (b"SSH-2.0-OpenSSH_9.6\r\n", (502,)),
    "a redirect": (b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/steal\r\nContent-Length: 0\r\n\r\n", (502,)),
    "a drop mid-body": (OK_HEAD + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\"", (502,)),
    "HTTP/1.0 with the body until close": (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" +
                                           json.dumps(COMPLETION).encode(), (200,)),
}


@pytest.mark.parametrize("case", list(HOLDING))
async def test_the_shapes_that_already_held_still_end_cleanly(hostile, case):
    data, statuses = HOLDING[case]
    hostile.upstream.then(raw(data))
    status, text = await hostile.ask()
    assert status in statuses, text
    if status == 502:
        assert "upstream 'hostile'" in _error(text)
    await hostile.still_serves()


async def test_a_silent_upstream_is_a_504_at_first_byte(hostile):
    hostile.upstream.then(silent())
    started = time.monotonic()
    status, text = await hostile.ask()
    assert status == 504 and "timeout.first_byte" in _error(text)
    assert time.monotonic() - started < 30
    await hostile.still_serves()


async def test_an_upstream_that_goes_silent_mid_stream_ends_with_an_error_event(hostile):
    async def then_silence(request, writer):
        writer.write(SSE_CHUNKED + b"%x\r\n%s\r\n" % (len(chunk("a")), chunk("a")))
        await writer.drain()
        await asyncio.sleep(60)
        return False
    hostile.upstream.then(then_silence)
    status, text = await hostile.ask(stream=True)
    assert status == 200 and "upstream 'hostile'" in _error(text) and "[DONE]" not in text
    await hostile.still_serves()


# ---- a response aiohttp refuses to write still gets a status line ------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_header_aiohttp_refuses_to_write_is_a_502_envelope_not_a_traceback(proxy_factory, stream):
    """A plugin (the only source left, since upstream heads with control characters are refused)
    sets a header with a line break: the client still gets a status line, the log no traceback."""
    log = StringIO()
    handler = setup_logging(LoggingConfig(level="debug", format="json"), stream=log)
    try:
        proxy = await proxy_factory("""
            upstreams: {demo: {format: mock}}
            plugins: [{path: "tests.sample_plugin:TagRequests", options: {tag: "a\\nInjected: yes"}}]
            health: {enabled: false}
        """)
        async with aiohttp.ClientSession() as session:
            async with session.post(proxy.url + "/v1/chat/completions", json={
                    "model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "stream": stream}) as response:
                status, body = response.status, await response.text()
    finally:
        logging.getLogger().removeHandler(handler)
    assert status == 502 and "Injected" not in body and json.loads(body)["error"]["code"] == "upstream_bad_response"
    assert "Traceback" not in log.getvalue() and "Unhandled exception" not in log.getvalue()
