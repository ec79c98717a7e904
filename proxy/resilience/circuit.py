"""Per-upstream circuit breakers and Retry-After cool-downs.

A breaker opens after `circuit.failures` consecutive failures of an upstream
(connect errors, timeouts, 5xx, broken streams; never the client's own 4xx),
keeps requests away for `circuit.cooldown` seconds, then lets exactly one probe
through (half open): its success closes the circuit, its failure opens it again.
A probe that ends without a verdict (the client went away) frees the probe
place, and a probe that never reports is presumed lost after another cooldown,
so a breaker can never stick half open.

Separately, an upstream that answered 429 with Retry-After is "cooling" until
then: fallback moves on to other targets at once instead of sleeping.

The registry is a long-lived service: state survives config reloads.
"""
from __future__ import annotations

import time
from typing import Callable, Literal

from proxy.config.model import CircuitSettings, Config
from proxy.core.errors import UpstreamError

CircuitState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


class CircuitBreaker:
    def __init__(self, settings: CircuitSettings, clock: Clock = time.monotonic):
        self.settings = settings
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probe_started: float | None = None
        self.cooling_until = 0.0

    # -- reading -----------------------------------------------------------------------------

    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.settings.cooldown:
            return "open"
        return "half_open"

    def retry_in(self) -> float:
        """Seconds until this upstream may be tried again (0: now)."""
        now = self._clock()
        waits = [self.cooling_until - now]
        if self._opened_at is not None:
            waits.append(self._opened_at + self.settings.cooldown - now)
        return max(0.0, *waits)

    def cooling_for(self) -> float:
        return max(0.0, self.cooling_until - self._clock())

    # -- deciding ----------------------------------------------------------------------------

    def allow(self) -> bool:
        """May a request go to this upstream now? In half-open state, True hands out
        the single probe place; the caller then owes `succeeded`, `failed` or `abandoned`."""
        state = self.state()
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock()
        if self._probe_started is not None and now - self._probe_started < self.settings.cooldown:
            return False  # a probe is out; everyone else keeps skipping
        self._probe_started = now
        return True

    # -- verdicts ----------------------------------------------------------------------------

    def succeeded(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probe_started = None

    def failed(self) -> None:
        self.failures += 1
        self._probe_started = None
        if self._opened_at is not None or self.failures >= self.settings.failures:
            self._opened_at = self._clock()  # a failed probe restarts the cooldown

    def abandoned(self) -> None:
        """The attempt ended with no verdict on the upstream (client gone, slot busy)."""
        self._probe_started = None

    def cool_down(self, seconds: float) -> None:
        self.cooling_until = max(self.cooling_until, self._clock() + seconds)


def is_server_failure(error: UpstreamError) -> bool:
    """Failures that count against a circuit: the upstream is down, slow or broken.
    A 4xx (429 included) is a coherent answer from a live upstream."""
    reason = error.fallback_reason or ""
    return reason in ("connect", "timeout") or reason.startswith("5")


class CircuitRegistry:
    """Breakers by upstream name; `configure()` on every config generation."""

    def __init__(self, clock: Clock = time.monotonic):
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def configure(self, config: Config) -> None:
        for name, upstream in config.upstreams.items():
            self.get(name).settings = upstream.circuit

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(CircuitSettings(), self._clock)
        return breaker

    def state(self, name: str) -> CircuitState:
        breaker = self._breakers.get(name)
        return breaker.state() if breaker is not None else "closed"

    def is_open(self, name: str) -> bool:
        return self.state(name) == "open"

    def names(self) -> list[str]:
        return list(self._breakers)
