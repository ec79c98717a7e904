"""The `fallback` middleware: walk a request's targets until one answers.

Per target: skip it while its circuit is open or it cools down after a 429
Retry-After; retry it `retries` times with capped, jittered exponential backoff;
on a failure listed in the alias's `fallback_on`, move on. Saturation overflows:
every target but the last resort is tried with `no_wait`, and when all were busy
the request queues on the first busy one (concurrency then answers 429).

A stream commits at its first content, tool or reasoning delta (see
proxy/streams/guard.py): a failure before that falls back unseen by the
client; after it the failure propagates and the server ends the stream with an
error event.
"""
from __future__ import annotations

import asyncio
import random
from typing import Optional

from proxy.api import (Handler, PluginContext, ProxyError, ProxyRequest, ProxyResponse, RateLimited, ServiceUnavailable,
                       Target, UpstreamError, UpstreamHTTPError)
from proxy.config.model import DEFAULT_FALLBACK_ON
from proxy.core.exchange import Attempt
from proxy.resilience.circuit import CircuitBreaker, CircuitRegistry, is_server_failure
from proxy.streams.guard import await_commit

BACKOFF_BASE, BACKOFF_CAP = 0.25, 8.0  # seconds: retry n waits up to min(cap, base * 2**(n-1))


class Fallback:
    def __init__(self, circuits: CircuitRegistry):
        self.circuits = circuits

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        targets = request.targets or ((request.target,) if request.target is not None else ())
        if not targets:
            return await call_next(request)
        walk = _Walk(request, call_next, self.circuits)
        response = await walk.run(targets)
        if response is None:
            raise walk.final_error()
        return response


