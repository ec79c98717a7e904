"""Real coding agents, headless, against the scripted recorder (no proxy in between).

Proves the harness works before the proxy is put between agent and upstream:
  * Codex CLI (`codex exec`, Responses API, custom provider)
      - a text answer is printed
      - a shell tool round trip (the tool name and argument shape are read from
        the tools Codex declares in its first request)
      - an apply_patch round trip that edits a file in the workdir
  * Claude Code (`claude -p`, Messages API)
      - a text answer is printed (text and json output formats)
      - Read and Bash tool round trips

Every run also goes through an egress trap (HTTPS_PROXY pointing at a fake proxy):
the agents must not try to reach anything but the recorder.

The agent tests skip only when the binaries are missing: `bash scripts/install-agents`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.agents import harness
from tests.agents.recorder import Recorded, ThreadedRecorder, custom_tool_call, function_call, text, tool_use

AGENT_TIMEOUT = 120.0
API_KEY = "sk-byok-test-key-0123456789"
MODEL = "byok-test-model"

needs_codex = pytest.mark.skipif(
    harness.codex_bin() is None,
    reason="Codex CLI not installed (run: bash scripts/install-agents)",
)
needs_claude = pytest.mark.skipif(
    harness.claude_bin() is None,
    reason="Claude Code not installed (run: bash scripts/install-agents)",
)


@pytest.fixture
def rec():
    with ThreadedRecorder() as r:
        yield r


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    return wd


def explain(cp: subprocess.CompletedProcess, rec) -> str:
    lines = [f"exit={cp.returncode} duration={getattr(cp, 'duration', 0):.1f}s",
             "--- stdout ---", cp.stdout[-4000:], "--- stderr ---", cp.stderr[-4000:],
             "--- requests ---"]
    lines += [f"{r.method} {r.path} {r.query}" for r in rec.requests]
    lines += ["--- egress attempts ---", *rec.trap.seen]
    return "\n".join(lines)


def tools_of(req: Recorded) -> dict[str, dict]:
    return {t.get("name"): t for t in (req.json or {}).get("tools", []) if t.get("name")}


def input_items(req: Recorded, kind: str) -> list[dict]:
    return [i for i in (req.json or {}).get("input", []) if i.get("type") == kind]


def tool_results(req: Recorded) -> list[dict]:
    return [block for m in (req.json or {}).get("messages", []) if isinstance(m.get("content"), list)
            for block in m["content"] if block.get("type") == "tool_result"]


def result_text(block: dict) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


# --------------------------------------------------------------------- Codex


def codex(rec, prompt: str, workdir: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(rec.trap.proxy_env(), **kw.pop("extra_env", {}))
    return harness.run_codex(rec.base_url_v1, API_KEY, MODEL, prompt, workdir,
                             timeout=AGENT_TIMEOUT, extra_env=env, **kw)


# Codex has shipped its shell tool under several names and argument shapes.
CODEX_SHELL_TOOLS = ("exec_command", "shell_command", "shell", "local_shell")


def codex_shell_call(req: Recorded, command: str, call_id: str, seen: dict):
    """A function call to whichever shell tool this request declares."""
    tools = tools_of(req)
    for name in CODEX_SHELL_TOOLS:
        tool = tools.get(name)
        if not tool or tool.get("type") != "function":
            continue
        props = tool.get("parameters", {}).get("properties", {})
        if "cmd" in props:
            args = {"cmd": command}
        elif props.get("command", {}).get("type") == "array":
            args = {"command": ["bash", "-lc", command]}
        else:
            args = {"command": command}
        seen["tool"] = name
        return [function_call(name, args, call_id)]
    seen["tool"] = None
    return [text(f"no shell tool among {sorted(tools)}")]


def codex_apply_patch_call(req: Recorded, patch: str, call_id: str, seen: dict):
    tool = tools_of(req).get("apply_patch")
    seen["type"] = tool and tool.get("type")
    if tool and tool.get("type") == "custom":
        return [custom_tool_call("apply_patch", patch, call_id)]
    if tool and tool.get("type") == "function":
        return [function_call("apply_patch", {"input": patch}, call_id)]
    return [text(f"no apply_patch tool among {sorted(tools_of(req))}")]


@needs_codex
def test_codex_text_answer(rec, workdir):
    rec.responses.script([text("Hello from the recorder!")])
    cp = codex(rec, "Say hello.", workdir)
    why = explain(cp, rec)
    assert cp.returncode == 0, why
    assert cp.stdout.strip() == "Hello from the recorder!", why
    assert not hasattr(cp, "home") or not cp.home.exists(), "temp home left behind"

    reqs = rec.responses_requests()
    assert len(reqs) == 1, why
    assert [(r.method, r.path) for r in rec.requests] == [("POST", "/v1/responses")], why
    req = reqs[0]
    assert req.header("authorization") == f"Bearer {API_KEY}"
    assert req.header("originator") == "codex_exec"
    assert req.header("accept") == "text/event-stream"
    body = req.json
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["store"] is False
    assert body["input"][-1]["content"][-1]["text"] == "Say hello."
    assert rec.trap.seen == [], why


@needs_codex
def test_codex_shell_round_trip(rec, workdir):
    (workdir / "marker.txt").write_text("MARKER-7f3a\n")
    seen: dict = {}
    rec.responses.script(
        lambda req: [text("Let me look."),
                     *codex_shell_call(req, "cat marker.txt && echo from-shell > shell_out.txt",
                                       "call_shell_1", seen)],
        [text("The marker is MARKER-7f3a.")],
    )
    cp = codex(rec, "What does marker.txt say?", workdir)
    why = explain(cp, rec)
    assert seen.get("tool"), f"Codex declared no shell tool\n{why}"
    assert cp.returncode == 0, why
    assert "The marker is MARKER-7f3a." in cp.stdout, why
    assert (workdir / "shell_out.txt").read_text().strip() == "from-shell", why

    reqs = rec.responses_requests()
    assert len(reqs) == 2, why
    follow_up = reqs[1]
    calls = input_items(follow_up, "function_call")
    assert [(c["name"], c["call_id"]) for c in calls] == [(seen["tool"], "call_shell_1")], why
    outputs = input_items(follow_up, "function_call_output")
    assert [o["call_id"] for o in outputs] == ["call_shell_1"], why
    assert "MARKER-7f3a" in json.dumps(outputs[0]["output"]), why
    assert rec.trap.seen == [], why


@needs_codex
def test_codex_apply_patch_edits_a_file(rec, workdir):
    target = workdir / "greet.py"
    target.write_text("def greet():\n    return 'hello'\n")
    patch = (
        "*** Begin Patch\n"
        "*** Update File: greet.py\n"
        "@@ def greet():\n"
        "-    return 'hello'\n"
        "+    return 'hello, patched'\n"
        "*** Add File: NEW.md\n"
        "+created by apply_patch\n"
        "*** End Patch\n"
    )
    seen: dict = {}
    rec.responses.script(
        lambda req: codex_apply_patch_call(req, patch, "call_patch_1", seen),
        [text("Patched.")],
    )
    cp = codex(rec, "Make greet() say 'hello, patched'.", workdir)
    why = explain(cp, rec)
    assert seen.get("type") in ("custom", "function"), f"Codex declared no apply_patch tool\n{why}"
    assert cp.returncode == 0, why
    assert target.read_text() == "def greet():\n    return 'hello, patched'\n", why
    assert (workdir / "NEW.md").read_text() == "created by apply_patch\n", why
    assert cp.stdout.strip().endswith("Patched."), why

    reqs = rec.responses_requests()
    assert len(reqs) == 2, why
    kind = "custom_tool_call" if seen["type"] == "custom" else "function_call"
    calls = input_items(reqs[1], kind)
    assert [(c["name"], c["call_id"]) for c in calls] == [("apply_patch", "call_patch_1")], why
    outputs = input_items(reqs[1], kind + "_output")
    assert [o["call_id"] for o in outputs] == ["call_patch_1"], why
    assert "greet.py" in json.dumps(outputs[0]["output"]), why
    assert rec.trap.seen == [], why


# --------------------------------------------------------------------- Claude Code


def claude(rec, prompt: str, workdir: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(rec.trap.proxy_env(), **kw.pop("extra_env", {}))
    return harness.run_claude(rec.origin, API_KEY, MODEL, prompt, workdir,
                              timeout=AGENT_TIMEOUT, extra_env=env, **kw)


@needs_claude
def test_claude_text_answer(rec, workdir):
    rec.messages.script([text("Hello from the recorder!")])
    cp = claude(rec, "Say hello.", workdir)
    why = explain(cp, rec)
    assert cp.returncode == 0, why
    assert cp.stdout.strip() == "Hello from the recorder!", why

    assert [(r.method, r.path) for r in rec.requests] == [("POST", "/v1/messages")], why
    req = rec.messages_requests()[0]
    assert req.query == {"beta": "true"}
    assert req.header("x-api-key") == API_KEY
    assert req.header("authorization") is None
    assert req.header("anthropic-version") == "2023-06-01"
    assert "claude-code-20250219" in req.header("anthropic-beta", "")
    assert req.header("user-agent", "").startswith(f"claude-cli/{harness.CLAUDE_CODE_VERSION} ")
    body = req.json
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert {"Bash", "Read"} <= set(tools_of(req)), why
    assert rec.trap.seen == [], why


@needs_claude
def test_claude_json_output_and_bearer_auth(rec, workdir):
    rec.messages.script([text("JSON answer.")])
    cp = claude(rec, "Say something.", workdir, output_format="json", auth="bearer")
    why = explain(cp, rec)
    assert cp.returncode == 0, why
    result = json.loads(cp.stdout)
    assert result["type"] == "result" and result["is_error"] is False, why
    assert result["result"] == "JSON answer.", why
    req = rec.messages_requests()[0]
    assert req.header("authorization") == f"Bearer {API_KEY}"
    assert req.header("x-api-key") is None
    assert rec.trap.seen == [], why


@needs_claude
def test_claude_read_tool_round_trip(rec, workdir):
    notes = workdir / "notes.txt"
    notes.write_text("SECRET-MARKER-91c2\n")
    rec.messages.script(
        [text("Reading the file."), tool_use("Read", {"file_path": str(notes)}, "toolu_read_1")],
        [text("It says SECRET-MARKER-91c2.")],
    )
    cp = claude(rec, "What is in notes.txt?", workdir)
    why = explain(cp, rec)
    assert cp.returncode == 0, why
    assert "It says SECRET-MARKER-91c2." in cp.stdout, why

    reqs = rec.messages_requests()
    assert len(reqs) == 2, why
    results = tool_results(reqs[1])
    assert [r["tool_use_id"] for r in results] == ["toolu_read_1"], why
    assert "SECRET-MARKER-91c2" in result_text(results[0]), why
    assert not results[0].get("is_error"), why
    assert rec.trap.seen == [], why


@needs_claude
def test_claude_bash_tool_round_trip(rec, workdir):
    (workdir / "input.txt").write_text("BASH-MARKER-5e11\n")
    rec.messages.script(
        [tool_use("Bash", {"command": "cat input.txt && echo from-bash > bash_out.txt",
                           "description": "Show the input file"}, "toolu_bash_1")],
        [text("Done with bash.")],
    )
    cp = claude(rec, "Show input.txt using bash.", workdir)
    why = explain(cp, rec)
    assert cp.returncode == 0, why
    assert "Done with bash." in cp.stdout, why
    assert (workdir / "bash_out.txt").read_text().strip() == "from-bash", why

    reqs = rec.messages_requests()
    assert len(reqs) == 2, why
    results = tool_results(reqs[1])
    assert [r["tool_use_id"] for r in results] == ["toolu_bash_1"], why
    assert "BASH-MARKER-5e11" in result_text(results[0]), why
    assert not results[0].get("is_error"), why
    assert rec.trap.seen == [], why


# --------------------------------------------------------------------- harness itself


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # zombie: dead, not reaped
    except FileNotFoundError:
        return True


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    with pytest.raises(subprocess.TimeoutExpired):
        harness._run(["sh", "-c", script], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                     tmp_path, timeout=2)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5  # SIGKILL delivery is asynchronous
    while not _dead(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(pid), f"grandchild {pid} survived the timeout"
