"""The scripted leak test: one session with known secrets (provider keys, a configured header,
the inbound proxy key, the master key) through good requests, upstreams that echo the key back
in bodies and headers, a crashing user plugin and invalid configs. Afterwards none of those
strings may appear in anything the proxy wrote: logs at every level, response bodies and
headers, /metrics, /v1/models, /v1/upstreams, validation messages."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from proxy.config.secrets import Keyring
from proxy.core.errors import InvalidRequest
from tests.conftest import client_for
from tests.helpers import ROOT, free_port, run_cli, start_proxy, wait_for_port
from tests.upstreams.anthropic_upstream import AnthropicUpstream, Reply
from tests.upstreams.openai_upstream import OpenAIUpstream

pytestmark = pytest.mark.timeout(180)

UPSTREAM_KEY = "sk-leak-canary-UPSTREAM-7f3a9c41d2"
ANTHROPIC_KEY = "sk-ant-leak-canary-ANTHROPIC-88e0b1"
HEADER_SECRET = "hdr-leak-canary-HEADER-3c9d07"
INBOUND_KEY = "proxy-leak-canary-INBOUND-51e2aa"
MASTER_KEY = Fernet.generate_key().decode()
SECRETS = {"upstream key": UPSTREAM_KEY, "anthropic key": ANTHROPIC_KEY, "configured header": HEADER_SECRET,
           "inbound key": INBOUND_KEY, "master key": MASTER_KEY}


def find_leaks(where: str, text: str) -> list[str]:
    return [f"{name} in {where}" for name, secret in SECRETS.items() if secret in text]


# ---- a user plugin that crashes with secrets in its exception -------------------------------------------------

class CrashingPlugin:
    """Loaded by dotted path: raises, quoting the request's credentials, when asked to."""

    def __init__(self, context):
        self.keys = {name: upstream.api_key.reveal() for name, upstream in context.config.upstreams.items()
                     if upstream.api_key}

    async def __call__(self, request, call_next):
        text = json.dumps(request.body or {})
        if "crash before" in text:
            raise RuntimeError(f"plugin failed with {request.client_headers} and keys {self.keys}")
        if "refuse politely" in text:
            raise InvalidRequest(f"plugin refuses; your header was {request.client_headers.get('authorization')}")
        response = await call_next(request)
        if "crash during" in text and response.is_stream:
            response.events = self._explode(response.events)
        return response

    async def _explode(self, events):
        try:
            async for event in events:
                yield event
                raise ValueError(f"stream plugin failed holding {self.keys}")
        finally:
            await events.aclose()


# ---- the session ------------------------------------------------------------------------------------------

@dataclass
class Seen:
    label: str
    status: int
    headers: str
    body: str


def session_config(openai_url: str, anthropic_url: str, port: int) -> str:
    keyring = Keyring([MASTER_KEY])
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
logging: {{level: debug, format: json, requests: true}}
auth: {{api_keys: ["${{LEAK_INBOUND_KEY}}"]}}
upstreams:
  up:
    base_url: {openai_url}/v1
    api_key: {keyring.encrypt(UPSTREAM_KEY)}
    headers: {{x-team-secret: "{keyring.encrypt(HEADER_SECRET)}"}}
    models: {{gpt-test: {{context_window: 1000}}}}
    circuit: {{failures: 1000}}
  claude:
    base_url: {anthropic_url}/v1
    format: anthropic
    api_key: ${{LEAK_ANTHROPIC_KEY}}
    circuit: {{failures: 1000}}
models:
  main: [up/gpt-test]
  sonnet: [claude/claude-sonnet-4-6]
