"""Graceful drain on SIGTERM.

The order matters, and is the contract of PRODUCT.md "Drain":

1. readiness turns false at once (`services.draining`; /readyz answers 503),
   so a load balancer or the kubelet stops sending traffic;
2. the listening sockets close, so new connections are refused, and idle
   keep-alive connections close; busy ones close after their response;
3. requests in flight (streams included) run to completion for up to
   `shutdown_grace` seconds;
4. whatever is still running then is interrupted: a stream ends with one
   `data: {"error": ...}` event (code `shutting_down`), a plain request
   answers 503; then the server shuts down and the process exits 0.

`Drain` is the registry of the tasks serving requests; the server
(proxy/server/app.py) enters each request into it and leaves when the
response or its stream has been written, so "in flight" includes streams that
outlive their handler's `call_next`. Its InFlight tracker is what the drain
waits on.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from proxy.core.errors import ServiceUnavailable
from proxy.core.inflight import InFlight

log = logging.getLogger("byok.lifecycle")
POLL_SECONDS = 0.05


class Drain:
    """The tasks serving requests right now, and whether the drain has run out of grace."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.inflight = InFlight()
        self.expired = False
        self.grace = 0.0

    @property
    def active(self) -> int:
        return len(self._tasks)

    def enter(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            self.inflight.enter()
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None and task in self._tasks:
            self._tasks.discard(task)
            self.inflight.leave()

    def interrupt(self, grace: float) -> int:
        """Grace is over: cancel every request still running; returns how many there were."""
        self.expired, self.grace = True, grace
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        return len(tasks)

    def interrupted(self, task: asyncio.Task[Any] | None) -> ServiceUnavailable | None:
        """When the drain cancelled `task`: undo the cancellation (the handler still has to
        write the error) and return the error to report; None for any other cancellation."""
        if not self.expired:
            return None
        if task is not None and hasattr(task, "uncancel"):  # Python 3.11+
            task.uncancel()
        return ServiceUnavailable(f"byok-proxy is shutting down: the request did not finish within "
                                  f"shutdown_grace ({self.grace:g} s)", code="shutting_down")


async def drain(runner: Any, proxy_app: Any) -> None:
    """Run the drain over an aiohttp AppRunner serving `proxy_app`, then clean it up."""
    services = proxy_app.services
    services.draining = True
    grace = proxy_app.config.shutdown_grace
    for site in list(runner.sites):
        await site.stop()  # the listening socket closes: new connections are refused
    server = runner.server
    if server is not None:
        server.pre_shutdown()  # idle keep-alive connections close now, busy ones after their response
    tracker: Drain | None = getattr(services, "drain", None)
    busy = _busy_count(server, tracker)
    log.info("draining: %d request(s) in flight, up to %g s to finish", busy, grace)
    await _wait_idle(server, tracker, grace)
    if tracker is not None:
        interrupted = tracker.interrupt(grace)
        if interrupted:
            log.warning("shutdown_grace (%g s) ran out: ending %d request(s) with an error", grace, interrupted)
    await runner.cleanup()
    log.info("drained; exiting")


def _busy_count(server: Any, tracker: Drain | None) -> int:
    """Requests still running. The tracker counts exactly what is in flight through the chain;
    aiohttp's connection list also holds idle keep-alive connections until its own shutdown,
    so it is only the fallback. A request still reading its body when the count hits zero is
    covered by aiohttp's own wait in runner.cleanup()."""
    if tracker is not None:
        return tracker.active
    return len(server.connections) if server is not None else 0


async def _wait_idle(server: Any, tracker: Drain | None, grace: float) -> None:
    if tracker is not None:
        await tracker.inflight.wait_idle(grace)
        return
    loop = asyncio.get_running_loop()  # no tracker (a bare app): aiohttp's connection list is all there is
    deadline = loop.time() + grace
    while server is not None and server.connections and loop.time() < deadline:
        await asyncio.sleep(POLL_SECONDS)
