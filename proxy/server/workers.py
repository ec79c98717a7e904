"""`serve --workers N`: N serving processes sharing one port through SO_REUSEPORT.

One Python process uses one core. The parent forks N workers that each bind the same
address with SO_REUSEPORT, so the kernel spreads new connections across them, and then
only supervises: it forwards SIGTERM/SIGINT (drain) and SIGHUP (reload) to every worker,
restarts a worker that dies unexpectedly, and exits when they have all stopped.

Concurrency caps must stay exact across workers. A local (in-process) limiter would give
each worker its own `max_concurrent_requests`, multiplying the cap by N, so several
workers with capped upstreams require `concurrency: {backend: redis}`, which shares one
cap between processes; otherwise serving is refused with a message saying so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time
from typing import Callable

from proxy.config.model import Config

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# A worker that dies sooner than this after starting is not restarted: it would only die again.
MIN_WORKER_LIFETIME = 2.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def cap_problem(config: Config, workers: int) -> str | None:
    """Why `workers` processes could not keep this config's concurrency caps exact, or None."""
    if workers <= 1 or config.concurrency.backend == "redis":
        return None
    capped = [name for name, upstream in config.upstreams.items() if upstream.max_concurrent_requests]
    if not capped:
        return None
    return (f"--workers {workers} would give each worker its own max_concurrent_requests for "
            f"{', '.join(capped)} (a cap {workers} times too high). Set concurrency: {{backend: redis, url: ...}} "
            f"to share one cap between workers, or run a single worker.")


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket: it resolves port 0 to a real port that
    every worker can then bind too, and keeps that port ours while workers restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock, sock.getsockname()[1]


class Supervisor:
    """Forks the workers and watches them."""

    def __init__(self, workers: int, serve_one: Callable[[int], int]):
        self.count = workers
        self.serve_one = serve_one  # runs one worker serving on the given port; returns its exit code
        self.port = 0
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self.exit_code = 0

    def run(self, port: int) -> int:
        self.port = port
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._forward)
        for _ in range(self.count):
            self._start_worker()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self._reap(pid, status)
        return self.exit_code

    def _start_worker(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: its own signal handling comes from the event loop it starts
            for signum in FORWARDED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            _die_with_parent()
            code = 1
            try:
                code = self.serve_one(self.port)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = time.monotonic()

    def _reap(self, pid: int, status: int) -> None:
        started = self.children.pop(pid, None)
        if started is None:
            return
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            self.exit_code = max(self.exit_code, code if code > 0 else 0)
            return
        lived = time.monotonic() - started
        if lived < MIN_WORKER_LIFETIME:
            print(f"byok-proxy: worker {pid} exited with code {code} right after starting; stopping",
                  file=sys.stderr, flush=True)
            self.exit_code = code if code > 0 else 1
            self._stop_all(signal.SIGTERM)
            return
        print(f"byok-proxy: worker {pid} exited with code {code} after {lived:.0f}s; starting a new one",
              file=sys.stderr, flush=True)
        self._start_worker()

    def _forward(self, signum: int, frame) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        self._stop_all(signum)

    def _stop_all(self, signum: int) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def _die_with_parent() -> None:
    """Linux: drain (SIGTERM) when the supervisor dies, even by SIGKILL, so no orphan keeps the port."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: the supervisor's own signal forwarding is all there is
    if os.getppid() == 1:  # the supervisor died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(config: Config, host: str, port: int, workers: int, serve_one: Callable[[int], int]) -> int:
    """Serve with `workers` processes; `serve_one(port)` runs one worker (with SO_REUSEPORT)."""
    problem = cap_problem(config, workers)
    if problem is not None:
        print(f"byok-proxy: {problem}", file=sys.stderr)
        return 2
    if not hasattr(socket, "SO_REUSEPORT"):
        print("byok-proxy: --workers needs SO_REUSEPORT, which this platform lacks", file=sys.stderr)
        return 2
    try:
        reserved, bound_port = reserve_port(host, port)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        print(f"byok-proxy: starting {workers} workers on http://{host}:{bound_port}", file=sys.stderr, flush=True)
        return Supervisor(workers, serve_one).run(bound_port)
    finally:
        reserved.close()