plugins: ["tests.test_security_leaks:CrashingPlugin"]
health: {{interval: 1, timeout: 5}}
"""


def echoing_error(status: int) -> dict:
    return {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}. You sent x-team-secret "
                                 f"{HEADER_SECRET}", "type": "invalid_request_error", "param": UPSTREAM_KEY,
                      "code": f"bad_key_{UPSTREAM_KEY}"}}


ECHO_HEADERS = {"x-echo-authorization": f"Bearer {UPSTREAM_KEY}", "www-authenticate": f'Bearer realm="{UPSTREAM_KEY}"',
                "x-request-id": f"req-{UPSTREAM_KEY}", "openai-organization": HEADER_SECRET,
                "x-ratelimit-remaining-requests": UPSTREAM_KEY, "retry-after": "0"}


async def scripted_session(base: str, openai_upstream: OpenAIUpstream, anthropic_upstream: AnthropicUpstream,
                           ) -> list[Seen]:
    seen: list[Seen] = []
    headers = {"Authorization": f"Bearer {INBOUND_KEY}"}

    async def call(label: str, method: str, path: str, body=None, raw_headers=None, data=None) -> Seen:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, base + path, json=body, data=data,
                                       headers=headers if raw_headers is None else raw_headers,
                                       timeout=aiohttp.ClientTimeout(total=60)) as response:
                text = (await response.read()).decode("utf-8", errors="replace")
                entry = Seen(label, response.status, repr(dict(response.headers)), text)
        seen.append(entry)
        return entry

    def chat(content: str, model: str = "main", **extra) -> dict:
        return {"model": model, "messages": [{"role": "user", "content": content}], **extra}

    # good traffic, through the SDK as well
    client = client_for(type("P", (), {"base_url": base + "/v1"})(), api_key=INBOUND_KEY)
    completion = await client.chat.completions.create(**chat("hello"))
    seen.append(Seen("sdk chat", 200, "", completion.model_dump_json()))
    stream = await client.chat.completions.create(**chat("hello"), stream=True)
    seen.append(Seen("sdk stream", 200, "", "".join([chunk.model_dump_json() async for chunk in stream])))
    await call("stream raw", "POST", "/v1/chat/completions", chat("hi", stream=True))
    await call("anthropic chat", "POST", "/v1/chat/completions", chat("hi", model="sonnet"))
    await call("anthropic stream", "POST", "/v1/chat/completions", chat("hi", model="sonnet", stream=True))
    await call("embeddings", "POST", "/v1/embeddings", {"model": "up/text-embedding", "input": "x"})

    # upstream failures that echo the key back, in bodies and headers
    openai_upstream.fail_headers = dict(ECHO_HEADERS)
    for status in (401, 403, 400, 404, 422, 429, 500, 503):
        openai_upstream.fail_status, openai_upstream.fail_body = status, echoing_error(status)
        await call(f"upstream {status} echo", "POST", "/v1/chat/completions", chat("x"))
        await call(f"upstream {status} echo, embeddings", "POST", "/v1/embeddings", {"model": "up/e", "input": "x"})
    openai_upstream.fail_status, openai_upstream.fail_body = 500, f"<html>upstream crashed: {UPSTREAM_KEY}</html>"
    await call("upstream 500 html echo", "POST", "/v1/chat/completions", chat("x"))
    openai_upstream.fail_status, openai_upstream.fail_body = 401, f"plain text: bad key {UPSTREAM_KEY}"
    await call("upstream 401 text echo", "POST", "/v1/chat/completions", chat("x"))
    openai_upstream.fail_status = None

    # a successful answer whose forwarded headers carry the key
    async def echo_in_headers(request: web.Request) -> web.StreamResponse:
        return web.json_response(openai_upstream.completion({"model": "gpt-test"}), headers=ECHO_HEADERS)
    openai_upstream.override = echo_in_headers
    await call("success with echoing headers", "POST", "/v1/chat/completions", chat("x"))
    await call("embeddings with echoing headers", "POST", "/v1/embeddings", {"model": "up/e", "input": "x"})

    # an in-stream error event that quotes the key
    async def stream_then_error(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **ECHO_HEADERS})
        await response.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
                 "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: " + json.dumps(echoing_error(500)).encode() + b"\n\n")
        return response
    openai_upstream.override = stream_then_error
    await call("stream error event echo", "POST", "/v1/chat/completions", chat("x", stream=True))
    openai_upstream.override = None

    # Anthropic errors echoing its key, whole and mid-stream
    for status, kind in ((401, "authentication_error"), (400, "invalid_request_error"), (529, "overloaded_error")):
        anthropic_upstream.script(Reply(status=status, error_type=kind,
                                        error_message=f"bad x-api-key {ANTHROPIC_KEY}",
                                        headers={"x-echo": ANTHROPIC_KEY, "request-id": ANTHROPIC_KEY}))
        await call(f"anthropic {status} echo", "POST", "/v1/chat/completions", chat("x", model="sonnet"))
    anthropic_upstream.script(Reply(blocks=[{"type": "text", "text": "partial answer"}], error_after=3,
                                    error_type="overloaded_error", error_message=f"key {ANTHROPIC_KEY} overloaded"))
    await call("anthropic stream error echo", "POST", "/v1/chat/completions", chat("x", model="sonnet", stream=True))

    # the client's own mistakes, some of them quoting the inbound key back
    await call("model named like the key", "POST", "/v1/chat/completions", chat("x", model=INBOUND_KEY))
    await call("model near the key", "POST", "/v1/chat/completions", chat("x", model=f"{INBOUND_KEY}x"))
    await call("wrong inbound key", "GET", "/v1/models", raw_headers={"Authorization": f"Bearer {INBOUND_KEY}x"})
    await call("inbound key in x-api-key of a bad request", "POST", "/v1/chat/completions",
               raw_headers={"x-api-key": INBOUND_KEY, "Content-Type": "application/json"},
               data=f'{{"model": "{INBOUND_KEY}", "model": 1}}'.encode())
    await call("invalid json quoting the key", "POST", "/v1/chat/completions",
               raw_headers={**headers, "Content-Type": "application/json"}, data=f"{{{INBOUND_KEY}".encode())

    # a user plugin that crashes (before the upstream, and mid-stream) or refuses quoting the header
    await call("plugin crash", "POST", "/v1/chat/completions", chat("crash before"))
    await call("plugin crash mid-stream", "POST", "/v1/chat/completions", chat("crash during", stream=True))
    await call("plugin refusal", "POST", "/v1/chat/completions", chat("refuse politely"))

    # let a health check see the upstream refusing with the echoing body, then read every endpoint
    openai_upstream.fail_status, openai_upstream.fail_body = 401, echoing_error(401)
    await asyncio.sleep(2.5)
    for path in ("/v1/models", "/v1/upstreams", "/metrics", "/", "/healthz", "/readyz"):
        await call(f"GET {path}", "GET", path)
    openai_upstream.fail_status = None
    return seen


def assert_session_was_real(seen: list[Seen], openai_upstream: OpenAIUpstream, log: str) -> None:
    """Guard against a vacuous pass: the secrets were in play and the echo paths were taken."""
    sent = [request.headers.get("Authorization") for request in openai_upstream.requests]
    assert f"Bearer {UPSTREAM_KEY}" in sent
    assert any(request.headers.get("x-team-secret") == HEADER_SECRET for request in openai_upstream.requests)
    statuses = {entry.label: entry.status for entry in seen}
    assert statuses["upstream 401 echo"] == 502 and statuses["upstream 400 echo"] == 400
    assert statuses["upstream 429 echo"] == 429 and statuses["anthropic 401 echo"] == 502
    assert statuses["plugin crash"] == 500 and statuses["wrong inbound key"] == 401
    assert statuses["GET /v1/upstreams"] == 200 and statuses["GET /metrics"] == 200
    bodies = {entry.label: entry.body for entry in seen}
    assert "***" in bodies["upstream 401 echo"] and "***" in bodies["stream error event echo"]
    assert "***" in bodies["GET /v1/upstreams"]  # the health check saw the echoing refusal, redacted
    assert '"logger":"byok.access"' in log and "Traceback" in log  # the plugin crash was logged, redacted


@pytest.fixture
async def upstreams():
    openai_upstream = await OpenAIUpstream().start()
    anthropic_upstream = await AnthropicUpstream(api_key=ANTHROPIC_KEY).start()
    yield openai_upstream, anthropic_upstream
    await openai_upstream.close()
    await anthropic_upstream.close()


async def test_no_secret_leaks_from_a_scripted_session_of_the_real_command(tmp_path, upstreams):
    openai_upstream, anthropic_upstream = upstreams
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(session_config(openai_upstream.url, anthropic_upstream.base_url, port))
    log_path = tmp_path / "proxy.log"
    env = {**os.environ, "BYOK_MASTER_KEY": MASTER_KEY, "LEAK_INBOUND_KEY": INBOUND_KEY,
           "LEAK_ANTHROPIC_KEY": ANTHROPIC_KEY}
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config)], cwd=ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_port, port, 30.0, None)
        seen = await scripted_session(f"http://127.0.0.1:{port}", openai_upstream, anthropic_upstream)
    finally:
        process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, process.wait, 30)
    log = log_path.read_text()
    leaks = find_leaks("the log", log)
    for entry in seen:
        leaks += find_leaks(f"the response to '{entry.label}'", entry.headers + entry.body)
    assert leaks == [], "\n".join(leaks)
    assert_session_was_real(seen, openai_upstream, log)


async def test_no_secret_leaks_into_in_process_log_records(upstreams, caplog):
    """Same session in-process: the raw records of byok's own loggers (what any extra handler a
    user installs would see, before our formatter) and the proxy's own formatted output."""
    from proxy.config.model import LoggingConfig
    from proxy.observability.logs import setup_logging
    openai_upstream, anthropic_upstream = upstreams
    output = StringIO()
    handler = setup_logging(LoggingConfig(level="debug", format="text"), stream=output)
    caplog.set_level(logging.DEBUG)
    environ = {"BYOK_MASTER_KEY": MASTER_KEY, "LEAK_INBOUND_KEY": INBOUND_KEY, "LEAK_ANTHROPIC_KEY": ANTHROPIC_KEY}
    proxy = await start_proxy(session_config(openai_upstream.url, anthropic_upstream.base_url, 0), environ=environ)
    try:
        seen = await scripted_session(proxy.url, openai_upstream, anthropic_upstream)
    finally:
        await proxy.close()
        logging.getLogger().removeHandler(handler)
    leaks = find_leaks("the formatted log", output.getvalue()) + find_leaks("pytest's log capture", caplog.text)
    for record in caplog.records:
        if record.name.startswith(("byok", "aiohttp")):
            text = record.getMessage() + repr(getattr(record, "byok_fields", "")) + (record.exc_text or "")
            leaks += find_leaks(f"a raw {record.name} record", text)
    for entry in seen:
        leaks += find_leaks(f"the response to '{entry.label}'", entry.headers + entry.body)
    assert leaks == [], "\n".join(leaks)
    assert len(seen) > 40 and output.getvalue()


