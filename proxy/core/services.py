"""Long-lived components shared by every config generation.

A config reload builds a new Runtime (router, transport, chain) but keeps
these: counters must not reset, a slot held by an in-flight request must stay
counted, and health history must survive. Each field is owned by the module
that implements the concern; `Services.create` wires the standard set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.config.model import Config


@dataclass
class Services:
    metrics: Any = None    # proxy.observability.metrics.Metrics: counters/histograms and the /metrics exposition
    catalog: Any = None    # proxy.catalog.models.Catalog: declared + discovered models
    health: Any = None     # proxy.catalog.health: per-upstream health checks for /v1/upstreams
    limiters: Any = None   # proxy.resilience.limiter.LimiterRegistry: per-upstream concurrency slots
    circuits: Any = None   # proxy.resilience.circuit.CircuitRegistry: breakers and Retry-After cool-downs
    draining: bool = False  # set on SIGTERM: /readyz answers 503
    drain: Any = None      # proxy.server.lifecycle.Drain: the requests in flight, interrupted when shutdown_grace ends

    @classmethod
    def create(cls, config: Config) -> "Services":
        from proxy.catalog.models import Catalog
        from proxy.resilience.circuit import CircuitRegistry
        from proxy.resilience.limiter import LimiterRegistry
        from proxy.observability.metrics import Metrics
        services = cls(metrics=Metrics(), catalog=Catalog(config), limiters=LimiterRegistry(),
                       circuits=CircuitRegistry())
        services.metrics.configure(config)
        _wire_health(services, config)
        _wire_observability(services)
        return services


def _wire_health(services: Services, config: Config) -> None:
    """Health checks (the catalog fetch, timed) and what metrics read from them."""
    from proxy.catalog.health import HealthMonitor
    services.health = HealthMonitor(config, services.catalog, services)
    services.catalog.listeners.append(services.metrics.models.discovered)
    services.metrics.attach_state(limiters=lambda: services.limiters, health=lambda: services.health,
                                  circuits=lambda: services.circuits)


def _wire_observability(services: Services) -> None:
    """Queue waits reach the metrics as slots are granted; the drain registry tracks requests."""
    from proxy.server.lifecycle import Drain
    services.limiters.add_wait_observer(services.metrics.observe_queue_wait)
    services.drain = Drain()
