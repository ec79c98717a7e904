"""`python -m bench`: every measurement, side by side, repeated, medians reported.

Layout on the machine: this process (the load generator), wrk and the bench upstream
share the first core; each proxy is pinned alone to the second. Systems run one after
another, each in a fresh process; memory is measured in yet another fresh process so
earlier load does not inflate the idle figure.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import bodies, loadgen, procs, report, stream_paths, translate, wrk
from bench.httpclient import build_request
from bench.loadgen import Endpoint
from bench.systems import REPO, Byok, System, machine_info, make_systems

RESULTS = REPO / "bench" / "results"


@dataclass
class Settings:
    repeats: int = 3
    throughput_seconds: float = 10.0
    throughput_concurrency: int = 50
    rates: tuple[int, ...] = (50, 200, 1000)
    rate_seconds: float = 10.0
    stream_model: str = "s20x20"            # 20 chunks, 20 ms apart
    streams_c1: int = 25
    streams_c100_workers: int = 100
    streams_c100_each: int = 3
    burst_model: str = "s2000x0"            # as fast as the upstream can write
    burst_concurrency: int = 4
    burst_streams_each: int = 3
    translate_seconds: float = 3.0
    stream_path_seconds: float = 2.0        # per stream path, in process (bench/stream_paths.py)
    stream_path_rounds: int = 2
    api_seconds: float = 5.0                # per client API and upstream format, non-streamed
    api_concurrency: int = 16
    hold_counts: tuple[int, ...] = (1000, 10000)
    hold_connect_rate: float = 1000.0
    hold_chunk_interval_ms: int = 2000
    workers_scaling: tuple[int, ...] = (1, 2)
    # Big bodies, sent one at a time: how many of each size (fewer of the larger), and a time cap.
    body_counts: tuple[tuple[str, int], ...] = (("16KiB", 200), ("256KiB", 100), ("1MiB", 50), ("4MiB", 20))
    body_seconds: float = 20.0
    loadgen_cpus: str = "0"
    proxy_cpus: str = "1"

    @classmethod
    def quick(cls) -> "Settings":
        return cls(repeats=1, throughput_seconds=1.0, throughput_concurrency=10, rates=(50, 200), rate_seconds=1.0,
                   stream_model="s5x5", streams_c1=3, streams_c100_workers=10, streams_c100_each=1,
                   burst_model="s200x0", burst_concurrency=2, burst_streams_each=1, translate_seconds=0.3,
                   stream_path_seconds=0.1, stream_path_rounds=1,
                   api_seconds=0.5, api_concurrency=4,
                   hold_counts=(20, 100), hold_connect_rate=500.0, hold_chunk_interval_ms=500,
                   body_counts=(("16KiB", 4), ("256KiB", 3), ("1MiB", 2), ("4MiB", 2)), body_seconds=5.0)


@dataclass
class Context:
    settings: Settings
    workdir: Path
    upstream: procs.Server
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- phases -------------------------------------------------------------------------------

async def phase_throughput(system: System, ctx: Context) -> dict:
    """wrk at fixed concurrency; also the server's own CPU time per request, a figure that
    other load on the machine hardly disturbs (for `direct`, the upstream's)."""
    endpoint = Endpoint("127.0.0.1", system.port)
    s = ctx.settings
    server = system.server or ctx.upstream
    cpu_before = server.cpu_seconds()
    result = await wrk.throughput(endpoint, system.model("bench"), s.throughput_concurrency, s.throughput_seconds,
                                  ctx.settings.loadgen_cpus)
    requests = result.get("requests") or result.get("ok") or 0
    if requests:
        result["server_cpu_us_per_request"] = (server.cpu_seconds() - cpu_before) / requests * 1e6
    return result


async def phase_rates(system: System, ctx: Context) -> dict:
    endpoint = Endpoint("127.0.0.1", system.port)
    results = {}
    for rate in ctx.settings.rates:
        results[str(rate)] = await loadgen.open_loop(endpoint, system.model("bench"), rate, ctx.settings.rate_seconds)
        gc.collect()
    return results


async def phase_streams(system: System, ctx: Context) -> dict:
    endpoint = Endpoint("127.0.0.1", system.port)
    s = ctx.settings
    model = system.model(s.stream_model)
    c1 = await loadgen.stream_latency(endpoint, model, 1, s.streams_c1)
    c100 = await loadgen.stream_latency(endpoint, model, s.streams_c100_workers, s.streams_c100_each)
    return {"c1": c1, "c100": c100}


async def phase_burst(system: System, ctx: Context) -> dict:
    """Chunks per second through the proxy when the upstream writes as fast as it can: chat
    passthrough and the Anthropic-translated chat stream, then for a proxy that speaks them the
    Responses and Messages APIs translated onto each upstream format (Messages to Anthropic is
    a passthrough)."""
    s = ctx.settings
    results = {}
    chat = Endpoint("127.0.0.1", system.port)
    server = system.server or ctx.upstream

    async def burst(endpoint: Endpoint, model: str) -> dict:
        # The server's CPU per chunk too: once a proxy keeps up with the upstream, chunks/s measures
        # the load generator's core, while CPU per chunk still measures the proxy.
        cpu_before = server.cpu_seconds()
        result = await loadgen.stream_throughput(endpoint, model, s.burst_concurrency, s.burst_streams_each)
        if result.get("chunks"):
            result["server_cpu_us_per_chunk"] = (server.cpu_seconds() - cpu_before) / result["chunks"] * 1e6
        return result

    results["openai"] = await burst(chat, system.model(s.burst_model))
    if system.native:
        results["anthropic"] = await burst(Endpoint("127.0.0.1", system.port, loadgen.MESSAGES_PATH, shaped=False),
                                           s.burst_model)
        return results
    anthropic_model = system.anthropic_model(s.burst_model)
    if anthropic_model is None:
        return results
    results["anthropic"] = await burst(chat, anthropic_model)
    if system.speaks_every_api:
        for api, path in (("responses", loadgen.RESPONSES_PATH), ("messages", loadgen.MESSAGES_PATH)):
            endpoint = Endpoint("127.0.0.1", system.port, path)
            results[f"{api}_chat"] = await burst(endpoint, system.model(s.burst_model))
            results[f"{api}_anthropic"] = await burst(endpoint, anthropic_model)
    return results


# (label, client API path, upstream: which model prefix, Responses store on)
API_PATHS = (
    ("chat -> OpenAI-format (passthrough)", loadgen.CHAT_PATH, "openai", False),
    ("Responses -> Responses (passthrough)", loadgen.RESPONSES_PATH, "responses", False),
    ("Messages -> Anthropic (passthrough)", loadgen.MESSAGES_PATH, "anthropic", False),
    ("chat -> Anthropic", loadgen.CHAT_PATH, "anthropic", False),
    ("chat -> Responses", loadgen.CHAT_PATH, "responses", False),
    ("Responses -> chat", loadgen.RESPONSES_PATH, "openai", False),
    ("Responses -> chat, stored (memory)", loadgen.RESPONSES_PATH, "openai", True),
    ("Responses -> Anthropic", loadgen.RESPONSES_PATH, "anthropic", False),
    ("Messages -> chat", loadgen.MESSAGES_PATH, "openai", False),
)


async def phase_apis(system: System, ctx: Context) -> dict:
    """Each client API onto each upstream format, non-streamed, closed loop: requests per second
    and the proxy's CPU per request, so passthrough and translation compare in one run."""
    if not system.speaks_every_api:
        return {}
    s = ctx.settings
    models = {"openai": system.model("bench"), "anthropic": system.anthropic_model("bench"),
              "responses": system.responses_model("bench")}
    results = {}
    for label, path, upstream, stored in API_PATHS:
        cpu_before = system.server.cpu_seconds()
        result = await loadgen.closed_loop(Endpoint("127.0.0.1", system.port, path, stored=stored),
                                           models[upstream], s.api_concurrency, s.api_seconds)
        if result["ok"]:
            result["server_cpu_us_per_request"] = (system.server.cpu_seconds() - cpu_before) / result["ok"] * 1e6
        results[label] = result
        gc.collect()
    return results


async def phase_bodies(system: System, ctx: Context) -> dict:
    """Coding-agent conversations of 16 KiB to 4 MiB, non-streamed, sent one at a time on each
    passthrough path: latency, and the server's CPU time per request (for direct, the upstream's)."""
    server = system.server or ctx.upstream
    results: dict = {}
    for path_name, path, model, encode in _body_paths(system):
        for size_name, count in ctx.settings.body_counts:
            body = encode(model, bodies.SIZES[size_name])
            headers = {"anthropic-version": "2023-06-01"} if path == loadgen.MESSAGES_PATH else None
            payload = build_request("127.0.0.1", system.port, path, body, headers)
            endpoint = Endpoint("127.0.0.1", system.port, path)
            await loadgen.closed_loop(endpoint, model, 1, 10.0, 2, payload)  # warm: connection, caches
            cpu_before = server.cpu_seconds()
            result = await loadgen.closed_loop(endpoint, model, 1, ctx.settings.body_seconds, count, payload)
            if result["ok"]:
                result["server_cpu_ms_per_request"] = (server.cpu_seconds() - cpu_before) / result["ok"] * 1e3
            result["body_bytes"] = len(body)
            results[f"{path_name}/{size_name}"] = result
            gc.collect()
    return results


def _body_paths(system: System) -> list[tuple]:
    """(name, path, model, body encoder) for each passthrough path this system serves."""
    paths = [("chat", loadgen.CHAT_PATH, system.model("bench"), bodies.chat_body)]
    native_paths = (("messages", loadgen.MESSAGES_PATH, system.anthropic_model("bench"), bodies.messages_body),
                    ("responses", loadgen.RESPONSES_PATH, system.responses_model("bench"), bodies.responses_body))
    for name, path, model, encode in native_paths:
        if system.native:
            paths.append((name, path, "bench", encode))
        elif model is not None:
            paths.append((name, path, model, encode))
    return paths


async def phase_memory(make: "callable", ctx: Context) -> dict:
    """Fresh process: idle RSS, then for each count: RSS holding that many slow streams, and after."""
    s = ctx.settings
    limit = procs.raise_open_files_limit()
    results: dict = {"open_files_limit": limit, "levels": {}}
    system: System = make()
    if system.native:
        return {"skipped": "only proxies with a memory target are measured"}
    await system.start(ctx.upstream.port, ctx.workdir, s.proxy_cpus, _models(ctx))
    try:
        results["idle_mb"] = await procs.settle_rss(system.server, 2.0)
        for count in s.hold_counts:
            results["levels"][str(count)] = await _hold_level(system, make, count, ctx, limit)
            system = results["levels"][str(count)].pop("_system")
    finally:
        system.stop()
    return results


async def _hold_level(system: System, make, count: int, ctx: Context, limit: int) -> dict:
    s = ctx.settings
    note = None
    # A proxied stream holds two sockets (client side and upstream side); one process
    # cannot hold more streams than half its open-files limit.
    needed_per_process = 2 * count + 256
    if isinstance(system, Byok) and needed_per_process > limit and system.workers == 1:
        workers = math.ceil(needed_per_process / (limit - 256))
        system.stop()
        system = Byok(workers=workers, name=f"byok-{workers}w", logging_requests=system.logging_requests)
        await system.start(ctx.upstream.port, ctx.workdir, s.proxy_cpus, _models(ctx))
        note = (f"{count} streams need {needed_per_process} open files but one process may have {limit} here; "
                f"ran {workers} worker processes pinned to the same single core")
    elif needed_per_process > limit:
        note = f"{count} streams need {needed_per_process} open files; one process may have {limit} here"
    before = await procs.settle_rss(system.server, 1.0)
    ramp = count / s.hold_connect_rate
    interval = s.hold_chunk_interval_ms / 1000
    chunks = _hold_chunks(count, s)
    model = system.model(f"s{chunks}x{s.hold_chunk_interval_ms}")
    peak = {"rss_mb": 0.0}

    async def on_plateau(state: dict) -> None:
        samples = []
        for _ in range(4):
            samples.append(system.server.rss_mb())
            await asyncio.sleep(0.25)
        peak["rss_mb"] = max(samples)
        peak["state"] = state

    held = await loadgen.hold_streams(Endpoint("127.0.0.1", system.port), model, count, s.hold_connect_rate,
                                      on_plateau, settle=5.0, timeout=chunks * interval + ramp + 60)
    gc.collect()
    after = await procs.settle_rss(system.server, 3.0)
    level = {"rss_before_mb": before, "rss_holding_mb": peak["rss_mb"], "rss_after_mb": after,
             "workers": getattr(system, "workers", 1), **held, "_system": system}
    if note:
        level["note"] = note
    return level


def _models(ctx: Context) -> list[str]:
    """Every model name LiteLLM must know (byok routes `bench/<anything>`)."""
    s = ctx.settings
    names = {"bench", s.stream_model, s.burst_model}
    for count in s.hold_counts:
        names.add(f"s{_hold_chunks(count, s)}x{s.hold_chunk_interval_ms}")
    return sorted(names)


def _hold_chunks(count: int, s) -> int:
    """Chunks per held stream: long enough that the first stream is still open when the last
    one starts, even when this machine opens them at half the asked rate (a slow ramp once
    cut a 10,000 plateau to 9,248)."""
    ramp = count / s.hold_connect_rate
    return max(2, math.ceil((2 * ramp + 5 + 6) / (s.hold_chunk_interval_ms / 1000)))


async def warm_up(system: System) -> None:
    await loadgen.closed_loop(Endpoint("127.0.0.1", system.port), system.model("bench"), 8, 1.0, 5000)


async def bench_system(system: System, ctx: Context, phases: set[str]) -> dict:
    s = ctx.settings
    log(f"{system.name}: starting")
    await system.start(ctx.upstream.port, ctx.workdir, None if system.name == "direct" else s.proxy_cpus, _models(ctx))
    runs: dict = {"label": system.label, "throughput": [], "rates": [], "streams": [], "burst": [], "apis": [],
                  "bodies": []}
    meter = procs.CpuMeter()
    try:
        if system.server is not None:
            runs["idle_rss_mb_at_start"] = await procs.settle_rss(system.server, 1.0)
        await warm_up(system)
        for repeat in range(s.repeats):
            log(f"{system.name}: repeat {repeat + 1}/{s.repeats}")
            if "throughput" in phases:
                runs["throughput"].append(await phase_throughput(system, ctx))
            if "rates" in phases:
                runs["rates"].append(await phase_rates(system, ctx))
            if "streams" in phases:
                runs["streams"].append(await phase_streams(system, ctx))
            if "burst" in phases:
                runs["burst"].append(await phase_burst(system, ctx))
            if "apis" in phases:
                runs["apis"].append(await phase_apis(system, ctx))
            if "bodies" in phases:
                runs["bodies"].append(await phase_bodies(system, ctx))
            gc.collect()
        if system.server is not None:
            runs["rss_after_load_mb"] = system.server.rss_mb()
        runs["label"] = system.label
        runs["cpu"] = meter.read()
    finally:
        system.stop()
    if "memory" in phases and not system.native:
        log(f"{system.name}: memory")
        runs["memory"] = await phase_memory(lambda: make_systems([system.name], ctx_logging(ctx))[0], ctx)
    return runs


def ctx_logging(ctx: Context) -> bool:
    return not any(note.startswith("proxy request logging off") for note in ctx.notes)


async def bench_workers(ctx: Context) -> dict:
    """byok-proxy with 1 and with 2 worker processes, free to use every core (wrk and the
    upstream stay on theirs): throughput at c50."""
    s = ctx.settings
    every_core = f"0-{(os.cpu_count() or 1) - 1}"  # explicit: children would inherit this process's pinning
    results = {}
    for count in s.workers_scaling:
        system = Byok(workers=count, name=f"byok-{count}w", logging_requests=ctx_logging(ctx))
        log(f"workers: {count}")
        await system.start(ctx.upstream.port, ctx.workdir, every_core, _models(ctx))
        try:
            await warm_up(system)
            runs = []
            for _ in range(s.repeats):
                runs.append(await wrk.throughput(Endpoint("127.0.0.1", system.port), system.model("bench"),
                                                 s.throughput_concurrency, s.throughput_seconds, s.loadgen_cpus))
            results[str(count)] = runs
        finally:
            system.stop()
    return results


# ---- the whole run ------------------------------------------------------------------------

ALL_PHASES = ("throughput", "rates", "streams", "burst", "apis", "bodies", "translate", "memory", "workers")


async def run(args: argparse.Namespace) -> dict:
    settings = Settings.quick() if args.quick else Settings()
    if args.repeats:
        settings.repeats = args.repeats
    phases = set(args.phases.split(",")) if args.phases else set(ALL_PHASES)
    cpus = os.cpu_count() or 1
    if cpus < 2:
        settings.loadgen_cpus = settings.proxy_cpus = None
    workdir = Path(args.workdir or (RESULTS / "tmp")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if settings.loadgen_cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in settings.loadgen_cpus.split(",")})
    procs.raise_open_files_limit()
    upstream_port = procs.free_port()
    upstream = procs.spawn("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
                           upstream_port, workdir, cpus=settings.loadgen_cpus, cwd=str(REPO))
    ctx = Context(settings, workdir, upstream)
    if args.no_request_log:
        ctx.notes.append("proxy request logging off (logging.requests: false)")
    results: dict = {"command": args.command_line, "machine": machine_info(), "settings": asdict(settings),
                     "phases": sorted(phases), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "systems": {}, "notes": ctx.notes}
    try:
        await procs.wait_ready(upstream, None, 10)
        names = args.systems.split(",")
        if "litellm" in names and not args.no_install_litellm:
            from bench.litellm_env import ensure
            ok, message = await asyncio.to_thread(ensure)
            if not ok:
                ctx.notes.append(f"LiteLLM skipped: {message}")
                names.remove("litellm")
        per_system = phases & {"throughput", "rates", "streams", "burst", "apis", "bodies", "memory"}
        for system in make_systems(names if per_system else [], logging_requests=not args.no_request_log):
            try:
                results["systems"][system.name] = await bench_system(system, ctx, phases)
            except RuntimeError as exc:
                system.stop()
                ctx.notes.append(f"{system.name} skipped: {str(exc).splitlines()[0]}")
                log(f"{system.name} failed: {exc}")
        if "translate" in phases:
            log("anthropic translation, in process")
            results["translation"] = await translate.measure(settings.translate_seconds)
            log("each stream path, in process")
            results["stream_paths"] = await stream_paths.measure(list(stream_paths.PATHS),
                                                                 settings.stream_path_seconds,
                                                                 settings.stream_path_rounds)
        if "workers" in phases and "byok" in names:
            results["workers"] = await bench_workers(ctx)
    finally:
        upstream.stop()
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["summary"] = report.summarize(results)
    return results


