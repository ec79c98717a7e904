"""Claude Code (the pinned `@anthropic-ai/claude-code`, `claude -p`) headless through the real proxy,
with ANTHROPIC_BASE_URL = the proxy, HOME a temporary folder and non-essential traffic disabled
(tests/agents/harness.py), to an Anthropic-format test upstream (passed through) and to an
OpenAI-format chat test upstream (translated). Claude Code asks for its main model and its small
fast model by name; the proxy maps both with aliases. Each upstream gets:
  * a text answer;
  * a Read tool round trip: the upstream's first answer asks Claude Code to read a file in its work
    folder, Claude Code runs the tool, the next request carries the tool_result with the file's
    content, and the upstream's text answer is what the run prints (exit 0).
"""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.agents import harness
from tests.conftest import CLIENT_KEY
from tests.upstreams.anthropic_upstream import DEFAULT_KEY, Reply, text, thinking, tool_use
from tests.upstreams.openai_upstream import ToolCall

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(harness.claude_bin() is None,
                                 reason="Claude Code not installed: bash scripts/install-agents")]

MAIN_MODEL, SMALL_FAST_MODEL = "claude-sonnet-4-6", "claude-haiku-4-5"  # the names Claude Code asks for
MARKER = "NOTES-MARKER-4f1d"
ANSWER = f"The file says {MARKER}."


@pytest.fixture
async def via_anthropic(anthropic_upstream, proxy_factory):
    return await proxy_factory(f"""
    auth: {{api_keys: [{CLIENT_KEY}]}}
    upstreams:
      claude: {{base_url: "{anthropic_upstream.base_url}", format: anthropic, api_key: {DEFAULT_KEY}}}
    models:
      {MAIN_MODEL}: [claude/claude-sonnet-4-6]
      {SMALL_FAST_MODEL}: [claude/claude-haiku-4-5]
    """)


@pytest.fixture
async def via_chat(openai_upstream, proxy_factory):
    return await proxy_factory(f"""
    auth: {{api_keys: [{CLIENT_KEY}]}}
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      {MAIN_MODEL}: [chat/gpt-test]
      {SMALL_FAST_MODEL}: [chat/gpt-test-mini]
    """)


@pytest.fixture
def notes(tmp_path) -> Path:
    """A file in Claude Code's work folder, for the upstream to ask it to read."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    path = workdir / "notes.txt"
    path.write_text(f"{MARKER}\n")
    return path


async def claude_code(proxy, prompt: str, workdir: Path) -> subprocess.CompletedProcess:
    """`claude -p` against the proxy; its small fast model (Haiku slot) is the second alias."""
    small = {"ANTHROPIC_SMALL_FAST_MODEL": SMALL_FAST_MODEL, "ANTHROPIC_DEFAULT_HAIKU_MODEL": SMALL_FAST_MODEL}
    return await asyncio.to_thread(harness.run_claude, proxy.url, CLIENT_KEY, MAIN_MODEL, prompt, workdir, 180,
                                   extra_env=small)


def explain(run: subprocess.CompletedProcess, requests) -> str:
    return f"exit {run.returncode}\nstdout: {run.stdout[-1500:]}\nstderr: {run.stderr[-1500:]}\nrequests: {requests}"


def tool_results(body: dict) -> list[dict]:
    """The tool_result blocks of a Messages request's last user turn."""
    content = body["messages"][-1]["content"]
    return [block for block in content if isinstance(block, dict) and block.get("type") == "tool_result"]


def result_text(result: dict) -> str:
    content = result.get("content")
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if isinstance(block, dict))


# ---- Anthropic upstream: passed through ------------------------------------------------------------

async def test_claude_code_text_answer_through_an_anthropic_upstream(anthropic_upstream, via_anthropic, notes):
    anthropic_upstream.script(Reply(blocks=[text("Hello through the proxy.")]))
    run = await claude_code(via_anthropic, "Say hello.", notes.parent)
    why = explain(run, [(r.path, r.body.get("model")) for r in anthropic_upstream.requests])
    assert run.returncode == 0, why
    assert run.stdout.strip() == "Hello through the proxy.", why
    sent = [r for r in anthropic_upstream.requests if r.path == "/v1/messages"]
    assert len(sent) == 1 and sent[0].body["model"] == MAIN_MODEL and sent[0].body["stream"] is True, why
    assert sent[0].headers["x-api-key"] == DEFAULT_KEY, why  # the upstream's key; Claude Code's stays at the proxy
    assert "claude-code-20250219" in sent[0].headers["anthropic-beta"], why  # Claude Code's betas reach Anthropic
    assert sent[0].query == "beta=true", why  # and so does its query, as it would talking to Anthropic


async def test_claude_code_read_tool_round_trip_through_an_anthropic_upstream(anthropic_upstream, via_anthropic,
                                                                              notes):
    # Claude Code turns thinking on, so the tool call comes with a signed thinking block that must
    # come back unchanged (the test upstream checks the signature).
    anthropic_upstream.script(
        Reply(blocks=[thinking("The user wants the file; I will read it."),
                      tool_use("Read", {"file_path": str(notes)}, "toolu_read_1")]),
        Reply(blocks=[text(ANSWER)]))
    run = await claude_code(via_anthropic, "What is in notes.txt?", notes.parent)
    sent = [r for r in anthropic_upstream.requests if r.path == "/v1/messages"]
    why = explain(run, [r.body for r in sent[1:]])
    assert run.returncode == 0, why
    assert ANSWER in run.stdout, why
    assert len(sent) == 2, why
    results = tool_results(sent[1].body)
    assert [result["tool_use_id"] for result in results] == ["toolu_read_1"], why
    assert MARKER in result_text(results[0]) and not results[0].get("is_error"), why
    assert results[0].get("cache_control") == {"type": "ephemeral"}, why  # Claude Code's breakpoint, intact


# ---- OpenAI-format chat upstream: translated ---------------------------------------------------------

async def test_claude_code_text_answer_through_a_chat_upstream(openai_upstream, via_chat, notes):
    openai_upstream.reply = "Hello through the proxy."
    run = await claude_code(via_chat, "Say hello.", notes.parent)
    why = explain(run, [r.path for r in openai_upstream.requests])
    assert run.returncode == 0, why
    assert run.stdout.strip() == "Hello through the proxy.", why
    sent = openai_upstream.last
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == "gpt-test", why
    assert sent.headers["Authorization"] == "Bearer sk-upstream", why
    assert {"Read", "Bash"} <= {tool["function"]["name"] for tool in sent.json["tools"]}, why


async def test_claude_code_read_tool_round_trip_through_a_chat_upstream(openai_upstream, via_chat, notes):
    openai_upstream.tool_turns.append([ToolCall("Read", {"file_path": str(notes)}, "call_read_1")])
    openai_upstream.reply = ANSWER
    run = await claude_code(via_chat, "What is in notes.txt?", notes.parent)
    sent = [r for r in openai_upstream.requests if r.path == "/v1/chat/completions"]
    why = explain(run, [r.json["messages"][-2:] for r in sent[1:]])
    assert run.returncode == 0, why
    assert ANSWER in run.stdout, why
    assert len(sent) == 2, why
    messages = sent[1].json["messages"]
    calls = [call for message in messages for call in message.get("tool_calls") or []]
    assert [(call["id"], call["function"]["name"]) for call in calls] == [("call_read_1", "Read")], why
    results = [message for message in messages if message["role"] == "tool"]
    assert [result["tool_call_id"] for result in results] == ["call_read_1"], why
    content = results[0]["content"]
    content = content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
    assert MARKER in content, why
