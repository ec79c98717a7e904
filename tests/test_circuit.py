"""Circuit breaking: after N consecutive failures an upstream is skipped for a cooldown,
then exactly one probe decides; the state is visible at /v1/upstreams."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from proxy.config.model import CircuitSettings
from proxy.core.errors import UpstreamAuthError, UpstreamHTTPError, UpstreamProtocolError, UpstreamTimeout
from proxy.resilience.circuit import CircuitBreaker, CircuitRegistry, is_server_failure
from tests import faults
from tests.conftest import client_for
from tests.faults import ChatUpstream, backup, main  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "hello"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(CircuitSettings(failures=failures, cooldown=cooldown), clock), clock


# ---- the breaker ---------------------------------------------------------------------------

def test_opens_after_consecutive_failures_only():
    circuit, _ = breaker(failures=3)
    circuit.failed()
    circuit.failed()
    circuit.succeeded()  # a success in between resets the count
    circuit.failed()
    circuit.failed()
    assert circuit.state() == "closed" and circuit.allow()
    circuit.failed()
    assert circuit.state() == "open" and not circuit.allow()


def test_after_the_cooldown_exactly_one_probe_goes_through():
    circuit, clock = breaker(failures=1, cooldown=10)
    circuit.failed()
    clock.now += 9.9
    assert not circuit.allow()
    clock.now += 0.2
    assert circuit.state() == "half_open"
    assert circuit.allow(), "the probe"
    assert not circuit.allow() and not circuit.allow(), "everyone else waits for the probe's verdict"
    circuit.succeeded()
    assert circuit.state() == "closed" and circuit.allow()


def test_a_failed_probe_opens_the_circuit_for_another_cooldown():
    circuit, clock = breaker(failures=2, cooldown=10)
    circuit.failed()
    circuit.failed()
    clock.now += 10
    assert circuit.allow()
    circuit.failed()
    assert circuit.state() == "open"
    clock.now += 9
    assert not circuit.allow()
    clock.now += 1
    assert circuit.allow()


def test_an_abandoned_probe_frees_the_probe_place():
    circuit, clock = breaker(failures=1, cooldown=10)
    circuit.failed()
    clock.now += 10
    assert circuit.allow()
    circuit.abandoned()  # the client went away: no verdict
    assert circuit.allow(), "the next request may probe"


def test_a_probe_that_never_reports_is_presumed_lost_after_a_cooldown():
    circuit, clock = breaker(failures=1, cooldown=10)
    circuit.failed()
    clock.now += 10
    assert circuit.allow()
    clock.now += 5
    assert not circuit.allow()
    clock.now += 5
    assert circuit.allow()


def test_retry_after_cools_without_touching_the_circuit():
    circuit, clock = breaker()
    circuit.cool_down(30)
    assert circuit.cooling_for() == 30 and circuit.state() == "closed"
    clock.now += 31
    assert circuit.cooling_for() == 0


def test_only_server_side_failures_count():
    assert is_server_failure(UpstreamHTTPError("u", 500, "boom"))
    assert is_server_failure(UpstreamHTTPError("u", 503, "busy"))
    assert is_server_failure(UpstreamTimeout("u", "slow"))
    assert is_server_failure(UpstreamProtocolError("u", "reset"))
    assert not is_server_failure(UpstreamHTTPError("u", 429, "slow down"))
    assert not is_server_failure(UpstreamHTTPError("u", 400, "your fault"))
    assert not is_server_failure(UpstreamAuthError("u", "bad key"))


def test_registry_reports_closed_for_upstreams_it_never_saw():
    registry = CircuitRegistry()
    assert registry.state("nobody") == "closed" and not registry.is_open("nobody")


# ---- through the server --------------------------------------------------------------------

def config(main_url: str, backup_url: str, cooldown: float) -> str:
    return f"""
    upstreams:
      main:
        base_url: {main_url}/v1
        discover_models: false
        circuit: {{failures: 2, cooldown: {cooldown}}}
      backup: {{base_url: {backup_url}/v1, discover_models: false}}
    models:
      smart: {{targets: [main/m1, backup/m2]}}
    """


async def circuit_state(proxy, name: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.base_url}/upstreams") as response:
            payload = await response.json()
    return next(entry["circuit"] for entry in payload["data"] if entry["name"] == name)


async def ask(proxy) -> tuple[str, str, str | None]:
    raw = await client_for(proxy).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    return raw.parse().choices[0].message.content, raw.headers["x-byok-upstream"], raw.headers.get("x-byok-fallbacks")


async def test_open_circuit_skips_the_upstream_and_shows_at_v1_upstreams(proxy_factory, main, backup):
    main.override = faults.status(500)
    proxy = await proxy_factory(config(main.url, backup.url, cooldown=60))
    assert await circuit_state(proxy, "main") == "closed"
    for _ in range(2):
        assert (await ask(proxy))[:2] == ("answer from backup", "backup")
    assert await circuit_state(proxy, "main") == "open"
    answer, served, tried = await ask(proxy)
    assert (answer, served, tried) == ("answer from backup", "backup", "main/m1:circuit_open")
    assert len(main.requests) == 2, "an open circuit keeps requests away from the upstream"


async def test_after_the_cooldown_one_probe_decides(proxy_factory, main, backup):
    main.override = faults.status(502)
    proxy = await proxy_factory(config(main.url, backup.url, cooldown=0.5))
    for _ in range(2):
        await ask(proxy)
    assert await circuit_state(proxy, "main") == "open"
    await asyncio.sleep(0.6)
    assert await circuit_state(proxy, "main") == "half_open"
    main.override = None
    main.delay_before_headers = 2.0  # the probe takes a while (long enough on a loaded machine for all four
    # requests to arrive while it runs); others must not pile onto main meanwhile
    results = await asyncio.gather(*(ask(proxy) for _ in range(4)))
    assert sorted(served for _, served, _ in results) == ["backup", "backup", "backup", "main"]
    assert await circuit_state(proxy, "main") == "closed"
    assert len(main.requests) == 3
