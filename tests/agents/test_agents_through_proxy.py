"""Claude Code, headless, pointed at the real proxy (a subprocess on loopback): a text answer
through the built-in mock, which echoes the agent's last user message, translated from Messages."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from tests.agents import harness
from tests.helpers import free_port, wait_for_port

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def proxy_port(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent("""
    upstreams:
      demo: {format: mock}
    models:
      main: [demo/echo-1]
      claude-sonnet-4-6: [demo/echo-1]
      claude-haiku-4-5: [demo/echo-1]
    """))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.skipif(harness.claude_bin() is None, reason="Claude Code not installed: bash scripts/install-agents")
async def test_claude_code_gets_an_answer_through_the_proxy(proxy_port, tmp_path):
    result = await asyncio.to_thread(harness.run_claude, f"http://127.0.0.1:{proxy_port}", "sk-any",
                                     "claude-sonnet-4-6", "say the magic word banana", tmp_path, 120)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert "echo:" in result.stdout and "banana" in result.stdout
