"""The metrics module on its own: names, labels, buckets and label bounds.

End-to-end behaviour (traffic through the real server, scraped by a real
Prometheus) is pinned in test_prometheus_scrape.py and test_metrics_http.py.
"""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.catalog.health import HealthMonitor
from proxy.catalog.models import Catalog
from proxy.config.model import parse_config
from proxy.core.errors import RateLimited
from proxy.core.exchange import Attempt, ProxyRequest, RequestTrace
from proxy.observability.metrics import LATENCY_BUCKETS, Metrics
from proxy.resilience.circuit import CircuitRegistry
from proxy.resilience.registry import LimiterRegistry

pytestmark = pytest.mark.timeout(30)

CONFIG = """
upstreams:
  fast:
    format: mock
    models: {small: {}, big: {}}
  slow:
    format: mock
models:
  main: {targets: [fast/small, slow/huge-model]}
"""

EXPECTED = {
    "byok_requests": ("counter", {"api", "upstream", "model", "status"}),
    "byok_request_duration_seconds": ("histogram", {"upstream", "model"}),
    "byok_time_to_first_token_seconds": ("histogram", {"upstream", "model"}),
    "byok_tokens": ("counter", {"upstream", "model", "direction"}),
    "byok_inflight_requests": ("gauge", {"upstream"}),
    "byok_queued_requests": ("gauge", {"upstream"}),
    "byok_queue_wait_seconds": ("histogram", {"upstream"}),
    "byok_fallbacks": ("counter", {"from", "to", "reason"}),
    "byok_rejected": ("counter", {"upstream", "reason"}),
    "byok_upstream_health": ("gauge", {"upstream", "state"}),
    "byok_circuit_open": ("gauge", {"upstream"}),
    "byok_config_reloads": ("counter", {"result"}),
    "byok_proxy_overhead_seconds": ("histogram", set()),
}


def families(metrics: Metrics) -> dict:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def nonzero(metrics: Metrics, sample_name: str) -> dict:
    """The samples that traffic moved (declared models' series also exist at zero)."""
    return {labels: value for labels, value in samples(metrics, sample_name).items() if value}


def samples(metrics: Metrics, sample_name: str) -> dict:
    found = {}
    for family in families(metrics).values():
        for sample in family.samples:
            if sample.name == sample_name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def metrics() -> Metrics:
    instance = Metrics()
    instance.configure(parse_config(CONFIG))
    return instance


def test_every_documented_metric_is_exposed_with_its_type_and_labels(metrics):
    metrics.observe_request(upstream="fast", model="small", status=200, duration=1.5, ttft=0.3,
                            tokens_in=10, tokens_out=20)
    metrics.observe_queue_wait("fast", 0.2)
    limiters, circuits = LimiterRegistry(), CircuitRegistry()
    limiters.configure(parse_config(CONFIG))
    metrics.attach_state(limiters=lambda: limiters, circuits=lambda: circuits)
    metrics.observe_fallback("fast", "slow", "429")
    metrics.observe_rejected("fast", "queue_timeout")
    metrics.observe_overhead(0.001)
    exposed = families(metrics)
    for name, (kind, labels) in EXPECTED.items():
        assert name in exposed, f"{name} missing from /metrics"
        family = exposed[name]
        assert family.type == kind, name
        if name == "byok_upstream_health":
            continue  # no state before the first health check; its labels are pinned below
        sample_labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        assert sample_labels == labels, name


def test_a_request_counts_once_with_its_duration_ttft_and_tokens(metrics):
    metrics.observe_request(upstream="fast", model="small", status=200, duration=2.0, ttft=0.5,
                            tokens_in=7, tokens_out=11)
    key = (("api", "chat"), ("model", "small"), ("status", "200"), ("upstream", "fast"))
    assert nonzero(metrics, "byok_requests_total") == {key: 1.0}
    tokens = samples(metrics, "byok_tokens_total")
    assert tokens[(("direction", "in"), ("model", "small"), ("upstream", "fast"))] == 7
    assert tokens[(("direction", "out"), ("model", "small"), ("upstream", "fast"))] == 11
    assert nonzero(metrics, "byok_time_to_first_token_seconds_sum") == {(("model", "small"), ("upstream", "fast")): 0.5}
    assert nonzero(metrics, "byok_request_duration_seconds_count") == {(("model", "small"), ("upstream", "fast")): 1}