# ---- invalid configs: validation messages -----------------------------------------------------------

ENV = {"BYOK_MASTER_KEY": MASTER_KEY, "LEAK_UPSTREAM_KEY": UPSTREAM_KEY, "LEAK_INBOUND_KEY": INBOUND_KEY}
INVALID_CONFIGS = {
    "secret as an upstream format": "upstreams: {up: {base_url: https://x.example/v1, api_key: '${LEAK_UPSTREAM_KEY}', "
                                    "format: '${LEAK_UPSTREAM_KEY}'}}",
    "secret in a number field": "listen: {port: '${LEAK_UPSTREAM_KEY}'}\nupstreams: {demo: {format: mock}}",
    "secret inside an http base_url": "upstreams: {up: {base_url: 'http://user:${LEAK_UPSTREAM_KEY}@example.com/v1'}}",
    "secret as a target": "upstreams: {demo: {format: mock}}\nmodels: {main: ['${LEAK_UPSTREAM_KEY}/x']}",
    "secret as default_upstream": "upstreams: {demo: {format: mock}}\ndefault_upstream: '${LEAK_INBOUND_KEY}'",
    "secret as a fallback trigger": "upstreams: {demo: {format: mock}}\n"
                                    "models: {main: {targets: [demo/x], fallback_on: ['${LEAK_UPSTREAM_KEY}']}}",
    "secret as a plugin path": "upstreams: {demo: {format: mock}}\nplugins: ['${LEAK_UPSTREAM_KEY}']",
    "secret as an unknown key's value": "upstreams: {up: {base_url: https://x.example/v1, "
                                        f"api_kye: '{UPSTREAM_KEY}'}}}}",
    "secret as a mapping key": f"upstreams: {{'{UPSTREAM_KEY}': {{format: mock}}, 'a/b': {{format: mock}}}}",
    "enc: secret as a literal field": "upstreams: {demo: {format: mock, kind: "
                                      f"'{Keyring([MASTER_KEY]).encrypt(UPSTREAM_KEY)}'}}}}",
    "enc: under the wrong key": "upstreams: {up: {base_url: https://x.example/v1, api_key: "
                                f"'{Keyring([Fernet.generate_key().decode()]).encrypt(UPSTREAM_KEY)}'}}}}",
    "yaml syntax error near a secret": f"upstreams:\n  up:\n    api_key: \"{UPSTREAM_KEY}\n  bad: [",
    "secret in a failing plugin's options": "upstreams: {demo: {format: mock}}\nplugins: [{path: "
                                            "'tests.test_security_leaks:exploding_factory', "
                                            "options: {key: '${LEAK_UPSTREAM_KEY}'}}]",
    "secret in a missing plugin's options": "upstreams: {demo: {format: mock}}\nplugins: [{path: "
                                            "'no.such.module:Thing', options: {key: '${LEAK_UPSTREAM_KEY}'}}]",
}
# Valid as YAML and schema: only loading the plugin at start fails.
FAILS_AT_START_ONLY = {"secret in a failing plugin's options", "secret in a missing plugin's options"}


