"""`byok-proxy check`: verify each upstream before traffic depends on it.

Per upstream: fetch the model catalog (the same fetch the health check runs),
then send a 1-token probe to every model the config names for it, streaming
when the upstream streams. The probe is a request like any client's: it goes
through the whole chain `serve` runs (configured `headers:`, reasoning,
`options:`, the transport), targeted at exactly that upstream and model. The
chain is the caller's (proxy/cli.py builds it), since catalog/ sits below the
server. Each failure is classified by proxy.catalog.diagnose into a problem and
what to do about it. Exit 1 when any upstream fails, rate limits included: a
check that could not prove the upstream works has not passed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, Awaitable, Callable, TextIO

from proxy.catalog.diagnose import Diagnosis, classify_error, not_sse
from proxy.catalog.discovery import DiscoveryError, ListClient, discover
from proxy.config.formats import FORMATS
from proxy.config.model import Config, ConfigError, UpstreamConfig, load_config
from proxy.config.secrets import redact
from proxy.core import jsonutil
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse, Target
from proxy.wire.registry import adapter_for

# The whole chain, as `serve` runs it: a request in, its answer (or a proxy.core.errors exception) out.
Handler = Callable[[ProxyRequest], Awaitable[ProxyResponse]]
# Builds that chain for a config, for as long as the check runs.
ChainFactory = Callable[[Config], AsyncContextManager[Handler]]


@dataclass
class ProbeResult:
    model: str
    latency_ms: float | None = None
    diagnosis: Diagnosis | None = None

    @property
    def ok(self) -> bool:
        return self.diagnosis is None


@dataclass
class UpstreamReport:
    name: str
    catalog_url: str = ""
    latency_ms: float | None = None
    models: int | None = None
    catalog_error: Diagnosis | None = None
    probes: list[ProbeResult] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(not probe.ok for probe in self.probes):
            return "failed"
        if self.catalog_error is None:
            return "ok"
        # A missing model list is survivable when a probe proved the upstream serves requests.
        survivable = self.catalog_error.problem == "wrong_base_url" and any(p.ok for p in self.probes)
        return "warning" if survivable else "failed"

    def problems(self) -> list[tuple[str, Diagnosis]]:
        found = [("catalog", self.catalog_error)] if self.catalog_error else []
        return found + [(f"probe {p.model}", p.diagnosis) for p in self.probes if p.diagnosis]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "latency_ms": self.latency_ms, "models": self.models,
                "catalog": {"url": self.catalog_url, "ok": self.catalog_error is None,
                            "error": self.catalog_error.to_json() if self.catalog_error else None},
                "probes": [{"model": p.model, "ok": p.ok, "latency_ms": p.latency_ms,
                            "error": p.diagnosis.to_json() if p.diagnosis else None} for p in self.probes]}


# ---- entry point ------------------------------------------------------------------------------

def run(args: argparse.Namespace, chain: ChainFactory, out: TextIO | None = None) -> int:
    """`byok-proxy check -c config.yaml [--upstream NAME] [--json]`; returns the exit code."""
    out = out or sys.stdout
    path = getattr(args, "config", None) or os.environ.get("BYOK_CONFIG") or "config.yaml"
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return 2
    only = getattr(args, "upstream", None)
    if only is not None and only not in config.upstreams:
        print(f"no upstream named '{only}' (known: {', '.join(config.upstreams) or 'none'})", file=sys.stderr)
        return 2
    names = [only] if only else list(config.upstreams)
    reports = asyncio.run(_check_with(chain, config, names))
    if getattr(args, "json", False):
        body = {"ok": all(r.status != "failed" for r in reports), "upstreams": [r.to_json() for r in reports]}
        out.write(redact(jsonutil.dumps_str(body)) + "\n")
    else:
        out.write(redact(render_table(reports)))
    return 1 if any(report.status == "failed" for report in reports) else 0


async def _check_with(chain: ChainFactory, config: Config, names: list[str]) -> list[UpstreamReport]:
    async with chain(config) as send:
        return await check_upstreams(config, names, send)


async def check_upstreams(config: Config, names: list[str], send: Handler) -> list[UpstreamReport]:
    """Check each named upstream; probes are sent through `send`, the chain built for `config`."""
    client = ListClient()
    try:
        return list(await asyncio.gather(*(check_upstream(client, send, config, config.upstreams[name])
                                           for name in names)))
    finally:
        client.close()


async def check_upstream(client: ListClient, send: Handler, config: Config, upstream: UpstreamConfig) -> UpstreamReport:
    report = UpstreamReport(upstream.name)
    if not FORMATS[upstream.format].networked or upstream.base_url is None:
        report.catalog_url, report.latency_ms, report.models = "mock:", 0.0, len(upstream.models)
        report.probes = [ProbeResult(model, 0.0) for model in probe_models(config, upstream)]
        return report
    known: list[str] = []
    try:
        found = await discover(client, upstream, config.health.timeout, empty_retry_delays=())
    except DiscoveryError as exc:
        report.catalog_url = exc.url
        report.catalog_error = exc.diagnose(upstream, config.health.timeout)
    else:
        report.catalog_url, report.latency_ms, report.models = found.url, round(found.latency * 1000, 1), len(found.models)
        known = [model.id for model in found.models]
    if report.catalog_error is None or report.catalog_error.problem in ("wrong_base_url", "bad_request"):
        # A failure to connect would only repeat itself; anything else is worth a probe.
        for model in probe_models(config, upstream):
            report.probes.append(await probe(send, upstream, model, known))
    return report


def probe_models(config: Config, upstream: UpstreamConfig) -> list[str]:
    """Every model the config names for this upstream: declared ones and alias targets."""
    models = list(upstream.models)
    for alias in config.models.values():
        for target in alias.targets:
            name, _, model = target.partition("/")
            if name == upstream.name and model not in models:
                models.append(model)
    return models


# ---- the 1-token probe ----------------------------------------------------------------------------

async def probe(send: Handler, upstream: UpstreamConfig, model: str, known: list[str]) -> ProbeResult:
    result = await _probe_once(send, upstream, model, known, "max_tokens")
    if result.diagnosis is not None and "max_completion_tokens" in result.diagnosis.summary:
        # OpenAI's reasoning models take only max_completion_tokens; the cap stays 1.
        result = await _probe_once(send, upstream, model, known, "max_completion_tokens")
    return result


async def _probe_once(send: Handler, upstream: UpstreamConfig, model: str, known: list[str],
                      cap_field: str) -> ProbeResult:
    adapter = adapter_for(upstream.format)
    path, body = adapter.probe_body(model, cap_field)
    if upstream.streaming:
        body["stream"] = True
    url = f"{upstream.base_url}/{adapter.chat_path}"  # where the transport sends it (for the words only)
    limit = upstream.timeout.connect + upstream.timeout.first_byte
    target = Target(upstream, model, model_config=upstream.models.get(model))
    started = time.monotonic()
    request = ProxyRequest(request_id=f"check-{uuid.uuid4().hex[:16]}", method="POST", path=path, body=body,
                           content_type="application/json", client_model=target.label, targets=(target,),
                           target=target, stream=upstream.streaming, started_at=started, deadline=started + limit)
    where: dict[str, Any] = dict(url=url, base_url=upstream.base_url or "", upstream=upstream.name)
    try:
        response = await send(request)
    except ProxyError as exc:
        diagnosis = classify_error(exc, model=model, known_models=known, timeout=limit,
                                   streamed=_streamed(request), **where)
    else:
        await response.aclose()  # the guard has read up to the answer's first content: enough
        if upstream.streaming and not _streamed(request):
            # The upstream answered JSON to a stream request (the chain replays it as a stream).
            diagnosis = not_sse("application/json", url)
        else:
            diagnosis = None
    finally:
        request.trace.finish()
    return ProbeResult(model, round((time.monotonic() - started) * 1000, 1), diagnosis)


def _streamed(request: ProxyRequest) -> bool:
    """Whether the upstream answered with an event stream: the transport registers the release of
    each upstream stream in the trace's cleanups (proxy/core/exchange.py RequestTrace)."""
    return bool(request.trace.cleanups)


# ---- output ------------------------------------------------------------------------------------

def render_table(reports: list[UpstreamReport]) -> str:
    rows = [("UPSTREAM", "STATUS", "LATENCY", "MODELS", "PROBES", "PROBLEM")]
    for report in reports:
        problems = report.problems()
        probes_ok = sum(1 for p in report.probes if p.ok)
        rows.append((report.name, report.status,
                     f"{report.latency_ms:.0f} ms" if report.latency_ms is not None else "-",
                     str(report.models) if report.models is not None else "-",
                     f"{probes_ok}/{len(report.probes)}" if report.probes else "-",
                     problems[0][1].problem if problems else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    for report in reports:
        for where, diagnosis in report.problems():
            lines += ["", f"{report.name} ({where}): {diagnosis.summary}", f"  what to do: {diagnosis.advice}"]
    return "\n".join(lines) + "\n"
