"""Test helpers: start the real proxy on loopback, in-process or as a subprocess."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from proxy.config.model import parse_config
from proxy.core.services import Services
from proxy.server.app import ProxyApp, start_site

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningProxy:
    url: str
    app: ProxyApp
    runner: object

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_proxy(config_text: str, environ: dict[str, str] | None = None,
                      services: Services | None = None) -> RunningProxy:
    """The real server (same code path as `byok-proxy serve`) on a free loopback port."""
    config = parse_config(textwrap.dedent(config_text), environ={**os.environ, **(environ or {})})
    app = ProxyApp(config, services)
    runner, port = await start_site(app, "127.0.0.1", 0)
    return RunningProxy(f"http://127.0.0.1:{port}", app, runner)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxy", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def spawn_proxy(config_path: str, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "proxy", "serve", "-c", config_path, "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})


@contextmanager
def proxy_process(config_text: str, folder: Path) -> Iterator[str]:
    """`byok-proxy serve` as a subprocess for `config_text` (written to `folder`), on a free port;
    yields its origin, http://127.0.0.1:PORT, and stops it afterwards."""
    config = folder / "config.yaml"
    config.write_text(textwrap.dedent(config_text))
    port = free_port()
    process = spawn_proxy(str(config), port)
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"proxy exited early: {process.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


async def check_json(config_text: str, directory: Path) -> tuple[dict[str, dict], str]:
    """`byok-proxy check --json` on `config_text` in a subprocess: each upstream's report by name,
    and everything the command printed (stdout and stderr)."""
    path = directory / "check-config.yaml"
    path.write_text(config_text)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "proxy", "check", "-c", str(path), "--json",
                                                   cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return {entry["name"]: entry for entry in json.loads(out)["upstreams"]}, out.decode() + err.decode()