def test_latency_buckets_reach_minutes(metrics):
    assert max(LATENCY_BUCKETS) >= 300
    metrics.observe_request(upstream="fast", model="small", status=200, duration=200.0, ttft=100.0)
    buckets = samples(metrics, "byok_time_to_first_token_seconds_bucket")
    by_bound = {dict(labels)["le"]: value for labels, value in buckets.items()
                if dict(labels)["model"] == "small"}
    assert by_bound["60.0"] == 0 and by_bound["120.0"] == 1 and by_bound["+Inf"] == 1


def test_model_labels_are_bounded_to_configured_and_discovered_models(metrics):
    assert metrics.model_label("fast", "small") == "small"           # declared under the upstream
    assert metrics.model_label("slow", "huge-model") == "huge-model"  # an alias target
    assert metrics.model_label("slow", "small") == "other"            # declared elsewhere, not here
    assert metrics.model_label("fast", "made-up-123") == "other"
    assert metrics.model_label(None, "small") == "other"
    metrics.models.discovered("slow", ["listed-by-catalog"])
    assert metrics.model_label("slow", "listed-by-catalog") == "listed-by-catalog"
    for index in range(50):
        metrics.observe_request(upstream="fast", model=f"random-{index}", status=200, duration=0.1)
    assert nonzero(metrics, "byok_requests_total") == {
        (("api", "chat"), ("model", "other"), ("status", "200"), ("upstream", "fast")): 50.0}


def test_declared_models_have_series_at_zero_before_any_traffic(metrics):
    """So the first request is an increase that rate() and histogram_quantile() can see."""
    requests = samples(metrics, "byok_requests_total")
    assert requests == {(("api", "chat"), ("model", "big"), ("status", "200"), ("upstream", "fast")): 0.0,
                        (("api", "chat"), ("model", "small"), ("status", "200"), ("upstream", "fast")): 0.0,
                        (("api", "chat"), ("model", "huge-model"), ("status", "200"), ("upstream", "slow")): 0.0}
    assert samples(metrics, "byok_time_to_first_token_seconds_count")[(("model", "small"), ("upstream", "fast"))] == 0


def test_a_reload_forgets_models_of_removed_upstreams(metrics):
    metrics.models.discovered("slow", ["listed-by-catalog"])
    metrics.configure(parse_config("upstreams: {fast: {format: mock, models: {small: {}}}}"))
    assert metrics.model_label("slow", "listed-by-catalog") == "other"
    assert metrics.model_label("fast", "big") == "other"
    assert metrics.model_label("fast", "small") == "small"


def test_requests_refused_before_routing_are_labelled_none_and_other(metrics):
    metrics.observe_request(upstream=None, model="nope", status=404, duration=0.001)
    assert nonzero(metrics, "byok_requests_total") == {
        (("api", "chat"), ("model", "other"), ("status", "404"), ("upstream", "none")): 1.0}


