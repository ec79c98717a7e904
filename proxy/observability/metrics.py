"""Prometheus metrics: every `byok_*` series, in a registry of our own.

One `Metrics` object lives in `services.metrics` for the life of the process,
across config reloads, so counters never reset when the config changes.
Request-scoped series are recorded by plugins/observe.py when a response (or
its stream) ends; state that already lives elsewhere (in-flight and queued
slots, upstream health, open circuits) is read at scrape time by a collector,
so the hot path pays nothing for it.

Label cardinality is bounded: upstream names come from the config, and a model
label is only ever a model the config declares or an upstream's catalog
listed — anything else is counted as `other`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

OTHER = "other"
NO_UPSTREAM = "none"  # requests refused before any upstream was chosen (unknown model, bad input)
HEALTH_STATES = ("ok", "degraded", "unreachable")
RELOAD_RESULTS = ("success", "failure")
BUSY = "busy"  # the fallback walk's reason for an attempt refused a concurrency slot

# LLM calls range from a cached 100 ms answer to a reasoning model thinking for minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The proxy's own share of a request should be sub-millisecond to a few milliseconds.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# The classic text format that generate_latest writes; every Prometheus 2.x and 3.x reads it.
# `*_created` timestamps would double the series count for no use in the classic text format.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# The inbound APIs, as the `api` label spells them; anything else is "other" (forwarded /v1/* paths).
API_LABELS = frozenset({"chat", "responses", "messages", "other"})

class ModelLabels:
    """Which (upstream, model) pairs may appear as a `model` label.

    Declared models and alias targets come from each config generation
    (`configure`); discovered ones are added as catalogs arrive (`discovered`).
    Membership is a set lookup, so labelling costs nothing per request.
    """

    def __init__(self) -> None:
        self._declared: frozenset[tuple[str, str]] = frozenset()
        self._discovered: dict[str, frozenset[str]] = {}

    def configure(self, config: Any) -> None:
        pairs = {(upstream, model) for upstream, settings in config.upstreams.items() for model in settings.models}
        for alias in config.models.values():
            for target in alias.targets:
                upstream, _, model = target.partition("/")
                if model:
                    pairs.add((upstream, model))
        self._declared = frozenset(pairs)
        # Catalogs of upstreams that no longer exist must not keep their labels alive.
        self._discovered = {name: models for name, models in self._discovered.items() if name in config.upstreams}

    @property
    def declared(self) -> frozenset[tuple[str, str]]:
        return self._declared

    def discovered(self, upstream: str, models: Iterable[str]) -> None:
        self._discovered[upstream] = frozenset(models)

    def label(self, upstream: str | None, model: str | None) -> str:
        if not upstream or not model:
            return OTHER
        if (upstream, model) in self._declared or model in self._discovered.get(upstream, ()):
            return model
        return OTHER


class Metrics:
    """Every `byok_*` metric, registered in its own CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.models = ModelLabels()
        self._upstreams: tuple[str, ...] = ()
        # The series one request moves, by (upstream, model, status) label values.
        self._request_series: dict[tuple[str, str, str, int | str], _RequestSeries] = {}
        registry = self.registry
        self.requests = Counter("byok_requests", "Requests answered, by the upstream that answered last, "
                                "its model, the final status and the inbound API (chat, responses, messages, other)",
                                ["api", "upstream", "model", "status"], registry=registry)
        self.request_duration = Histogram("byok_request_duration_seconds", "Time from request received to "
                                          "response or stream end", ["upstream", "model"],
                                          buckets=LATENCY_BUCKETS, registry=registry)
        self.time_to_first_token = Histogram("byok_time_to_first_token_seconds", "Time from request received to "
                                             "the first content delta sent to the client (streams)",
                                             ["upstream", "model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.tokens = Counter("byok_tokens", "Tokens reported by upstream usage; direction in = prompt, "
                              "out = completion", ["upstream", "model", "direction"], registry=registry)
        self.queue_wait = Histogram("byok_queue_wait_seconds", "Time a request waited for a concurrency slot",
                                    ["upstream"], buckets=QUEUE_WAIT_BUCKETS, registry=registry)
        self.fallbacks = Counter("byok_fallbacks", "Requests moved from one upstream to the next, by the reason",
                                 ["from", "to", "reason"], registry=registry)
        self.rejected = Counter("byok_rejected", "Requests refused by the concurrency limit",
                                ["upstream", "reason"], registry=registry)
        self.config_reloads = Counter("byok_config_reloads", "Config reloads, by result", ["result"],
                                      registry=registry)
        self.proxy_overhead = Histogram("byok_proxy_overhead_seconds", "The proxy's own time on a request from "
                                        "accepting it to calling the upstream (routing, middleware, encoding), "
                                        "slot waits excluded", buckets=OVERHEAD_BUCKETS, registry=registry)
        self._queue_waits, self._fallbacks, self._rejections = (
            _Children(self.queue_wait), _Children(self.fallbacks), _Children(self.rejected))
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result)  # both series exist from the start, so rate() works
        self._state = _StateCollector()
        registry.register(self._state)

    # ---- configuration ---------------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Adopt a config generation: which upstreams and models may be labels."""
        self.models.configure(config)
        self._upstreams = tuple(config.upstreams)
        self._state.upstreams = self._upstreams
        for upstream, model in self.models.declared:
            self._initialize(upstream, model)

    def _initialize(self, upstream: str, model: str) -> None:
        """Create a declared model's series at zero, so the first request is already an
        increase to rate() and histogram_quantile() (a series born at 1 shows none)."""
        self.requests.labels("chat", upstream, model, "200")
        self.request_duration.labels(upstream, model)
        self.time_to_first_token.labels(upstream, model)
        for direction in ("in", "out"):
            self.tokens.labels(upstream, model, direction)
        self.queue_wait.labels(upstream)

    def attach_state(self, *, limiters: Callable[[], Any] | None = None, health: Callable[[], Any] | None = None,
                     circuits: Callable[[], Any] | None = None) -> None:
        """Where the scrape-time gauges read from; each a zero-argument callable returning
        the current component (or None), so a reload that swaps a component is followed."""
        self._state.sources = {"limiters": limiters, "health": health, "circuits": circuits}

    # ---- recording (called by plugins/observe.py and the reloader) -------------------------

    def model_label(self, upstream: str | None, model: str | None) -> str:
        return self.models.label(upstream, model)

    def upstream_label(self, upstream: str | None) -> str:
        return upstream if upstream else NO_UPSTREAM

    def observe_request(self, *, upstream: str | None, model: str | None, status: int | str, duration: float,
                        ttft: float | None = None, tokens_in: int | None = None,
                        tokens_out: int | None = None, api: str = "chat") -> None:
        self._observe_request(upstream, model, status, duration, ttft, tokens_in, tokens_out, api)

    def _observe_request(self, upstream: str | None, model: str | None, status: int | str, duration: float,
                         ttft: float | None, tokens_in: int | None, tokens_out: int | None, api: str) -> None:
        series = self._series(api if api in API_LABELS else "other", self.upstream_label(upstream),
                              self.models.label(upstream, model), status)
        series.requests.inc()
        series.duration.observe(duration)
        if ttft is not None:
            series.ttft.observe(ttft)
        if tokens_in:
            series.tokens_in.inc(tokens_in)
        if tokens_out:
            series.tokens_out.inc(tokens_out)

    def _series(self, api: str, upstream: str, model: str, status: int | str) -> "_RequestSeries":
        """The children for one set of label values, looked up once: labels() validates and locks
        on every call. Keyed by labels, never by a client's model name, so bounded like them."""
        key = (api, upstream, model, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = _RequestSeries(
                self.requests.labels(api, upstream, model, str(status)), self.request_duration.labels(upstream, model),
                self.time_to_first_token.labels(upstream, model), self.tokens.labels(upstream, model, "in"),
                self.tokens.labels(upstream, model, "out"))
        return series

    def observe_finished(self, request: Any, status: int, error: Any, now: float) -> None:
        """Everything one finished request says, read from its trace (proxy.core.exchange.RequestTrace):
        the request itself, each fallback between attempts, busy refusals, proxy overhead."""
        trace = request.trace
        upstream, model = _served(request)
        first_token = trace.first_token_at if request.stream else None  # time to first token: streams only
        self._observe_request(upstream, model, status, now - request.started_at,
                              None if first_token is None else first_token - request.started_at,
                              trace.prompt_tokens, trace.completion_tokens, request.api)
        attempts = trace.attempts
        last = len(attempts) - 1
        for index, attempt in enumerate(attempts):
            reason = attempt.reason
            if not reason:  # it neither moved the request on nor was refused a slot
                continue
            if index < last:
                self.observe_fallback(attempt.upstream, attempts[index + 1].upstream, reason)
            if reason == BUSY:
                self.observe_rejected(attempt.upstream, _rejection(index == last, error))
        overhead = _overhead(request)
        if overhead is not None:
            self.observe_overhead(overhead)

    def observe_queue_wait(self, upstream: str, seconds: float) -> None:
        self._queue_waits.child(upstream).observe(seconds)

    def observe_fallback(self, from_upstream: str, to_upstream: str, reason: str | None) -> None:
        self._fallbacks.child(from_upstream, to_upstream, reason or "unknown").inc()

    def observe_rejected(self, upstream: str, reason: str) -> None:
        self._rejections.child(upstream, reason).inc()

    def observe_reload(self, ok: bool) -> None:
        self.config_reloads.labels("success" if ok else "failure").inc()

    def observe_overhead(self, seconds: float) -> None:
        self.proxy_overhead.observe(max(0.0, seconds))

    # ---- exposition --------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE


def _served(request: Any) -> tuple[str | None, str | None]:
    """(upstream, model) that answered last: the served attempt, else the last one tried."""
    trace = request.trace
    if trace.attempts:
        last = trace.attempts[-1]
        return trace.served_by or last.upstream, last.model
    if request.target is not None:
        return request.target.upstream.name, request.target.model
    return None, None


def _rejection(is_last: bool, error: Any) -> str:
    """A busy attempt that ended the request timed out in the queue; the others overflowed at once."""
    if is_last and getattr(error, "code", None) == "queue_timeout":
        return "queue_timeout"
    return "concurrency_limit"


def _overhead(request: Any) -> float | None:
    """The proxy's own time from accepting the request (body read and validated) to calling
    the upstream: routing, middleware, encoding — minus any time queued for a slot. Only
    for requests sent once (no fallback or retry waits in between) that reached an upstream."""
    trace = request.trace
    dispatched = getattr(trace, "dispatched_at", None)
    if dispatched is None or len(trace.attempts) > 1:
        return None
    return dispatched - request.started_at - trace.queue_wait


@dataclass(frozen=True, slots=True)
class _RequestSeries:
    requests: Any
    duration: Any
    ttft: Any
    tokens_in: Any
    tokens_out: Any


class _Children:
    """A labelled metric's children by label values, each found with labels() once (it validates
    and locks on every call). The keys are the metric's own label values, so this holds no
    more entries than the metric itself does."""

    __slots__ = ("_metric", "_by_labels")

    def __init__(self, metric: Any) -> None:
        self._metric, self._by_labels = metric, {}

    def child(self, *labels: str) -> Any:
        found = self._by_labels.get(labels)
        if found is None:
            found = self._by_labels[labels] = self._metric.labels(*labels)
        return found


class _StateCollector:
    """Gauges read from the live components at scrape time: in-flight and queued
    requests per upstream, upstream health and open circuits.

    The components belong to other modules; this reads them defensively (a
    missing component or method simply yields no samples) so metrics never
    break a scrape because a feature is absent.
    """

    def __init__(self) -> None:
        self.upstreams: tuple[str, ...] = ()
        self.sources: dict[str, Callable[[], Any] | None] = {}

    def describe(self) -> list:
        return []  # values are only known at scrape time; an empty describe keeps registration cheap

    def collect(self) -> Iterable[GaugeMetricFamily]:
        inflight = GaugeMetricFamily("byok_inflight_requests", "Requests holding a concurrency slot, per upstream",
                                     labels=["upstream"])
        queued = GaugeMetricFamily("byok_queued_requests", "Requests waiting for a concurrency slot, per upstream",
                                   labels=["upstream"])
        health = GaugeMetricFamily("byok_upstream_health", "1 for the upstream's current health state "
                                   "(ok, degraded, unreachable), 0 for the others", labels=["upstream", "state"])
        circuit = GaugeMetricFamily("byok_circuit_open", "1 while the upstream's circuit breaker is open "
                                    "(requests kept away), 0 when closed or half open",
                                    labels=["upstream"])
        limiters, monitor, circuits = (self._component(name) for name in ("limiters", "health", "circuits"))
        for upstream in self.upstreams:
            counts = _slot_counts(limiters, upstream)
            if counts is not None:
                inflight.add_metric([upstream], counts[0])
                queued.add_metric([upstream], counts[1])
            state = _health_state(monitor, upstream)
            if state is not None:
                for candidate in HEALTH_STATES:
                    health.add_metric([upstream, candidate], 1.0 if candidate == state else 0.0)
            is_open = _circuit_open(circuits, upstream)
            if is_open is not None:
                circuit.add_metric([upstream], 1.0 if is_open else 0.0)
        return [inflight, queued, health, circuit]

    def _component(self, name: str) -> Any:
        source = self.sources.get(name)
        return source() if source is not None else None


def _slot_counts(limiters: Any, upstream: str) -> tuple[int, int] | None:
    """(in-flight, queued) from proxy.resilience.limiter.LimiterRegistry.snapshot; None without limiters."""
    snapshot = getattr(limiters, "snapshot", None)
    return snapshot(upstream) if callable(snapshot) else None


def _health_state(monitor: Any, upstream: str) -> str | None:
    """ok | degraded | unreachable from proxy.catalog.health.HealthMonitor.status; None before the first check."""
    status = getattr(monitor, "status", None)
    state = status(upstream) if callable(status) else None
    return state if state in HEALTH_STATES else None


def _circuit_open(circuits: Any, upstream: str) -> bool | None:
    """From proxy.resilience.circuit.CircuitRegistry.state: open keeps requests away; half_open lets a probe through."""
    state = getattr(circuits, "state", None)
    return state(upstream) == "open" if callable(state) else None
