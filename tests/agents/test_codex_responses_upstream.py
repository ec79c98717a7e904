"""Codex CLI, headless, through the real proxy to a `format: responses` upstream (the scripted
recorder speaking the Responses API): Codex's requests pass through with only the model and the
key rewritten, and the upstream's events reach Codex as they are: a text answer, and a shell tool
round trip."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents import harness
from tests.agents.recorder import ThreadedRecorder, text
from tests.agents.test_agents_direct import AGENT_TIMEOUT, codex_shell_call, explain, input_items
from tests.helpers import proxy_process

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(harness.codex_bin() is None, reason="Codex CLI not installed: bash scripts/install-agents")]
UPSTREAM_KEY = "sk-upstream-key-for-the-recorder"
CLIENT_KEY = "sk-codex-key-that-stays-here"
MODEL = "byok-test-model"


@pytest.fixture
def rec():
    with ThreadedRecorder() as recorder:
        yield recorder


@pytest.fixture
def proxy_url(rec, tmp_path):
    with proxy_process(f"""
    upstreams:
      rec: {{base_url: "{rec.base_url_v1}/responses", format: responses, api_key: {UPSTREAM_KEY},
            discover_models: false}}
    models:
      {MODEL}: [rec/upstream-model]
    health: {{enabled: false}}
    """, tmp_path) as origin:
        yield origin + "/v1"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def codex(rec, proxy_url: str, prompt: str, workdir: Path):
    return harness.run_codex(proxy_url, CLIENT_KEY, MODEL, prompt, workdir, timeout=AGENT_TIMEOUT,
                             extra_env=rec.trap.proxy_env())


def test_codex_gets_a_text_answer_through_a_responses_upstream(rec, proxy_url, workdir):
    rec.responses.script([text("Hello through the proxy!")])
    result = codex(rec, proxy_url, "Say hello.", workdir)
    why = explain(result, rec)
    assert result.returncode == 0, why
    assert result.stdout.strip() == "Hello through the proxy!", why
    [request] = rec.responses_requests()
    assert request.header("authorization") == f"Bearer {UPSTREAM_KEY}", "the proxy's key, never Codex's"
    assert request.json["model"] == "upstream-model" and request.json["stream"] is True
    assert request.json["input"][-1]["content"][-1]["text"] == "Say hello."
    assert rec.trap.seen == [], why


def test_codex_shell_round_trip_through_a_responses_upstream(rec, proxy_url, workdir):
    (workdir / "marker.txt").write_text("MARKER-91c2\n")
    seen: dict = {}
    rec.responses.script(
        lambda req: [text("Let me look."), *codex_shell_call(req, "cat marker.txt", "call_shell_1", seen)],
        [text("The marker is MARKER-91c2.")])
    result = codex(rec, proxy_url, "What does marker.txt say?", workdir)
    why = explain(result, rec)
    assert seen.get("tool"), f"Codex declared no shell tool\n{why}"
    assert result.returncode == 0 and "The marker is MARKER-91c2." in result.stdout, why
    first, follow_up = rec.responses_requests()
    assert [c["call_id"] for c in input_items(follow_up, "function_call")] == ["call_shell_1"], why
    [output] = input_items(follow_up, "function_call_output")
    assert "MARKER-91c2" in str(output["output"]), why
    assert rec.trap.seen == [], why
