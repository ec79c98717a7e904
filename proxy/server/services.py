"""The standard set of long-lived services (proxy/core/services.py), wired together once per process."""
from __future__ import annotations

from proxy.catalog.health import HealthMonitor
from proxy.catalog.models import Catalog
from proxy.config.model import Config
from proxy.core.services import Services
from proxy.observability.metrics import Metrics
from proxy.resilience.circuit import CircuitRegistry
from proxy.resilience.registry import LimiterRegistry
from proxy.server.lifecycle import Drain
from proxy.state.store import create_store


def create_services(config: Config) -> Services:
    services = Services(metrics=Metrics(), catalog=Catalog(config), limiters=LimiterRegistry(),
                        circuits=CircuitRegistry(), drain=Drain(),
                        responses_store=create_store(config.responses.store))
    services.metrics.configure(config)
    _wire_health(services, config)
    services.limiters.add_wait_observer(services.metrics.observe_queue_wait)  # queue waits reach the metrics
    return services


def _wire_health(services: Services, config: Config) -> None:
    """Health checks (the catalog fetch, timed) and what metrics read from them."""
    services.health = HealthMonitor(config, services.catalog, services)
    services.catalog.listeners.append(services.metrics.models.discovered)
    services.metrics.attach_state(limiters=lambda: services.limiters, health=lambda: services.health,
                                  circuits=lambda: services.circuits)
