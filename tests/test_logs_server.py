"""The log of a running `python -m proxy serve`: one JSON line per request with
the documented fields, and no key anywhere in it, even when an upstream
echoes one back."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import openai
import pytest

from tests.helpers import ROOT, free_port, wait_for_port
from tests.upstreams.openai_upstream import OpenAIUpstream

pytestmark = pytest.mark.timeout(60)

UPSTREAM_KEY = "sk-upstream-secret-never-logged-42"
CLIENT_KEY = "proxy-client-key-never-logged-7"
ACCESS_FIELDS = {"ts", "level", "logger", "msg", "request_id", "method", "path", "model", "upstreams", "served_by",
                 "status", "stream", "duration_ms", "ttft_ms", "tokens_in", "tokens_out", "fallback_reason"}


@pytest.fixture
async def leaky():
    """An upstream that fails with 500 and quotes the key it was sent, as some do."""
    upstream = await OpenAIUpstream(fail_status=500, fail_body={"error": {
        "message": f"internal error for key {UPSTREAM_KEY}", "type": "server_error", "param": None,
        "code": None}}).start()
    yield upstream
    await upstream.close()


async def test_each_request_is_one_json_line_with_its_fields_and_no_secret(tmp_path, leaky, openai_upstream):
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""
    health: {{enabled: false}}
    auth: {{api_keys: [{CLIENT_KEY}]}}
    logging: {{level: info, format: auto}}
    upstreams:
      flaky: {{base_url: "{leaky.url}/v1", api_key: {UPSTREAM_KEY}, discover_models: false}}
      steady: {{base_url: "{openai_upstream.url}/v1", api_key: {UPSTREAM_KEY}, discover_models: false}}
    models:
      main: [flaky/gpt-a, steady/gpt-b]
      broken: [flaky/gpt-a]
    """))
    port = free_port()
    log_path = tmp_path / "proxy.log"
    with open(log_path, "w") as log_file:  # not a terminal: format auto means JSON
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(port)],
                                   stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port)
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=CLIENT_KEY, max_retries=0)
        stream = await client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}],
                                                      stream=True, extra_headers={"x-request-id": "req-stream-1"})
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == \
            "hello from upstream"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}],
                                                 extra_headers={"x-request-id": "req-broken-2"})
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong-key",
                                     max_retries=0).chat.completions.create(
                model="main", messages=[{"role": "user", "content": "hi"}])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    text = log_path.read_text()
    assert UPSTREAM_KEY not in text and CLIENT_KEY not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = {line["request_id"]: line for line in lines if line["logger"] == "byok.access"}

    served = access["req-stream-1"]
    assert ACCESS_FIELDS <= served.keys()
    assert served["model"] == "main" and served["stream"] is True
    assert served["upstreams"] == ["flaky/gpt-a", "steady/gpt-b"]
    assert served["served_by"] == "steady" and served["status"] == 200
    assert served["fallback_reason"] == "500"
    assert served["ttft_ms"] > 0 and served["duration_ms"] >= served["ttft_ms"]
    assert (served["tokens_in"], served["tokens_out"]) == (5, 3)

    failed = access["req-broken-2"]
    assert failed["status"] == 502 and failed["level"] == "warning"
    assert failed["upstreams"] == ["flaky/gpt-a"] and failed["fallback_reason"] is None
    assert "***" in failed["error"]  # the upstream's echo of the key, redacted

    refused = [line for line in access.values() if line["status"] == 401]
    assert len(refused) == 1 and refused[0]["path"] == "chat/completions" and refused[0]["upstreams"] == []
