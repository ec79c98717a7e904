"""Writes docs/clients.md from a test run: `python -m tests.clients_doc`.

It runs the test files that drive each real client through the proxy, records every test's
outcome by client and by upstream format, and renders the table. Nothing in the table is
typed by hand: a client that fails shows the tests that failed; one never run shows "-".
"""
from __future__ import annotations

import datetime
import importlib.metadata
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPSTREAMS = ("mock", "chat", "anthropic", "responses")
UPSTREAM_TITLES = {"mock": "built-in mock", "chat": "OpenAI-format chat", "anthropic": "Anthropic",
                   "responses": "Responses-format"}
# Files whose every test drives one upstream format, whatever fixtures they use.
FILE_UPSTREAM = {"tests/agents/test_codex_responses_upstream.py": "responses",
                 "tests/test_responses_upstream.py": "responses"}


@dataclass(frozen=True)
class Client:
    name: str
    api: str
    files: tuple[str, ...]


CLIENTS = (
    Client("Codex CLI", "Responses", ("tests/agents/test_codex_through_proxy.py",
                                      "tests/agents/test_codex_responses_upstream.py")),
    Client("OpenAI Agents SDK", "Responses", ("tests/test_agents_sdk.py",)),
    Client("openai SDK", "Responses", ("tests/test_responses_e2e.py", "tests/test_anthropic_prompt_caching.py",
                                       "tests/test_responses_store.py", "tests/test_responses_store_redis.py",
                                       "tests/test_responses_upstream.py")),
    Client("Claude Code", "Messages", ("tests/agents/test_agents_through_proxy.py",
                                       "tests/agents/test_claude_through_proxy.py")),
    Client("anthropic SDK", "Messages", ("tests/test_messages_e2e.py", "tests/test_messages_errors.py")),
)


def versions() -> dict[str, str]:
    from tests.agents import harness
    found = {"openai SDK": _package("openai"), "anthropic SDK": _package("anthropic"),
             "OpenAI Agents SDK": _package("openai-agents")}
    for name, binary in (("Codex CLI", harness.codex_bin()), ("Claude Code", harness.claude_bin())):
        found[name] = _agent_version(binary)
    return found


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _agent_version(binary: str | None) -> str:
    if binary is None:
        return "not installed"
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    version = re.search(r"\d+\.\d+\.\d+", result.stdout)  # "codex-cli 0.171.0", "2.1.332 (Claude Code)"
    return version.group(0) if version else "unknown"


def upstream_of(item: pytest.Item) -> str:
    """Which upstream format a test drives: its file's, a parameter naming one, else the fixtures it uses."""
    fixed = FILE_UPSTREAM.get(item.nodeid.split("::")[0])
    if fixed is not None:
        return fixed
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        if value in UPSTREAMS:
            return value
    if "anthropic_upstream" in item.fixturenames:
        return "anthropic"
    if "openai_upstream" in item.fixturenames or "rec" in item.fixturenames:
        return "chat"
    return "mock"


class Collector:
    """A pytest plugin: each test's outcome, keyed by (client, upstream format)."""

    def __init__(self) -> None:
        self.by_file = {path: client for client in CLIENTS for path in client.files}
        self.upstream: dict[str, str] = {}
        self.results: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.upstream[item.nodeid] = upstream_of(item)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            client = self.by_file.get(report.nodeid.split("::")[0])
            if client is not None:
                self.results[(client.name, self.upstream.get(report.nodeid, "mock"))].append(
                    (report.nodeid.split("::")[-1], report.outcome))


def cell(outcomes: list[tuple[str, str]]) -> str:
    if not outcomes:
        return "-"
    failed = [name for name, outcome in outcomes if outcome == "failed"]
    skipped = [name for name, outcome in outcomes if outcome == "skipped"]
    if failed:
        return f"**fail** ({len(failed)} of {len(outcomes)}: {', '.join(failed)})"
    if len(skipped) == len(outcomes):
        return "skipped (not installed)"
    passed = len(outcomes) - len(skipped)
    return f"pass ({passed} test{'' if passed == 1 else 's'})"


def render(collector: Collector, found_versions: dict[str, str], exit_code: int) -> str:
    head = "| client | pinned version | API | " + " | ".join(UPSTREAM_TITLES[u] for u in UPSTREAMS) + " |"
    lines = [head, "|" + "---|" * (3 + len(UPSTREAMS))]
    for client in CLIENTS:
        cells = [cell(collector.results.get((client.name, upstream), [])) for upstream in UPSTREAMS]
        lines.append(f"| {client.name} | {found_versions[client.name]} | {client.api} | " + " | ".join(cells) + " |")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return TEMPLATE.format(table="\n".join(lines), stamp=stamp, exit_code=exit_code,
                           files=" ".join(path for client in CLIENTS for path in client.files))


TEMPLATE = """# Clients tested through byok-proxy

Part of the [byok-proxy documentation](../README.md#documentation).

Real clients, pointed at the proxy, against test upstreams of each format (the providers
cannot be reached from CI; the test upstreams follow their documented wire formats). Each
cell is the outcome of the tests named in `tests/clients_doc.py`, from one run of
`python -m tests.clients_doc` on {stamp} (pytest exit code {exit_code}). "-" means no test
drives that pair. The same tests run in `bash scripts/test`.

{table}

What each client needs to know:

- **Codex CLI** speaks only the Responses API. Point a custom provider at the proxy
  (`wire_api = "responses"`, `base_url = "http://127.0.0.1:8080/v1"`). Codex declares
  OpenAI's hosted `web_search` tool by default, which only OpenAI can run: set
  `web_search = "disabled"` in `config.toml` (or `-c web_search='"disabled"'`), or the
  proxy answers 400 naming the tool, unless the alias leads with a `format: responses`
  upstream, which gets the request as Codex sent it. Codex sends its `namespace` tools (with model names it
  has no metadata for), `custom` tools such as apply_patch, and `tool_search`: the proxy
  translates the first two and drops `tool_search`, which chat models do without.
- **OpenAI Agents SDK**: `OpenAIResponsesModel(model="<alias>", openai_client=AsyncOpenAI(base_url=...))`.
- **Claude Code**: `ANTHROPIC_BASE_URL=http://127.0.0.1:8080`, and an alias for each model
  name it asks for (its main model and its small fast model), see [messages.md](messages.md).
- **openai / anthropic SDKs**: `base_url` as above; every feature behaves as against the provider.
  The openai SDK row covers `client.responses` (with stored responses, in memory and in Redis)
  and, on a Responses-format upstream, `client.chat.completions` translated onto it.

Test files: {files}
"""


def main() -> int:
    collector = Collector()
    files = [path for client in CLIENTS for path in client.files if (ROOT / path).exists()]
    exit_code = pytest.main(["-q", "-p", "no:cacheprovider", *files], plugins=[collector])
    (ROOT / "docs" / "clients.md").write_text(render(collector, versions(), int(exit_code)))
    print(f"wrote docs/clients.md ({sum(len(v) for v in collector.results.values())} test outcomes)")
    return int(exit_code)


if __name__ == "__main__":
    sys.exit(main())
