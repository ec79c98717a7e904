"""Claude Code, headless, pointed at the real proxy (a subprocess on loopback): a text answer
through the built-in mock, which echoes the agent's last user message, translated from Messages."""
from __future__ import annotations

import asyncio

import pytest

from tests.agents import harness
from tests.helpers import proxy_process

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def proxy_origin(tmp_path):
    with proxy_process("""
    upstreams:
      demo: {format: mock}
    models:
      main: [demo/echo-1]
      claude-sonnet-4-6: [demo/echo-1]
      claude-haiku-4-5: [demo/echo-1]
    """, tmp_path) as origin:
        yield origin


@pytest.mark.skipif(harness.claude_bin() is None, reason="Claude Code not installed: bash scripts/install-agents")
async def test_claude_code_gets_an_answer_through_the_proxy(proxy_origin, tmp_path):
    result = await asyncio.to_thread(harness.run_claude, proxy_origin, "sk-any",
                                     "claude-sonnet-4-6", "say the magic word banana", tmp_path, 120)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert "echo:" in result.stdout and "banana" in result.stdout
