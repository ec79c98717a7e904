"""Medians across repeats, overheads against the direct connection, targets, and the markdown table."""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

# (key, description, target value, unit, direction): "max" means measured must be <= target.
TARGETS = [
    ("throughput_vs_litellm", "throughput at concurrency 50, times LiteLLM's", 30.0, "x", "min"),
    ("overhead_200_p50", "overhead at 200 req/s, p50", 0.5, "ms", "max"),
    ("overhead_200_p99", "overhead at 200 req/s, p99", 2.0, "ms", "max"),
    ("overhead_1000_p99", "overhead at 1,000 req/s, p99", 5.0, "ms", "max"),
    ("stream_first_c1", "added to the first chunk, concurrency 1 (p50)", 0.5, "ms", "max"),
    ("stream_chunk_c1", "added per chunk, concurrency 1 (p50)", 0.3, "ms", "max"),
    ("stream_chunk_c100_p99", "added per chunk, concurrency 100, p99", 10.0, "ms", "max"),
    ("stream_first_c100_p99", "added to the first chunk, concurrency 100, p99", 10.0, "ms", "max"),
    ("translated_stream_share", "chat client on an Anthropic upstream: stream chunks/s in process, share of chat "
                                "passthrough's",
     80.0, "%", "min"),
    ("bodies_excess", "big-body passthrough added latency (p50) beyond 1 ms + 1 ms per MiB, worst size and path",
     0.0, "ms", "max"),
    ("memory_idle", "RSS idle", 50.0, "MB", "max"),
    ("memory_1000", "RSS holding 1,000 streams", 150.0, "MB", "max"),
    ("held_10000", "streams held of 10,000", 10000, "", "min"),
    ("memory_after_excess", "RSS after the streams end, above the RSS before them", 15.0, "MB", "max"),
]