class _Walk:
    """One request's way through its targets, and what it met on the way."""

    def __init__(self, request: ProxyRequest, call_next: Handler, circuits: CircuitRegistry):
        self.request, self.call_next, self.circuits = request, call_next, circuits
        self.attempts = request.trace.attempts
        self.last_error: Optional[ProxyError] = None
        self.busy: list[Target] = []

    async def run(self, targets: tuple[Target, ...]) -> Optional[ProxyResponse]:
        pending = [target for target in targets if self._available(target)]
        while pending:
            self.busy = []
            for index, target in enumerate(pending):
                last_resort = index == len(pending) - 1 and not self.busy
                response = await self._try(target, no_wait=not last_resort)
                if response is not None:
                    return response
            if not self.busy:
                break
            # Nobody had a free slot: queue on the first busy one. If it then fails, the
            # other busy ones may have room by now, so they get their turn.
            response = await self._try(self.busy[0], no_wait=False)
            if response is not None or isinstance(self.last_error, RateLimited):
                return response  # an answer, or a queue_timeout (429)
            pending = self.busy[1:]
        return await self._wait_for_cooled(targets)

    def _available(self, target: Target) -> bool:
        breaker = self.circuits.get(target.upstream.name)
        if breaker.cooling_for() > 0:
            self._note(target, "cooling", f"cooling down after 429 for {breaker.cooling_for():.1f} s")
        elif breaker.state() == "open":
            self._note(target, "circuit_open", f"circuit open after {breaker.failures} failures")
        else:
            return True
        return False

    async def _wait_for_cooled(self, targets: tuple[Target, ...]) -> Optional[ProxyResponse]:
        """Every target failed or is unavailable. If one is only cooling down after a 429
        and its Retry-After fits the request's deadline (or its queue_timeout), wait."""
        waits = {self.circuits.get(t.upstream.name).cooling_for(): t for t in targets}
        cooling = [wait for wait in waits if wait > 0]
        if not cooling:
            return None  # nothing is cooling: the failures stand
        pause = min(cooling)
        target, budget = waits[pause], self.request.remaining()
        if pause > (budget if budget is not None else target.upstream.queue_timeout):
            return None
        await asyncio.sleep(pause)
        return await self._try(target, no_wait=False)

    async def _try(self, target: Target, *, no_wait: bool) -> Optional[ProxyResponse]:
        """Up to 1 + retries attempts at one target; None when it did not answer."""
        breaker = self.circuits.get(target.upstream.name)
        for attempt in range(target.upstream.retries + 1):
            if attempt and not await self._back_off(attempt):
                return None
            if not breaker.allow():  # opened while retrying, or another request holds the probe
                self._note(target, "circuit_open", f"circuit {breaker.state().replace('_', ' ')}")
                return None
            try:
                outcome = await self._attempt(target, breaker, no_wait)
            except RateLimited as busy:  # the concurrency middleware: no slot now
                breaker.abandoned()
                self.last_error = busy
                if no_wait:
                    self.busy.append(target)
                self._note(target, "busy", busy.message)
                return None
            if outcome is not None:
                return outcome
            if self.last_error is not None and getattr(self.last_error, "retry_after", None):
                return None  # it said when to come back; cooling, not retrying
        return None

    async def _attempt(self, target: Target, breaker: CircuitBreaker, no_wait: bool) -> Optional[ProxyResponse]:
        request = self.request.replace(target=target, no_wait=no_wait)
        try:
            response = await await_commit(await self.call_next(request), target.upstream.name,
                                          lambda exc: self._failed_late(target, exc))
        except UpstreamError as exc:
            self._failed(target, breaker, exc)
            if not _triggers(exc, target):
                raise self._annotated(exc)
            return None
        except BaseException:
            breaker.abandoned()  # cancelled (client gone) or a proxy bug: no verdict on the upstream
            raise
        breaker.succeeded()
        self.attempts.append(Attempt(target.upstream.name, target.model, status=response.status))
        self.request.trace.served_by = target.upstream.name  # the server turns the trace into x-byok-* headers
        return response

    def _failed(self, target: Target, breaker: CircuitBreaker, exc: UpstreamError) -> None:
        if is_server_failure(exc):
            breaker.failed()
        else:
            breaker.succeeded()  # it answered coherently; the answer was just not a success
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            breaker.cool_down(retry_after)
        status = exc.upstream_status if isinstance(exc, UpstreamHTTPError) else None
        self.attempts.append(Attempt(target.upstream.name, target.model, status=status,
                                     error=exc.detail, reason=short_reason(exc)))
        self.last_error = exc

    def _failed_late(self, target: Target, exc: UpstreamError) -> None:
        """A committed stream broke: the client gets an error event; the circuit hears of it."""
        if is_server_failure(exc):
            self.circuits.get(target.upstream.name).failed()
        self.attempts[-1].error, self.attempts[-1].reason = exc.detail, short_reason(exc)

    def _note(self, target: Target, reason: str, detail: str) -> None:
        self.attempts.append(Attempt(target.upstream.name, target.model, error=detail, reason=reason))

    async def _back_off(self, attempt: int) -> bool:
        pause = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        remaining = self.request.remaining()
        if remaining is not None and remaining <= pause:
            return False
        await asyncio.sleep(pause)
        return True

    def final_error(self) -> ProxyError:
        if self.last_error is not None:
            return self._annotated(self.last_error)
        retry_in = max(1.0, min(self.circuits.get(a.upstream).retry_in() for a in self.attempts))
        if all(a.reason == "cooling" for a in self.attempts):
            return self._annotated(RateLimited("every target is cooling down after a 429", retry_after=retry_in))
        unavailable = ServiceUnavailable("no upstream available: every target's circuit is open",
                                         code="circuit_open", headers={"Retry-After": str(int(retry_in + 0.999))})
        return self._annotated(unavailable)

    def _annotated(self, error: ProxyError) -> ProxyError:
        """The error the client sees names every attempt, not only the last."""
        if len(self.attempts) > 1:
            listed = "; ".join(f"{a.upstream}/{a.model}: {a.error}" for a in self.attempts)
            error.message = f"all {len(self.attempts)} attempts failed ({listed}); last: {error.message}"
            error.args = (error.message,)
        return error


def _triggers(exc: UpstreamError, target: Target) -> bool:
    reason = exc.fallback_reason
    if reason is None:
        return False
    fallback_on = target.alias_config.fallback_on if target.alias_config is not None else DEFAULT_FALLBACK_ON
    return reason in fallback_on or (reason[0] in "45" and f"{reason[0]}xx" in fallback_on)


def short_reason(exc: UpstreamError) -> str:
    """How an attempt failed, in one word for headers and metric labels."""
    if isinstance(exc, UpstreamHTTPError):
        return str(exc.upstream_status)
    if exc.fallback_reason in ("connect", "timeout"):
        return exc.fallback_reason
    return exc.code or "error"


def create(context: PluginContext) -> Fallback:
    circuits: CircuitRegistry = context.services.circuits
    circuits.configure(context.config)
    return Fallback(circuits)
