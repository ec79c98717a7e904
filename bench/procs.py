"""Starting, pinning, probing, measuring and stopping the processes under test.

Each server runs as a child process, pinned with `taskset` to the cores it is given,
with its output in a log file. Memory is the resident set of the whole process tree
(a multi-worker server counts every worker), read from /proc.
"""
from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Lift RLIMIT_NOFILE as far as allowed (root may raise the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (wanted, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), max(hard, target)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_command(argv: list[str], cpus: str | None) -> list[str]:
    if cpus is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", cpus, *argv]


def _children(pid: int) -> list[int]:
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            found = [int(child) for child in handle.read().split()]
    except OSError:
        return []
    for child in list(found):
        found.extend(_children(child))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    total = 0
    for member in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants, including reaped children."""
    total = 0
    for member in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state
        total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as handle:
            values = [int(value) for value in handle.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICKS


class CpuMeter:
    """How busy the machine was during a phase, and how much of that was not us.

    Other work on the machine (another process, a noisy neighbour) skews every latency;
    `foreign_cores` says how much of it there was, so a reader can judge a run.
    """

    def __init__(self):
        self.started = time.monotonic()
        self.busy = machine_busy_seconds()
        self.ours = cpu_seconds(os.getpid())

    def read(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        busy = machine_busy_seconds() - self.busy
        ours = cpu_seconds(os.getpid()) - self.ours
        return {"seconds": elapsed, "busy_cores": busy / elapsed, "ours_cores": ours / elapsed,
                "foreign_cores": max(0.0, busy - ours) / elapsed}


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        return rss_bytes(self.pid) / (1024 * 1024)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group (our own child and its workers only), then SIGKILL."""
        if not self.alive():
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(5)


def spawn(name: str, argv: list[str], port: int, log_dir: Path, cpus: str | None = None,
          env: dict[str, str] | None = None, cwd: str | None = None, unset: tuple[str, ...] = ()) -> Server:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    handle = open(log_path, "wb")
    environment = {name: value for name, value in os.environ.items() if name not in unset}
    process = subprocess.Popen(pin_command(argv, cpus), stdout=handle, stderr=subprocess.STDOUT,
                               env={**environment, **(env or {})}, cwd=cwd, start_new_session=True)
    handle.close()
    return Server(name, process, port, log_path)


async def http_get_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    finally:
        writer.close()


async def wait_ready(server: Server, path: str | None, timeout: float) -> None:
    """Until the server answers `path` with a 2xx (or accepts a TCP connection when path is None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited with code {server.process.returncode}:\n{server.log_tail()}")
        if path is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.close()
                return
            except OSError:
                pass
        else:
            status = await http_get_status(server.port, path)
            if status is not None and 200 <= status < 300:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name} was not ready within {timeout:.0f}s:\n{server.log_tail()}")


async def settle_rss(server: Server, seconds: float = 2.0, step: float = 0.25) -> float:
    """RSS after the process has been left alone for a moment (the last of a few samples)."""
    value = server.rss_mb()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(step)
        value = server.rss_mb()
    return value
