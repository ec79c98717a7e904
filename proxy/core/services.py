"""Long-lived components shared by every config generation.

A config reload builds a new Runtime (router, transport, chain) but keeps
these: counters must not reset, a slot held by an in-flight request must stay
counted, and health history must survive. Each field is owned by the package
that implements the concern; proxy/server/services.py wires the standard set
(core sits below those packages, so it names their types for checkers only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # types only: importing them at run time would point core upwards
    from proxy.catalog.health import HealthMonitor
    from proxy.catalog.models import Catalog
    from proxy.observability.metrics import Metrics
    from proxy.resilience.circuit import CircuitRegistry
    from proxy.resilience.registry import LimiterRegistry
    from proxy.server.lifecycle import Drain
    from proxy.state.store import ResponseStore


@dataclass
class Services:
    metrics: Optional["Metrics"] = None          # counters/histograms and the /metrics exposition
    catalog: Optional["Catalog"] = None          # declared + discovered models
    health: Optional["HealthMonitor"] = None     # per-upstream health checks for /v1/upstreams
    limiters: Optional["LimiterRegistry"] = None  # per-upstream concurrency slots
    circuits: Optional["CircuitRegistry"] = None  # breakers and Retry-After cool-downs
    draining: bool = False                       # set on SIGTERM: /readyz answers 503
    drain: Optional["Drain"] = None              # the requests in flight, interrupted when shutdown_grace ends
    responses_store: Optional["ResponseStore"] = None  # stored responses (previous_response_id, GET)