def merge(previous: dict, update: dict) -> dict:
    """`previous` with every system and section that `update` measured replaced by the new figures."""
    merged = dict(previous)
    systems = {name: dict(runs) for name, runs in previous.get("systems", {}).items()}
    for name, runs in update.get("systems", {}).items():
        target = systems.setdefault(name, {})
        target.update({key: value for key, value in runs.items() if value not in ([], None, {})})
    merged["systems"] = systems
    for section in ("translation", "stream_paths", "workers"):
        if section in update:
            merged[section] = update[section]
    merged["notes"] = [note for note in previous.get("notes", []) if not note.startswith("updated ")]
    merged["notes"] += update.get("notes", [])
    merged["updates"] = previous.get("updates", []) + [
        {"command": update["command"], "at": update["finished_at"], "systems": sorted(update.get("systems", {})),
         "phases": update["phases"], "code": update.get("machine", {}).get("code")}]
    merged["notes"] += [f"updated by `{entry['command']}` at {entry['at']}"
                        + (f" (code {entry['code']})" if entry.get("code") else "") for entry in merged["updates"]]
    merged["summary"] = report.summarize(merged)
    return merged


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny durations (the CI smoke); numbers mean nothing")
    parser.add_argument("--repeats", type=int, default=None, help="repeat each measurement N times (default 3)")
    parser.add_argument("--systems", default="direct,relay,aiohttp,byok,litellm",
                        help="comma list of direct,relay,aiohttp,aiohttp-lean,byok,litellm (relay, aiohttp and "
                             "aiohttp-lean are reference floors; aiohttp-lean answers non-streaming requests only)")
    parser.add_argument("--phases", default=None, help=f"comma list of {','.join(ALL_PHASES)} (default all)")
    parser.add_argument("--out", default=str(RESULTS), help="where latest.json and latest.md go")
    parser.add_argument("--workdir", default=None, help="configs and server logs (default bench/results/tmp)")
    parser.add_argument("--no-install-litellm", action="store_true", help="do not create LiteLLM's venv if missing")
    parser.add_argument("--no-request-log", action="store_true", help="run byok-proxy with logging.requests: false")
    parser.add_argument("--update", action="store_true",
                        help="merge into the existing latest.json: replace only what this run measured")
    args = parser.parse_args(argv)
    args.command_line = "python -m bench" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from bench.upstream import install_fast_loop
    install_fast_loop()
    results = asyncio.run(run(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.update and (out / "latest.json").exists():
        results = merge(json.loads((out / "latest.json").read_text()), results)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(report.markdown(results))
    log(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    print(report.markdown(results))
    return 0
