"""Throughput at fixed concurrency with `wrk` (Debian's package) and bench/wrk/post.lua.

When wrk is not installed the Python closed-loop generator stands in, and the result
says so: its numbers are lower than wrk's because it spends more CPU per request.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil

from bench.loadgen import Endpoint, closed_loop
from bench.procs import pin_command

SCRIPT = os.path.join(os.path.dirname(__file__), "wrk", "post.lua")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


async def throughput(endpoint: Endpoint, model: str, concurrency: int, duration: float,
                     cpus: str | None) -> dict:
    if not wrk_available():
        result = await closed_loop(endpoint, model, concurrency, duration)
        result["tool"] = "python closed loop (wrk not installed)"
        return result
    seconds = max(1, round(duration))
    argv = pin_command(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", SCRIPT,
                        f"http://{endpoint.host}:{endpoint.port}{endpoint.path}"], cpus)
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE,
                                                   env={**os.environ, "BENCH_MODEL": model})
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=seconds + 30)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return {"tool": "wrk", "error": "wrk did not finish in time"}
    return parse_wrk(stdout.decode(errors="replace"), stderr.decode(errors="replace"), concurrency)


def parse_wrk(stdout: str, stderr: str, concurrency: int) -> dict:
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            raw = json.loads(line[len("WRKJSON "):])
            seconds = raw["duration_us"] / 1e6
            errors = {name: count for name, count in raw["errors"].items() if count}
            ok = raw["requests"] - raw["errors"]["status"]
            latency = {f"{name}_ms": value / 1000 for name, value in raw["latency_us"].items()}
            return {"tool": "wrk", "concurrency": concurrency, "seconds": seconds, "requests": raw["requests"],
                    "ok": ok, "rps": ok / seconds if seconds else 0.0, "latency": latency, "errors": errors}
    return {"tool": "wrk", "error": f"no summary from wrk: {(stderr or stdout).strip()[-300:]}"}