def median(values: Iterable[Any]) -> float | None:
    clean = [v for v in values if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(clean) if clean else None


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarize_system(runs: dict) -> dict:
    summary: dict = {"label": runs.get("label")}
    throughput = runs.get("throughput") or []
    if throughput:
        summary["throughput_rps"] = median(r.get("rps") for r in throughput)
        summary["throughput_p99_ms"] = median(_get(r, "latency", "p99_ms") for r in throughput)
        summary["throughput_errors"] = sum(sum((r.get("errors") or {}).values()) for r in throughput)
        summary["cpu_us_per_request"] = median(r.get("server_cpu_us_per_request") for r in throughput)
    rates: dict = {}
    for run in runs.get("rates") or []:
        for rate, result in run.items():
            rates.setdefault(rate, []).append(result)
    summary["rates"] = {rate: {
        "p50_ms": median(_get(r, "latency", "p50_ms") for r in results),
        "p90_ms": median(_get(r, "latency", "p90_ms") for r in results),
        "p99_ms": median(_get(r, "latency", "p99_ms") for r in results),
        "achieved_rps": median(r.get("achieved_rps") for r in results),
        "send_lag_p99_ms": median(_get(r, "send_lag", "p99_ms") for r in results),
        "failed": sum(sum((r.get("errors") or {}).values()) + r.get("dropped", 0)
                      + sum(v for k, v in (r.get("statuses") or {}).items() if k != "200") for r in results),
    } for rate, results in rates.items()}
    streams: dict = {}
    for run in runs.get("streams") or []:
        for level, result in run.items():
            streams.setdefault(level, []).append(result)
    summary["streams"] = {level: {
        "first_p50_ms": median(_get(r, "first_chunk", "p50_ms") for r in results),
        "first_p99_ms": median(_get(r, "first_chunk", "p99_ms") for r in results),
        "chunk_p50_ms": median(_get(r, "chunk_delay", "p50_ms") for r in results),
        "chunk_p99_ms": median(_get(r, "chunk_delay", "p99_ms") for r in results),
        "streams": sum(r.get("streams", 0) for r in results),
        "failed": sum(sum((r.get("errors") or {}).values()) for r in results),
    } for level, results in streams.items()}
    burst = runs.get("burst") or []
    summary["burst_chunks_per_s"] = {kind: median(_get(r, kind, "chunks_per_s") for r in burst)
                                     for kind in BURST_KINDS if any(kind in r for r in burst)}
    summary["burst_cpu_us_per_chunk"] = {kind: median(_get(r, kind, "server_cpu_us_per_chunk") for r in burst)
                                         for kind in BURST_KINDS if any(_get(r, kind, "server_cpu_us_per_chunk")
                                                                        for r in burst)}
    apis = [run for run in runs.get("apis") or [] if run]
    if apis:
        summary["apis"] = {label: {"rps": median(_get(r, label, "rps") for r in apis),
                                   "cpu_us": median(_get(r, label, "server_cpu_us_per_request") for r in apis),
                                   "p50_ms": median(_get(r, label, "latency", "p50_ms") for r in apis),
                                   "failed": sum(sum((_get(r, label, "errors") or {}).values()) for r in apis)}
                           for label in apis[0]}
    summary["bodies"] = _bodies_summary(runs.get("bodies") or [])
    if runs.get("cpu"):
        summary["foreign_cores"] = runs["cpu"].get("foreign_cores")
    if "idle_rss_mb_at_start" in runs:
        summary["rss_at_start_mb"] = runs["idle_rss_mb_at_start"]
    if "memory" in runs:
        summary["memory"] = runs["memory"]
    return summary


def _bodies_summary(runs: list[dict]) -> dict:
    cases: dict = {}
    for run in runs:
        for case, result in run.items():
            cases.setdefault(case, []).append(result)
    return {case: {"p50_ms": median(_get(r, "latency", "p50_ms") for r in results),
                   "p99_ms": median(_get(r, "latency", "p99_ms") for r in results),
                   "cpu_ms": median(r.get("server_cpu_ms_per_request") for r in results),
                   "body_bytes": results[0].get("body_bytes"),
                   "failed": sum(sum((r.get("errors") or {}).values())
                                 + sum(v for k, v in (r.get("statuses") or {}).items() if k != "200") for r in results)}
            for case, results in cases.items()}


def overhead(system: dict, direct: dict) -> dict:
    result: dict = {"rates": {}, "streams": {}, "bodies": {}}
    for case, values in (system.get("bodies") or {}).items():
        result["bodies"][case] = _diff(values.get("p50_ms"), _get(direct, "bodies", case, "p50_ms"))
    for rate, values in (system.get("rates") or {}).items():
        base = (direct.get("rates") or {}).get(rate, {})
        result["rates"][rate] = {p: _diff(values.get(p), base.get(p)) for p in ("p50_ms", "p90_ms", "p99_ms")}
    for level, values in (system.get("streams") or {}).items():
        base = (direct.get("streams") or {}).get(level, {})
        result["streams"][level] = {key: _diff(values.get(key), base.get(key))
                                    for key in ("first_p50_ms", "first_p99_ms", "chunk_p50_ms", "chunk_p99_ms")}
    return result


def summarize(results: dict) -> dict:
    systems = {name: summarize_system(runs) for name, runs in (results.get("systems") or {}).items()}
    summary: dict = {"systems": systems, "overhead": {}}
    direct = systems.get("direct")
    if direct is not None:
        for name, system in systems.items():
            if name != "direct":
                summary["overhead"][name] = overhead(system, direct)
    byok_rps = _get(systems, "byok", "throughput_rps")
    litellm_rps = _get(systems, "litellm", "throughput_rps")
    if byok_rps and litellm_rps:
        summary["throughput_vs_litellm"] = byok_rps / litellm_rps
    workers = results.get("workers")
    if workers:
        summary["workers"] = {count: median(r.get("rps") for r in runs) for count, runs in workers.items()}
        if summary["workers"].get("1") and summary["workers"].get("2"):
            summary["workers"]["speedup"] = summary["workers"]["2"] / summary["workers"]["1"]
    if results.get("translation"):
        summary["translation"] = results["translation"]
    if results.get("stream_paths"):
        summary["stream_paths"] = results["stream_paths"]
    summary["targets"] = evaluate_targets(summary)
    return summary


def _measured(summary: dict) -> dict:
    over = _get(summary, "overhead", "byok") or {}
    memory = _get(summary, "systems", "byok", "memory") or {}
    levels = memory.get("levels") or {}
    idle = memory.get("idle_mb")
    # Each level against the same process's RSS just before it (a level may run in its own process).
    excesses = [level["rss_after_mb"] - level["rss_before_mb"] for level in levels.values()
                if level.get("rss_after_mb") is not None and level.get("rss_before_mb") is not None]
    excess = max(excesses, default=None)
    return {
        "bodies_excess": _bodies_excess(summary),
        "translated_stream_share": _translated_share(summary),
        "throughput_vs_litellm": summary.get("throughput_vs_litellm"),
        "overhead_200_p50": _get(over, "rates", "200", "p50_ms"),
        "overhead_200_p99": _get(over, "rates", "200", "p99_ms"),
        "overhead_1000_p99": _get(over, "rates", "1000", "p99_ms"),
        "stream_first_c1": _get(over, "streams", "c1", "first_p50_ms"),
        "stream_chunk_c1": _get(over, "streams", "c1", "chunk_p50_ms"),
        "stream_chunk_c100_p99": _get(over, "streams", "c100", "chunk_p99_ms"),
        "stream_first_c100_p99": _get(over, "streams", "c100", "first_p99_ms"),
        "memory_idle": idle,
        "memory_1000": _get(levels, "1000", "rss_holding_mb"),
        "held_10000": _get(levels, "10000", "max_held"),
        "memory_after_excess": excess,
    }


def _translated_share(summary: dict) -> float | None:
    """From the in-process measure: end to end, a proxy faster than the load generator's core makes
    passthrough's chunks/s that core's (docs/performance.md), so the ratio would flatter translation."""
    paths = summary.get("stream_paths") or {}
    translated = _get(paths, "chat_anthropic", "chunks_per_s")
    passthrough = _get(paths, "chat_openai", "chunks_per_s")
    return 100 * translated / passthrough if translated and passthrough else None


def _bodies_excess(summary: dict) -> float | None:
    """The worst big-body case's added latency beyond its allowance of 1 ms + 1 ms per MiB."""
    added = _get(summary, "overhead", "byok", "bodies") or {}
    sizes = {case: _get(summary, "systems", "byok", "bodies", case, "body_bytes") for case in added}
    excesses = [value - (1.0 + sizes[case] / 2**20) for case, value in added.items()
                if value is not None and sizes[case]]
    return max(excesses, default=None)


def evaluate_targets(summary: dict) -> list[dict]:
    measured = _measured(summary)
    rows = []
    for key, description, target, unit, direction in TARGETS:
        value = measured.get(key)
        if value is None:
            rows.append({"key": key, "target": description, "goal": _goal(target, unit, direction),
                         "measured": None, "met": None, "distance": "not measured"})
            continue
        met = value >= target if direction == "min" else value <= target
        gap = target - value if direction == "min" else value - target
        rows.append({"key": key, "target": description, "goal": _goal(target, unit, direction),
                     "measured": value, "met": met,
                     "distance": "met" if met else f"{_fmt(abs(gap))} {unit}".strip() + (" short" if direction == "min" else " over")})
    return rows


def _goal(target: float, unit: str, direction: str) -> str:
    return f"{'>=' if direction == 'min' else '<='} {_fmt(target)} {unit}".strip()


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else (f"+{_fmt(value)}" if value >= 0 else _fmt(value))


# ---- markdown -----------------------------------------------------------------------------

def markdown(results: dict) -> str:
    summary = results.get("summary") or summarize(results)
    systems = summary["systems"]
    machine = results.get("machine", {})
    names = list(systems)
    lines = ["# byok-proxy benchmark", "",
             f"Command: `{results.get('command', 'python -m bench')}`  ",
             f"Machine: {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} cores, "
             f"{machine.get('memory_gb', '?')} GB, Linux {machine.get('kernel', '?')}, Python {machine.get('python')}, "
             f"aiohttp {machine.get('aiohttp')}, uvloop {machine.get('uvloop')}, orjson {machine.get('orjson')}  ",
             f"Code: {machine.get('code') or 'unknown'}"
             + (" (the first run; what later runs measured again is theirs, see Notes)  " if results.get("updates")
                else "  "),
             f"Run: {results.get('started_at')} to {results.get('finished_at')}; repeats: "
             f"{results.get('settings', {}).get('repeats')}, medians shown. Each proxy pinned to core "
             f"{results.get('settings', {}).get('proxy_cpus')}; load generator, wrk and upstream on core "
             f"{results.get('settings', {}).get('loadgen_cpus')}.", ""]
    lines += _targets_table(summary)
    lines += _throughput_table(summary, names)
    lines += _rates_table(summary, names)
    lines += _streams_table(summary, names)
    lines += _burst_table(summary, names)
    lines += _apis_table(summary, names)
    lines += _bodies_table(summary, names)
    lines += _memory_table(summary, names)
    lines += _workers_table(summary)
    notes = list(results.get("notes") or [])
    for name in names:
        foreign = systems[name].get("foreign_cores")
        if foreign is not None and foreign > 0.1:
            notes.append(f"while {systems[name]['label']} ran, other processes on the machine used "
                         f"{foreign:.2f} cores on average: its figures are disturbed by that much")
    for name in names:
        for count, level in ((systems[name].get("memory") or {}).get("levels") or {}).items():
            if level.get("note"):
                notes.append(f"{systems[name]['label']}, {count} streams: {level['note']}")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def _targets_table(summary: dict) -> list[str]:
    lines = ["## Targets (byok-proxy)", "", "| target | goal | measured | status |", "|---|---|---|---|"]
    for row in summary.get("targets", []):
        status = "not measured" if row["met"] is None else ("met" if row["met"] else f"missed by {row['distance']}")
        lines.append(f"| {row['target']} | {row['goal']} | {_fmt(row['measured'])} | {status} |")
    return lines + [""]


def _throughput_table(summary: dict, names: list[str]) -> list[str]:
    systems = summary["systems"]
    if not any("throughput_rps" in systems[n] for n in names):
        return []
    lines = ["## Non-streaming throughput (wrk, concurrency 50)", "",
             "Server CPU per request: CPU time the server process used divided by requests served "
             "(for direct, the upstream's own cost).", "",
             "| system | req/s | p99 ms | server CPU µs/request | errors |", "|---|---|---|---|---|"]
    for name in names:
        s = systems[name]
        if "throughput_rps" in s:
            lines.append(f"| {s['label']} | {_fmt(s['throughput_rps'])} | {_fmt(s.get('throughput_p99_ms'))} | "
                         f"{_fmt(s.get('cpu_us_per_request'), 0)} | {s.get('throughput_errors', 0)} |")
    if summary.get("throughput_vs_litellm"):
        lines += ["", f"byok-proxy / LiteLLM: **{summary['throughput_vs_litellm']:.1f}x**"]
    return lines + [""]


def _rates_table(summary: dict, names: list[str]) -> list[str]:
    systems = summary["systems"]
    rates = sorted({rate for n in names for rate in (systems[n].get("rates") or {})}, key=int)
    if not rates:
        return []
    lines = ["## Latency at fixed rates (open loop), ms", "",
             "| system | rate/s | p50 | p90 | p99 | overhead p50 | overhead p99 | achieved/s | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for rate in rates:
            r = (systems[name].get("rates") or {}).get(rate)
            if r is None:
                continue
            over = _get(summary, "overhead", name, "rates", rate) or {}
            lines.append(f"| {systems[name]['label']} | {rate} | {_fmt(r['p50_ms'])} | {_fmt(r['p90_ms'])} | "
                         f"{_fmt(r['p99_ms'])} | {_signed(over.get('p50_ms'))} | {_signed(over.get('p99_ms'))} | "
                         f"{_fmt(r['achieved_rps'])} | {r['failed']} |")
    return lines + [""]


def _streams_table(summary: dict, names: list[str]) -> list[str]:
    systems = summary["systems"]
    if not any(systems[n].get("streams") for n in names):
        return []
    lines = ["## Streaming: 20 chunks 20 ms apart, ms", "",
             "First chunk = request sent to first content chunk received; per chunk = upstream send to "
             "client receipt of each chunk. Added = minus direct.", "",
             "| system | concurrency | first p50 | first p99 | per chunk p50 | per chunk p99 | "
             "added first p50 | added first p99 | added per chunk p50 | added per chunk p99 | failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for level, s in (systems[name].get("streams") or {}).items():
            over = _get(summary, "overhead", name, "streams", level) or {}
            lines.append(f"| {systems[name]['label']} | {level[1:]} | {_fmt(s['first_p50_ms'])} | "
                         f"{_fmt(s['first_p99_ms'])} | {_fmt(s['chunk_p50_ms'])} | {_fmt(s['chunk_p99_ms'])} | "
                         f"{_signed(over.get('first_p50_ms'))} | {_signed(over.get('first_p99_ms'))} | "
                         f"{_signed(over.get('chunk_p50_ms'))} | {_signed(over.get('chunk_p99_ms'))} | {s['failed']} |")
    return lines + [""]


BURST_KINDS = ("openai", "anthropic", "responses_chat", "responses_anthropic", "messages_chat", "messages_anthropic")
_BURST_TITLES = ("chat passthrough", "chat -> Anthropic", "Responses -> chat", "Responses -> Anthropic",
                 "Messages -> chat", "Messages -> Anthropic (passthrough)")


def _burst_table(summary: dict, names: list[str]) -> list[str]:
    systems = summary["systems"]
    lines = ["## Stream throughput, chunks/s (upstream writes as fast as it can)", "",
             "Client API -> upstream format. The translated columns are also shown as a share of chat "
             "passthrough in the same run.", "",
             "| system | " + " | ".join(_BURST_TITLES) + " |", "|---|" + "---|" * len(BURST_KINDS)]
    rows = 0
    for name in names:
        burst = systems[name].get("burst_chunks_per_s") or {}
        if burst:
            rows += 1
            base = burst.get("openai")
            cells = [_fmt(burst.get(kind)) + _share(burst.get(kind), base if kind != "openai" else None)
                     for kind in BURST_KINDS]
            lines.append(f"| {systems[name]['label']} | " + " | ".join(cells) + " |")
    lines += _burst_cpu_table(systems, names)
    lines += _stream_paths_table(summary.get("stream_paths") or {})
    translation = summary.get("translation")
    if translation and "chunks_per_s" in translation:
        lines += ["", f"Translator alone (in process, SSE parse + translate + encode): "
                      f"**{_fmt(translation['chunks_per_s'])} chunks/s** "
                      f"({_fmt(translation.get('us_per_chunk'))} µs per chunk)."]
        rows += 1
    elif translation and "skipped" in translation:
        lines += ["", f"Translator alone: skipped ({translation['skipped']})."]
    return lines + [""] if rows else []


def _stream_paths_table(paths: dict) -> list[str]:
    """bench/stream_paths.py: the server's pipeline alone, the upstream's reads recorded."""
    if not paths:
        return []
    base = _get(paths, "chat_openai", "chunks_per_s")
    lines = ["", "In process (`bench/stream_paths.py`: the server's whole stream pipeline, upstream reads "
                 "recorded, no sockets), byok-proxy:", "", "| path | chunks/s | µs per chunk |", "|---|---|---|"]
    for name, result in paths.items():
        rate = result.get("chunks_per_s")
        share = _share(rate, base) if name != "chat_openai" else ""
        lines.append(f"| {name} | {_fmt(rate)}{share} | {_fmt(result.get('us_per_chunk'))} |")
    return lines


def _burst_cpu_table(systems: dict, names: list[str]) -> list[str]:
    """The server's CPU per chunk of the same runs; the share is chat passthrough's CPU over the
    path's (what its chunks/s would be, as a share, were the proxy's core the only limit)."""
    rows = [name for name in names if systems[name].get("burst_cpu_us_per_chunk")]
    if not rows:
        return []
    lines = ["", "Server CPU per chunk, µs (for `direct`, the upstream's), in the same runs:", "",
             "| system | " + " | ".join(_BURST_TITLES) + " |", "|---|" + "---|" * len(BURST_KINDS)]
    for name in rows:
        cpu = systems[name]["burst_cpu_us_per_chunk"]
        base = cpu.get("openai")
        cells = [_fmt(cpu.get(kind)) + (_share(base, cpu.get(kind)) if kind != "openai" else "")
                 for kind in BURST_KINDS]
        lines.append(f"| {systems[name]['label']} | " + " | ".join(cells) + " |")
    return lines


def _bodies_table(summary: dict, names: list[str]) -> list[str]:
    systems = summary["systems"]
    if not any(systems[n].get("bodies") for n in names):
        return []
    lines = _heading("Big bodies: coding-agent conversations, non-streamed, one at a time, ms",
                     "Passthrough paths: chat -> OpenAI format, Messages -> Anthropic, Responses -> Responses. "
                     "Added = p50 minus direct's; allowance = 1 ms + 1 ms per MiB; server CPU per request (for direct, "
                     "the upstream's).",
                     ("system", "path", "body", "p50", "p99", "added p50", "allowance", "server CPU/request",
                      "failed"))
    for name in names:
        for case, values in (systems[name].get("bodies") or {}).items():
            path, _, size = case.partition("/")
            added = _get(summary, "overhead", name, "bodies", case)
            allowance = 1.0 + (values.get("body_bytes") or 0) / 2**20
            lines.append(f"| {systems[name]['label']} | {path} | {size} | {_fmt(values['p50_ms'])} | "
                         f"{_fmt(values['p99_ms'])} | {_signed(added)} | {_fmt(allowance)} | "
                         f"{_fmt(values['cpu_ms'])} | {values['failed']} |")
    return lines + [""]


def _heading(title: str, explanation: str, columns: tuple[str, ...]) -> list[str]:
    """A section's title, what its figures mean, and its table's head."""
    return [f"## {title}", "", explanation, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _share(value: float | None, base: float | None) -> str:
    return f" ({value / base:.0%})" if value and base else ""


def _apis_table(summary: dict, names: list[str]) -> list[str]:
    lines: list[str] = []
    for name in names:
        apis = summary["systems"][name].get("apis")
        if not apis:
            continue
        base = next(iter(apis.values()))  # the first row: chat passthrough
        lines += [f"## Each client API on each upstream format: {summary['systems'][name]['label']}", "",
                  "Non-streamed, closed loop; CPU is the proxy's own per request, and its ratio to chat "
                  "passthrough in the same run.", "",
                  "| client API -> upstream | req/s | p50 ms | proxy CPU µs/request | CPU vs chat passthrough | failed |",
                  "|---|---|---|---|---|---|"]
        for label, row in apis.items():
            ratio = f"{row['cpu_us'] / base['cpu_us']:.2f}x" if row.get("cpu_us") and base.get("cpu_us") else "-"
            lines.append(f"| {label} | {_fmt(row['rps'])} | {_fmt(row['p50_ms'])} | {_fmt(row['cpu_us'])} | "
                         f"{ratio} | {row['failed']} |")
        lines.append("")
    return lines


def _memory_table(summary: dict, names: list[str]) -> list[str]:
    systems = summary["systems"]
    rows = []
    for name in names:
        memory = systems[name].get("memory") or {}
        if "idle_mb" not in memory:
            continue
        for count, level in (memory.get("levels") or {}).items():
            rows.append(f"| {systems[name]['label']} | {_fmt(memory['idle_mb'], 1)} | {count} | "
                        f"{level.get('max_held', 0):,} | {_fmt(level.get('rss_holding_mb'), 1)} | "
                        f"{_fmt(level.get('rss_after_mb'), 1)} | {level.get('failed', 0)} | {level.get('workers', 1)} |")
    if not rows:
        return []
    return ["## Memory (RSS, MB) with slow streams held open", "",
            "| system | idle | streams | held | RSS holding | RSS after end | failed | processes |",
            "|---|---|---|---|---|---|---|---|", *rows, "",
            "Idle: a fresh process after startup. RSS after end: 3 s after the last stream closed.", ""]


def _workers_table(summary: dict) -> list[str]:
    workers = summary.get("workers")
    if not workers:
        return []
    lines = ["## byok-proxy --workers (free to use every core; wrk and the upstream stay on theirs)", "",
             "| workers | req/s at concurrency 50 |", "|---|---|"]
    for count, rps in workers.items():
        if count != "speedup":
            lines.append(f"| {count} | {_fmt(rps)} |")
    if "speedup" in workers:
        lines += ["", f"Scaling 1 -> 2 workers: **{workers['speedup']:.2f}x**"]
    return lines + [""]
