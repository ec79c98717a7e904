"""Upstream health: the catalog fetch, timed, every `health.interval` seconds.

`ok` when the model list came back within `degraded_after` seconds, `degraded`
when it came back slower, `unreachable` on any error or after `timeout`. The
first check starts right after startup in the background; nothing waits on
it. The state per upstream is what GET /v1/upstreams, the status page and the
`byok_upstream_health` gauge read.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from proxy.catalog.discovery import DiscoveryError
from proxy.catalog.models import Catalog
from proxy.config.model import Config, UpstreamConfig
from proxy.config.secrets import redact

OK, DEGRADED, UNREACHABLE, UNKNOWN = "ok", "degraded", "unreachable", "unknown"
log = logging.getLogger("byok.health")


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    name: str
    status: str = UNKNOWN           # unknown until the first check has finished
    latency_ms: float | None = None
    last_error: str | None = None   # redacted; kept while the upstream stays failed
    checked_at: str | None = None   # ISO 8601, UTC


class HealthMonitor:
    def __init__(self, config: Config, catalog: Catalog, services: Any = None):
        self._config = config
        self._catalog = catalog
        self._services = services  # limiters and circuits, read for /v1/upstreams when present
        self._states: dict[str, UpstreamHealth] = {name: UpstreamHealth(name) for name in config.upstreams}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        # Called with each new UpstreamHealth (after every check, changed or not).
        self.listeners: list[Callable[[UpstreamHealth], None]] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule a loop per upstream and return at once: startup never waits on a check."""
        self._running = True
        for name in self._config.upstreams:
            self._spawn(name)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def apply_config(self, config: Config) -> None:
        """A reload: new and changed upstreams are checked again at once, removed ones forgotten."""
        old = self._config
        self._config = config
        changed = {name for name in config.upstreams
                   if _check_changed(old.upstreams.get(name), config.upstreams[name])}
        for name in list(self._tasks):
            # a new interval or threshold applies to every loop, so each restarts with it
            if name not in config.upstreams or name in changed or old.health != config.health:
                self._tasks.pop(name).cancel()
        self._states = {name: UpstreamHealth(name) if name in changed else self._states.get(name, UpstreamHealth(name))
                        for name in config.upstreams}
        if self._running:
            for name in config.upstreams:
                if name not in self._tasks:
                    self._spawn(name)

    def _spawn(self, name: str) -> None:
        self._tasks[name] = asyncio.get_running_loop().create_task(self._loop(name), name=f"health:{name}")

    async def _loop(self, name: str) -> None:
        settings = self._config.health
        if not settings.enabled:
            await self._discover_only(name)
            return
        while True:
            try:
                await self.check(name)
            except Exception:  # a bug in one check must not end this upstream's checks for good
                log.exception("health check of upstream %s failed unexpectedly", name)
            await asyncio.sleep(settings.interval)

    async def _discover_only(self, name: str) -> None:
        """Health checks turned off: discover the catalog once, report no state."""
        try:
            await self._catalog.refresh(name)
        except DiscoveryError as exc:
            log.info("model discovery for upstream %s failed: %s", name, redact(str(exc)))

    # ---- one check -------------------------------------------------------------------------------

    async def check(self, name: str) -> UpstreamHealth:
        settings = self._config.health
        started = time.monotonic()
        try:
            result = await self._catalog.refresh(name, timeout=settings.timeout)
        except DiscoveryError as exc:
            upstream = self._config.upstreams.get(name)
            problem = exc.diagnose(upstream, settings.timeout).summary if upstream else str(exc)
            state = UpstreamHealth(name, UNREACHABLE, _ms(time.monotonic() - started), redact(problem), _now())
        else:
            status = DEGRADED if result.latency > settings.degraded_after else OK
            error = None if status == OK else f"the model list took {result.latency:.1f} s " \
                                              f"(degraded above {settings.degraded_after:g} s)"
            state = UpstreamHealth(name, status, _ms(result.latency), error, _now())
        if name in self._config.upstreams:
            self._record(state)
        return state

    def _record(self, state: UpstreamHealth) -> None:
        previous = self._states.get(state.name)
        self._states[state.name] = state
        if previous is None or previous.status != state.status:
            log.info("upstream %s is %s%s", state.name, state.status,
                     f": {state.last_error}" if state.last_error else "")
        for listener in self.listeners:
            listener(state)

    # ---- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> UpstreamHealth | None:
        return self._states.get(name)

    def status(self, name: str) -> str | None:
        """ok | degraded | unreachable, or None before the first check (read by the metrics gauge)."""
        state = self._states.get(name)
        return state.status if state is not None and state.status != UNKNOWN else None

    def states(self) -> list[UpstreamHealth]:
        return [self._states.get(name) or UpstreamHealth(name) for name in self._config.upstreams]

    def snapshot(self) -> dict[str, Any]:
        """The body of GET /v1/upstreams. Never a key: errors went through redact()."""
        services = self._services
        data = []
        for state in self.states():
            inflight, queued = _slots(services, state.name)
            data.append({"name": state.name, "status": state.status, "latency_ms": state.latency_ms,
                         "last_error": state.last_error, "checked_at": state.checked_at,
                         "circuit": _circuit(services, state.name), "inflight": inflight, "queued": queued,
                         "models": self._catalog.model_count(state.name)})
        return {"data": data}


def _check_changed(old: UpstreamConfig | None, new: UpstreamConfig) -> bool:
    if old is None:
        return True
    return (old.base_url, old.format, old.kind, old.api_key, dict(old.headers), old.egress_proxy, old.tls) != \
           (new.base_url, new.format, new.kind, new.api_key, dict(new.headers), new.egress_proxy, new.tls)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- what other components know (each may be absent) ------------------------------------------

def _slots(services: Any, name: str) -> tuple[int | None, int | None]:
    limiters = getattr(services, "limiters", None)
    snapshot = getattr(limiters, "snapshot", None)
    if not callable(snapshot):
        return None, None
    try:
        found = snapshot(name)
    except KeyError:
        return None, None
    if isinstance(found, tuple) and len(found) == 2:
        return int(found[0]), int(found[1])
    if isinstance(found, dict):
        return found.get("inflight"), found.get("queued")
    return getattr(found, "inflight", None), getattr(found, "queued", None)


def _circuit(services: Any, name: str) -> str | None:
    circuits = getattr(services, "circuits", None)
    state = getattr(circuits, "state", None)
    if not callable(state):
        return None
    try:
        found = state(name)
    except KeyError:
        return None
    if found is None or isinstance(found, str):
        return found
    return str(getattr(found, "value", found))
