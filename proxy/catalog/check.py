"""`byok-proxy check`: verify each upstream before traffic depends on it.

Per upstream: fetch the model catalog (the same fetch the health check runs),
then send a 1-token probe (`max_tokens: 1`) to every model the config names
for it, streaming when the upstream streams. Each failure is classified by
proxy.catalog.diagnose into a problem and what to do about it. Exit 1 when any
upstream fails, rate limits included: a check that could not prove the
upstream works has not passed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from proxy.core import jsonutil
from proxy.config.model import Config, ConfigError, UpstreamConfig, load_config
from proxy.catalog.diagnose import Diagnosis, classify_exception, classify_http, diagnose_discovery, not_sse
from proxy.catalog.discovery import DiscoveryError, auth_headers, discover
from proxy.config.secrets import redact

PROBE_PROMPT = "Reply with OK."
MAX_PROBE_BYTES = 256 * 1024  # enough for a first event; a probe never reads a whole answer


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

def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
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
    reports = asyncio.run(check_upstreams(config, names))
    if getattr(args, "json", False):
        body = {"ok": all(r.status != "failed" for r in reports), "upstreams": [r.to_json() for r in reports]}
        out.write(redact(jsonutil.dumps_str(body)) + "\n")
    else:
        out.write(redact(render_table(reports)))
    return 1 if any(report.status == "failed" for report in reports) else 0


async def check_upstreams(config: Config, names: list[str]) -> list[UpstreamReport]:
    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(check_upstream(session, config, config.upstreams[name]) for name in names)))


async def check_upstream(session: aiohttp.ClientSession, config: Config, upstream: UpstreamConfig) -> UpstreamReport:
    report = UpstreamReport(upstream.name)
    if upstream.format == "mock" or upstream.base_url is None:
        report.catalog_url, report.latency_ms, report.models = "mock:", 0.0, len(upstream.models)
        report.probes = [ProbeResult(model, 0.0) for model in probe_models(config, upstream)]
        return report
    known: list[str] = []
    report.catalog_url = upstream.base_url + "/models"
    try:
        found = await discover(session, upstream, config.health.timeout, empty_retry_delays=())
    except DiscoveryError as exc:
        report.catalog_url = exc.url
        report.catalog_error = diagnose_discovery(exc, upstream, config.health.timeout)
    else:
        report.catalog_url, report.latency_ms, report.models = found.url, round(found.latency * 1000, 1), len(found.models)
        known = [model.id for model in found.models]
    if report.catalog_error is None or report.catalog_error.problem in ("wrong_base_url", "bad_request"):
        # A failure to connect would only repeat itself; anything else is worth a probe.
        for model in probe_models(config, upstream):
            report.probes.append(await probe(session, upstream, model, known))
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

async def probe(session: aiohttp.ClientSession, upstream: UpstreamConfig, model: str,
                known: list[str]) -> ProbeResult:
    result = await _probe_once(session, upstream, model, known, "max_tokens")
    if result.diagnosis is not None and "max_completion_tokens" in result.diagnosis.summary:
        # OpenAI's reasoning models take only max_completion_tokens; the cap stays 1.
        result = await _probe_once(session, upstream, model, known, "max_completion_tokens")
    return result


async def _probe_once(session: aiohttp.ClientSession, upstream: UpstreamConfig, model: str, known: list[str],
                      cap_field: str) -> ProbeResult:
    anthropic = upstream.format == "anthropic"
    url = f"{upstream.base_url}/{'messages' if anthropic else 'chat/completions'}"
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}], cap_field: 1}
    if upstream.streaming:
        body["stream"] = True
    headers = {**auth_headers(upstream), "Content-Type": "application/json"}
    limit = upstream.timeout.connect + upstream.timeout.first_byte
    started = time.monotonic()
    try:
        # allow_redirects=False: a redirect would carry x-api-key and configured headers to another host.
        async with session.post(url, data=jsonutil.dumps(body), headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=limit)) as response:
            diagnosis = await _read_answer(response, upstream, url, model, known)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        diagnosis = classify_exception(exc, url=url, upstream=upstream.name, timeout=limit)
    return ProbeResult(model, round((time.monotonic() - started) * 1000, 1), diagnosis)


async def _read_answer(response: aiohttp.ClientResponse, upstream: UpstreamConfig, url: str, model: str,
                       known: list[str]) -> Diagnosis | None:
    if response.status >= 400:
        return _classify(response.status, await response.content.read(MAX_PROBE_BYTES), response.headers,
                         url=url, upstream=upstream, model=model, known=known)
    content_type = response.headers.get("Content-Type", "")
    if upstream.streaming and "text/event-stream" not in content_type.lower():
        return not_sse(content_type, url)
    first = await _first_payload(response) if upstream.streaming else await response.content.read(MAX_PROBE_BYTES)
    try:
        payload = jsonutil.loads(first) if first else None
    except ValueError:
        payload = None
        if not upstream.streaming:  # a 200 that is not JSON: a web page or something in front of the API
            return classify_http(200, first, response.headers, url=url, base_url=upstream.base_url or "",
                                 upstream=upstream.name)
    if isinstance(payload, dict) and ("error" in payload or payload.get("type") == "error"):
        # an error sent with status 200: OpenRouter and Anthropic report some failures inside the stream
        return _classify(400, first, response.headers, url=url, upstream=upstream, model=model, known=known)
    return None


async def _first_payload(response: aiohttp.ClientResponse) -> bytes:
    """The data of the first SSE event that carries data (comments and keep-alives skipped)."""
    from proxy.streams.sse import SSEParser
    parser = SSEParser()
    read = 0
    async for chunk in response.content.iter_any():
        read += len(chunk)
        for event in parser.feed(chunk):
            if event.data:
                return event.data.encode()
        if read > MAX_PROBE_BYTES:
            break
    return b""


def _classify(status: int, body: bytes, headers: Any, *, url: str, upstream: UpstreamConfig, model: str,
              known: list[str]) -> Diagnosis:
    return classify_http(status, body, headers or {}, url=url, base_url=upstream.base_url or "",
                         upstream=upstream.name, model=model, known_models=known)


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
