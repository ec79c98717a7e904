"""Codex CLI, headless, through the real proxy (a subprocess on loopback) to a chat-format
upstream and to an Anthropic-format upstream, both scripted by the recorder.

Codex speaks only the Responses API; the proxy translates each turn to the upstream's own
wire and the answer back, event by event. Covered per upstream format: a text answer, a
shell command the upstream asks for (Codex runs it and reports the output in the next
request), and an apply_patch edit (a custom tool: a function with one string argument on
the upstream) that changes a file in the work folder.

Codex declares OpenAI's hosted `web_search` tool by default; only a Responses-native
upstream can run it, so the proxy refuses it by name and the test configures Codex as a
user must (`web_search = "disabled"`, see docs/clients.md).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.agents import harness
from tests.agents.recorder import Recorded, ThreadedRecorder, custom_tool_call, function_call, text, tool_use
from tests.helpers import proxy_process

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(harness.codex_bin() is None, reason="Codex CLI not installed: bash scripts/install-agents")]

AGENT_TIMEOUT = 120.0
ALIAS = "codex-main"
CODEX_SETTINGS = ("-c", 'web_search="disabled"')
PATCH = ("*** Begin Patch\n"
         "*** Update File: greet.py\n"
         "@@ def greet():\n"
         "-    return 'hello'\n"
         "+    return 'hello, patched'\n"
         "*** End Patch\n")


@pytest.fixture
def rec():
    with ThreadedRecorder() as recorder:
        yield recorder


@pytest.fixture(params=["chat", "anthropic"])
def upstream_format(request) -> str:
    return request.param


@pytest.fixture
def proxy_url(rec, upstream_format, tmp_path):
    target = "chat/test-model" if upstream_format == "chat" else "claude/claude-test"
    with proxy_process(f"""
    upstreams:
      chat: {{base_url: "{rec.base_url_v1}", api_key: sk-upstream-chat-0123456789, discover_models: false}}
      claude: {{base_url: "{rec.origin}", format: anthropic, api_key: sk-upstream-claude-0123456789,
               discover_models: false}}
    models:
      {ALIAS}: [{target}]
    health: {{enabled: false}}
    """, tmp_path) as origin:
        yield origin + "/v1"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def script(rec, upstream_format: str, *turns) -> None:
    (rec.chat if upstream_format == "chat" else rec.messages).script(*turns)


def upstream_requests(rec, upstream_format: str) -> list[Recorded]:
    return rec.chat_requests() if upstream_format == "chat" else rec.messages_requests()


def codex(proxy_url: str, prompt: str, workdir: Path, rec, **options) -> subprocess.CompletedProcess:
    return harness.run_codex(proxy_url, "sk-client-key", ALIAS, prompt, workdir, timeout=AGENT_TIMEOUT,
                             extra_args=CODEX_SETTINGS, extra_env=rec.trap.proxy_env(), **options)


def explain(result: subprocess.CompletedProcess, rec) -> str:
    lines = [f"exit={result.returncode}", "--- stdout ---", result.stdout[-3000:], "--- stderr ---",
             result.stderr[-3000:], "--- upstream requests ---"]
    lines += [f"{r.method} {r.path} {r.body[:300]!r}" for r in rec.requests]
    return "\n".join(lines)


def tool_outputs(request: Recorded, upstream_format: str) -> list[str]:
    """What the agent reported back, as the upstream received it: chat `tool` messages, or
    Anthropic `tool_result` blocks."""
    messages = (request.json or {}).get("messages", [])
    if upstream_format == "chat":
        return [json.dumps(m.get("content")) for m in messages if m.get("role") == "tool"]
    return [json.dumps(block.get("content")) for m in messages if isinstance(m.get("content"), list)
            for block in m["content"] if block.get("type") == "tool_result"]


def test_a_text_answer(rec, upstream_format, proxy_url, workdir):
    script(rec, upstream_format, [text("Hello through the proxy!")])
    result = codex(proxy_url, "Say hello.", workdir, rec)
    why = explain(result, rec)
    assert result.returncode == 0, why
    assert result.stdout.strip() == "Hello through the proxy!", why
    (request,) = upstream_requests(rec, upstream_format)
    assert "Say hello." in request.body.decode(), why
    assert request.json["model"] in ("test-model", "claude-test"), why
    assert rec.trap.seen == [], why


def test_an_alias_codex_has_no_metadata_for(rec, upstream_format, proxy_url, workdir):
    """With no bundled metadata for the model name (an alias), Codex falls back to defaults that
    declare its multi-agent tools inside a `namespace` tool; the upstream sees them flattened."""
    script(rec, upstream_format, [text("Fallback metadata works.")])
    result = codex(proxy_url, "Say hello.", workdir, rec, model_like=None)
    why = explain(result, rec)
    assert result.returncode == 0, why
    assert result.stdout.strip() == "Fallback metadata works.", why
    (request,) = upstream_requests(rec, upstream_format)
    names = {tool.get("name") or tool.get("function", {}).get("name") for tool in request.json["tools"]}
    assert "multi_agent_v1__spawn_agent" in names, why


def test_a_shell_command_runs_and_its_output_comes_back(rec, upstream_format, proxy_url, workdir):
    (workdir / "marker.txt").write_text("MARKER-5c1e\n")
    arguments = {"cmd": "cat marker.txt && echo from-shell > shell_out.txt"}
    first = ([function_call("exec_command", arguments, "call_shell_1")] if upstream_format == "chat"
             else [tool_use("exec_command", arguments, "toolu_shell_1")])
    script(rec, upstream_format, first, [text("The marker says MARKER-5c1e.")])
    result = codex(proxy_url, "What does marker.txt say?", workdir, rec)
    why = explain(result, rec)
    assert result.returncode == 0, why
    assert "The marker says MARKER-5c1e." in result.stdout, why
    assert (workdir / "shell_out.txt").read_text().strip() == "from-shell", why
    requests = upstream_requests(rec, upstream_format)
    assert len(requests) == 2, why
    outputs = tool_outputs(requests[1], upstream_format)
    assert len(outputs) == 1 and "MARKER-5c1e" in outputs[0], why


def test_apply_patch_edits_a_file(rec, upstream_format, proxy_url, workdir):
    target = workdir / "greet.py"
    target.write_text("def greet():\n    return 'hello'\n")
    first = ([custom_tool_call("apply_patch", PATCH, "call_patch_1")] if upstream_format == "chat"
             else [tool_use("apply_patch", {"input": PATCH}, "toolu_patch_1")])
    script(rec, upstream_format, first, [text("Patched.")])
    result = codex(proxy_url, "Make greet() say 'hello, patched'.", workdir, rec)
    why = explain(result, rec)
    assert result.returncode == 0, why
    assert target.read_text() == "def greet():\n    return 'hello, patched'\n", why
    assert result.stdout.strip().endswith("Patched."), why
    requests = upstream_requests(rec, upstream_format)
    assert len(requests) == 2, why
    declared = {tool.get("name") or tool.get("function", {}).get("name") for tool in requests[0].json["tools"]}
    assert "apply_patch" in declared, why
    outputs = tool_outputs(requests[1], upstream_format)
    assert len(outputs) == 1 and "greet.py" in outputs[0], why
