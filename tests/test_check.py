"""`byok-proxy check`: every failure class produced by a loopback test upstream (or a real
network condition: a closed port, a .invalid name, a self-signed certificate) and classified
with the advice that fixes it; the provider's error code decides over the HTTP status."""
from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from proxy.catalog import diagnose
from proxy.catalog.check import UpstreamReport
from proxy.cli import check_upstreams
from proxy.config.model import parse_config
from tests import catalog_fixtures as fx
from tests.helpers import ROOT, free_port
from tests.upstreams.openai_upstream import OpenAIUpstream
from tests.upstreams.scripted_upstream import Reply, ScriptedUpstream, self_signed_context

pytestmark = pytest.mark.timeout(30)
KEY = "sk-check-test-key-abcdef0123456789"
CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "OK"}, "finish_reason": None}]}
SSE_OK = Reply(sse=[CHUNK, "data: [DONE]\n\n"])


@pytest.fixture
async def upstream():
    scripted = await ScriptedUpstream().start()
    yield scripted
    await scripted.close()


def openai_error(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def anthropic_error(type_: str, message: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_011"}


async def check(config_text: str, name: str = "up") -> UpstreamReport:
    config = parse_config(textwrap.dedent(config_text))
    [report] = await check_upstreams(config, [name])
    assert KEY not in json.dumps(report.to_json())
    return report


def config_for(base_url: str, models: str = "{gpt-4o-mini: {}}", extra: str = "") -> str:
    return f"""
upstreams:
  up:
    base_url: "{base_url}"
    api_key: {KEY}
    models: {models}
{extra}
health: {{timeout: 2}}
"""


def only_problem(report: UpstreamReport) -> diagnose.Diagnosis:
    problems = [diagnosis for _, diagnosis in report.problems()]
    assert problems, "expected a failure"
    return problems[0]


# ---- success --------------------------------------------------------------------------------

async def test_a_healthy_upstream_passes_with_catalog_latency_and_a_streamed_1_token_probe(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI)).on("POST", "/v1/chat/completions", SSE_OK)
    report = await check(config_for(upstream.url + "/v1"))
    assert report.status == "ok" and report.models == 2 and report.latency_ms is not None
    assert [(probe.model, probe.ok) for probe in report.probes] == [("gpt-4o-mini", True)]
    [probe] = [json.loads(seen.body) for seen in upstream.seen if seen.method == "POST"]
    assert probe["max_tokens"] == 1 and probe["stream"] is True and probe["model"] == "gpt-4o-mini"
    assert upstream.seen[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_an_anthropic_upstream_is_probed_on_messages_with_its_own_headers(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.ANTHROPIC_PAGE_2))
    upstream.on("POST", "/v1/messages", Reply(sse=[
        "event: message_start\ndata: " + json.dumps({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-3-haiku-20240307",
            "stop_reason": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}) + "\n\n"]))
    report = await check(config_for(upstream.url, "{claude-3-haiku-20240307: {}}", "    format: anthropic"))
    assert report.status == "ok"
    sent = upstream.seen[-1]
    assert sent.path == "/v1/messages" and json.loads(sent.body)["max_tokens"] == 1
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"


async def test_a_missing_model_list_is_only_a_warning_when_the_probe_works(upstream):
    upstream.on("POST", "/v1/chat/completions", SSE_OK)  # a gateway without GET /models
    report = await check(config_for(upstream.url + "/v1"))
    assert report.status == "warning" and report.catalog_error.problem == diagnose.BASE_URL
    assert [probe.ok for probe in report.probes] == [True]


async def test_a_model_that_only_takes_max_completion_tokens_is_probed_again_with_it(upstream):
    def answer(seen) -> Reply:
        if "max_tokens" in json.loads(seen.body):
            return Reply(status=400, body=openai_error(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.", code="unsupported_parameter"))
        return SSE_OK
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI)).on("POST", "/v1/chat/completions", answer)
    report = await check(config_for(upstream.url + "/v1", "{o4-mini: {}}"))
    assert report.status == "ok"
    sent = [json.loads(seen.body) for seen in upstream.seen if seen.method == "POST"]
    assert [("max_tokens" in body, body.get("max_completion_tokens")) for body in sent] == [(True, None), (False, 1)]


async def test_the_probe_goes_through_the_chain_serve_runs_with_configured_headers_and_options():
    openai_upstream = await OpenAIUpstream().start()
    try:
        report = await check(f"""
upstreams:
  up:
    base_url: "{openai_upstream.url}/v1"
    api_key: {KEY}
    headers: {{x-team: blue}}
    options: {{some_field: 7}}
    models: {{gpt-test: {{}}}}
""")
    finally:
        await openai_upstream.close()
    assert report.status == "ok" and report.models == 1
    [probe] = openai_upstream.requests
    assert probe.method == "POST" and probe.path == "/v1/chat/completions"
    assert probe.headers["x-team"] == "blue"                      # the headers middleware's configured headers
    assert probe.headers["Authorization"] == f"Bearer {KEY}"
    assert probe.headers["x-request-id"].startswith("check-")     # the headers middleware ran
    body = probe.json
    assert body["some_field"] == 7                                # `options:`, merged by the transport
    assert body["model"] == "gpt-test" and body["max_tokens"] == 1 and body["stream"] is True


async def test_a_redirected_model_list_is_refused_and_never_followed(upstream):
    upstream.on("GET", "/v1/models", Reply(status=302, headers={"Location": upstream.url + "/elsewhere/models"}))
    upstream.on("GET", "/elsewhere/models", Reply(body=fx.OPENAI))
    report = await check(config_for(upstream.url + "/v1"))
    assert report.catalog_error is not None and report.models is None
    assert upstream.seen_paths() == ["/v1/models"]  # the key never went where Location points


# ---- keys, permission, billing: the provider's words decide ------------------------------------

async def test_invalid_key(upstream):
    upstream.on("GET", "/v1/models", Reply(status=401, body=openai_error(
        "Incorrect API key provided: sk-chec****6789.", code="invalid_api_key")))
    problem = only_problem(await check(config_for(upstream.url + "/v1")))
    assert problem.problem == diagnose.INVALID_KEY
    assert "invalid or revoked" in problem.summary and "upstreams.up.api_key" in problem.advice


async def test_gemini_says_bad_key_with_a_400_and_it_is_still_a_key_problem(upstream):
    upstream.on("GET", "/v1beta/openai/models", Reply(status=400, body=[{"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}]))
    problem = only_problem(await check(config_for(upstream.url + "/v1beta/openai")))
    assert problem.problem == diagnose.INVALID_KEY


async def test_revoked_key(upstream):
    upstream.on("GET", "/v1/models", Reply(status=401, body=anthropic_error(
        "authentication_error", "This API key has been disabled.")))
    problem = only_problem(await check(config_for(upstream.url, extra="    format: anthropic")))
    assert problem.problem == diagnose.INVALID_KEY and "revoked or disabled" in problem.summary


async def test_insufficient_permission(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.ANTHROPIC_PAGE_2))
    upstream.on("POST", "/v1/messages", Reply(status=403, body=anthropic_error(
        "permission_error", "Your API key does not have permission to use the specified resource.")))
    report = await check(config_for(upstream.url, "{claude-3-haiku-20240307: {}}", "    format: anthropic"))
    problem = only_problem(report)
    assert report.status == "failed" and problem.problem == diagnose.PERMISSION
    assert "access to this model" in problem.advice


async def test_openai_insufficient_quota_is_billing_not_rate_limiting(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    upstream.on("POST", "/v1/chat/completions", Reply(status=429, body=openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        type_="insufficient_quota", code="insufficient_quota")))
    problem = only_problem(await check(config_for(upstream.url + "/v1")))
    assert problem.problem == diagnose.BILLING and "add credits" in problem.advice


async def test_anthropic_low_credit_balance_is_billing_despite_its_400(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.ANTHROPIC_PAGE_2))
    upstream.on("POST", "/v1/messages", Reply(status=400, body=anthropic_error(
        "invalid_request_error", "Your credit balance is too low to access the Anthropic API. "
                                 "Please go to Plans & Billing to upgrade or purchase credits.")))
    report = await check(config_for(upstream.url, "{claude-3-haiku-20240307: {}}", "    format: anthropic"))
    assert only_problem(report).problem == diagnose.BILLING


async def test_openrouter_credits_error_inside_a_200_stream_is_billing(upstream):
    upstream.on("GET", "/api/v1/models", Reply(body=fx.OPENROUTER))
    upstream.on("POST", "/api/v1/chat/completions", Reply(sse=[
        {"error": {"code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/credits"}}]))
    report = await check(config_for(upstream.url + "/api/v1", "{anthropic/claude-sonnet-4.6: {}}",
                                    "    kind: openrouter"))
    assert report.models == 2 and only_problem(report).problem == diagnose.BILLING


# ---- where and what ---------------------------------------------------------------------------

async def test_wrong_base_url_404_advises_with_or_without_v1(upstream):
    # The server lives at the root (/models, /chat/completions); the configured base got /v1 appended.
    upstream.on("GET", "/models", Reply(body=fx.OPENAI))
    report = await check(config_for(upstream.url))
    problem = only_problem(report)
    assert report.status == "failed" and problem.problem == diagnose.BASE_URL
    assert f"without /v1 ({upstream.url})" in problem.advice and "append_v1: false" in problem.advice


async def test_a_web_page_instead_of_the_api_is_a_wrong_base_url(upstream):
    upstream.on("GET", "/v1/models", Reply(body="<!DOCTYPE html><html><body>Welcome</body></html>",
                                           content_type="text/html"))
    problem = only_problem(await check(config_for(upstream.url + "/v1", models="{}")))
    assert problem.problem == diagnose.BASE_URL


async def test_unknown_model_names_close_matches_from_the_catalog(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    upstream.on("POST", "/v1/chat/completions", Reply(status=404, body=openai_error(
        "The model `gpt-4o-mni` does not exist or you do not have access to it.", code="model_not_found")))
    problem = only_problem(await check(config_for(upstream.url + "/v1", "{gpt-4o-mni: {}}")))
    assert problem.problem == diagnose.MODEL_NOT_FOUND
    assert "gpt-4o-mni" in problem.summary and "close matches: gpt-4o-mini" in problem.advice


async def test_rate_limited_fails_the_check_and_repeats_retry_after(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    upstream.on("POST", "/v1/chat/completions", Reply(status=429, headers={"Retry-After": "20"}, body=openai_error(
        "Rate limit reached for gpt-4o-mini: Limit 3, Used 3, Requested 1.", type_="requests",
        code="rate_limit_exceeded")))
    report = await check(config_for(upstream.url + "/v1"))
    problem = only_problem(report)
    assert report.status == "failed" and problem.problem == diagnose.RATE_LIMITED
    assert "wait 20 s" in problem.summary


async def test_a_json_answer_to_a_stream_request_means_something_buffers(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI))
    upstream.on("POST", "/v1/chat/completions", Reply(body={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "length"}]}))
    problem = only_problem(await check(config_for(upstream.url + "/v1")))
    assert problem.problem == diagnose.NOT_SSE
    assert "application/json" in problem.summary and "buffers" in problem.advice


# ---- below HTTP ----------------------------------------------------------------------------------

async def test_connection_refused_on_a_closed_port():
    port = free_port()
    problem = only_problem(await check(config_for(f"http://127.0.0.1:{port}/v1")))
    assert problem.problem == diagnose.REFUSED and f"127.0.0.1:{port}" in problem.summary
    assert "start the server" in problem.advice


async def test_dns_failure_for_a_name_that_cannot_exist():
    # A generous timeout: a resolver with no reachable DNS server answers "temporary failure" only after retries.
    config = config_for("https://no-such-upstream.invalid/v1").replace("health: {timeout: 2}", "health: {timeout: 20}")
    problem = only_problem(await check(config))
    assert problem.problem == diagnose.DNS and "no-such-upstream.invalid" in problem.summary


async def test_tls_failure_on_a_self_signed_certificate(tmp_path):
    upstream = await ScriptedUpstream().on("GET", "/v1/models", Reply(body=fx.OPENAI)).start(
        ssl_context=self_signed_context(tmp_path))
    try:
        problem = only_problem(await check(config_for(upstream.url + "/v1")))
    finally:
        await upstream.close()
    assert problem.problem == diagnose.TLS and "self-signed" in problem.advice
    assert "SSL_CERT_FILE" in problem.advice


async def test_timeout_when_the_catalog_never_answers(upstream):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI, delay=5))
    report = await check(config_for(upstream.url + "/v1").replace("health: {timeout: 2}", "health: {timeout: 0.3}"))
    problem = only_problem(report)
    assert problem.problem == diagnose.TIMEOUT and "0.3 s" in problem.summary