async def test_state_gauges_are_read_from_live_components_at_scrape_time(metrics, openai_upstream):
    config = parse_config(f"""
upstreams:
  fast: {{base_url: "{openai_upstream.url}/v1", max_concurrent_requests: 1, circuit: {{failures: 1}}}}
  slow: {{base_url: "http://127.0.0.1:9/v1", circuit: {{failures: 1}}}}
""")
    metrics.configure(config)
    limiters, circuits = LimiterRegistry(), CircuitRegistry()
    limiters.configure(config)
    circuits.configure(config)
    monitor = HealthMonitor(config, Catalog(config))
    metrics.attach_state(limiters=lambda: limiters, health=lambda: monitor, circuits=lambda: circuits)
    assert samples(metrics, "byok_upstream_health") == {}  # nothing known before the first check
    slot = await limiters.get("fast").acquire(wait=False, timeout=None)
    queued = asyncio.ensure_future(limiters.get("fast").acquire(wait=True, timeout=5))
    await asyncio.sleep(0.05)
    circuits.get("slow").failed()
    await monitor.check("fast")
    await monitor.check("slow")
    try:
        assert samples(metrics, "byok_inflight_requests") == {(("upstream", "fast"),): 1.0,
                                                              (("upstream", "slow"),): 0.0}
        assert samples(metrics, "byok_queued_requests")[(("upstream", "fast"),)] == 1.0
        health = samples(metrics, "byok_upstream_health")
        assert health[(("state", "ok"), ("upstream", "fast"))] == 1.0
        assert health[(("state", "unreachable"), ("upstream", "slow"))] == 1.0
        assert sum(health.values()) == 2.0 and len(health) == 6  # one state of three per upstream
        assert samples(metrics, "byok_circuit_open") == {(("upstream", "fast"),): 0.0,
                                                         (("upstream", "slow"),): 1.0}
    finally:
        slot.release()
        (await queued).release()
        await monitor._catalog.close()
    assert samples(metrics, "byok_inflight_requests")[(("upstream", "fast"),)] == 0.0


def test_state_gauges_tolerate_missing_components():
    metrics = Metrics()
    metrics.configure(parse_config(CONFIG))
    metrics.attach_state(limiters=lambda: None, health=None)
    assert samples(metrics, "byok_inflight_requests") == {}
    assert "byok_upstream_health" in families(metrics)


def test_reload_results_exist_at_zero_and_count(metrics):
    assert samples(metrics, "byok_config_reloads_total") == {(("result", "success"),): 0.0,
                                                             (("result", "failure"),): 0.0}
    metrics.observe_reload(True)
    metrics.observe_reload(False)
    metrics.observe_reload(False)
    assert samples(metrics, "byok_config_reloads_total") == {(("result", "success"),): 1.0,
                                                             (("result", "failure"),): 2.0}


def test_each_instance_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.observe_overhead(0.5)
    assert samples(second, "byok_proxy_overhead_seconds_count") == {(): 0.0}
    assert samples(first, "byok_proxy_overhead_seconds_count") == {(): 1.0}


def test_a_finished_request_counts_its_fallbacks_and_busy_refusals_every_time(metrics):
    """Children are looked up once per label set and reused: the second request counts too."""
    def finished(attempts, error=None):
        trace = RequestTrace(attempts=[Attempt(upstream, model, reason=reason) for upstream, model, reason in attempts])
        metrics.observe_finished(ProxyRequest(request_id="r", method="POST", path="chat/completions", started_at=1.0,
                                              trace=trace), 200 if error is None else error.status, error, 2.0)

    for _ in range(2):
        finished([("fast", "small", "500"), ("slow", "huge-model", "busy")], RateLimited("queued too long", retry_after=1))
        finished([("fast", "small", "busy"), ("slow", "huge-model", None)])
    assert nonzero(metrics, "byok_fallbacks_total") == {
        (("from", "fast"), ("reason", "500"), ("to", "slow")): 2.0,
        (("from", "fast"), ("reason", "busy"), ("to", "slow")): 2.0}
    assert nonzero(metrics, "byok_rejected_total") == {
        (("reason", "queue_timeout"), ("upstream", "slow")): 2.0,
        (("reason", "concurrency_limit"), ("upstream", "fast")): 2.0}
    assert nonzero(metrics, "byok_requests_total") == {
        (("api", "chat"), ("model", "huge-model"), ("status", "429"), ("upstream", "slow")): 2.0,
        (("api", "chat"), ("model", "huge-model"), ("status", "200"), ("upstream", "slow")): 2.0}


def test_label_lookups_are_remembered_by_label_values_not_by_what_a_client_asked_for(metrics):
    """A client can name any model under an upstream (`fast/anything`): the lookups kept per
    request must not grow with those names, only with the bounded labels they map to."""
    for index in range(100):
        metrics.observe_request(upstream="fast", model=f"client-chose-{index}", status=200, duration=0.1)
    assert len(metrics._request_series) == 1