def exploding_factory(context):
    raise ValueError(f"cannot start with options {dict(context.options)}")


@pytest.mark.parametrize("label", list(INVALID_CONFIGS))
def test_validation_messages_never_quote_a_secret(tmp_path, label):
    path = tmp_path / "config.yaml"
    path.write_text(INVALID_CONFIGS[label] + "\n")
    validate = run_cli("validate", "-c", str(path), env=ENV)
    serve = run_cli("serve", "-c", str(path), "--port", str(free_port()), env=ENV, timeout=30)
    assert serve.returncode != 0, serve.stderr
    if label not in FAILS_AT_START_ONLY:
        assert validate.returncode != 0 and validate.stdout.strip(), "validate named no problem"
    leaks = find_leaks("validate output", validate.stdout + validate.stderr)
    leaks += find_leaks("serve output", serve.stdout + serve.stderr)
    assert leaks == [], "\n".join(leaks) + "\n" + validate.stdout + serve.stderr
    assert "Traceback" not in validate.stderr + serve.stderr


# ---- the check command, against an upstream that echoes the key --------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--json"]])
async def test_check_never_prints_the_key_an_upstream_echoes(tmp_path, upstreams, extra):
    openai_upstream, _ = upstreams
    openai_upstream.fail_status, openai_upstream.fail_body = 401, echoing_error(401)
    openai_upstream.fail_headers = dict(ECHO_HEADERS)
    config = tmp_path / "config.yaml"
    config.write_text(f"upstreams:\n  up:\n    base_url: {openai_upstream.url}/v1\n"
                      f"    api_key: {Keyring([MASTER_KEY]).encrypt(UPSTREAM_KEY)}\n    models: {{gpt-test: {{}}}}\n"
                      f"    headers: {{x-team-secret: '{Keyring([MASTER_KEY]).encrypt(HEADER_SECRET)}'}}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "check", "-c", str(config), *extra, cwd=ROOT,
        env={**os.environ, "BYOK_MASTER_KEY": MASTER_KEY}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = (stdout + stderr).decode()
    assert process.returncode == 1 and "invalid" in output  # it did reach the refusing upstream
    assert find_leaks("check output", output) == []
