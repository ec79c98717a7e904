"""A real forward proxy on loopback: Debian's tinyproxy (installed by scripts/test), started in
the foreground with a config made for the test, its log in the test's directory."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from tests.helpers import free_port


class ForwardProxy:
    def __init__(self, directory: Path, credentials: tuple[str, str] | None = None):
        self.directory = directory
        self.credentials = credentials
        self.port = free_port()
        self.log_path = directory / "tinyproxy.log"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self) -> "ForwardProxy":
        binary = shutil.which("tinyproxy")
        assert binary is not None, "tinyproxy is not installed (scripts/test installs it)"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", f'LogFile "{self.log_path}"',
                 "LogLevel Info", "MaxClients 50", "Allow 127.0.0.1", "DisableViaHeader Yes"]
        if self.credentials:
            lines.append("BasicAuth {} {}".format(*self.credentials))
        config = self.directory / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        self._process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        while "Accepting connections" not in self.log():  # readiness, not timing: the test's timeout bounds it
            assert self._process.poll() is None, f"tinyproxy exited: {self.log()}"
            await asyncio.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