# ---- the command itself --------------------------------------------------------------------------

async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "proxy", "check", *args, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_the_command_prints_a_table_with_advice_and_exits_1_when_any_upstream_fails(upstream, tmp_path):
    upstream.on("GET", "/v1/models", Reply(body=fx.OPENAI)).on("POST", "/v1/chat/completions", SSE_OK)
    path = tmp_path / "config.yaml"
    path.write_text(f"""
upstreams:
  good: {{base_url: "{upstream.url}/v1", api_key: {KEY}, models: {{gpt-4o-mini: {{}}}}}}
  gone: {{base_url: "http://127.0.0.1:{free_port()}/v1", api_key: {KEY}}}
  demo: {{format: mock}}
""")
    code, out, _ = await cli("-c", str(path))
    assert code == 1
    header, *rows = out.splitlines()[:4]
    assert header.split() == ["UPSTREAM", "STATUS", "LATENCY", "MODELS", "PROBES", "PROBLEM"]
    assert rows[0].split()[:2] == ["good", "ok"] and rows[0].split()[-1] == "1/1"
    assert rows[1].split()[:2] == ["gone", "failed"] and rows[1].split()[-1] == "connection_refused"
    assert "what to do: start the server" in out
    assert KEY not in out

    code, out, _ = await cli("-c", str(path), "--upstream", "good", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert [u["name"] for u in report["upstreams"]] == ["good"]
    assert report["upstreams"][0]["probes"] == [{"model": "gpt-4o-mini", "ok": True,
                                                  "latency_ms": report["upstreams"][0]["probes"][0]["latency_ms"],
                                                  "error": None}]

    code, _, err = await cli("-c", str(path), "--upstream", "nope")
    assert code == 2 and "no upstream named 'nope'" in err
