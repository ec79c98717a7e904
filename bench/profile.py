"""Profile byok-proxy under load: py-spy (sampling, no restart) or pyinstrument (wall clock).

    python -m bench.profile --load nonstream --tool py-spy
    python -m bench.profile --load stream --tool pyinstrument

Starts the bench upstream and byok-proxy (pinned like the benchmark), drives the chosen
load, and writes a summary of where the proxy's CPU goes into bench/results/profile/ (the
functions with the most samples at the top of the stack, and the same grouped by module),
or pyinstrument's text tree; py-spy's raw collapsed stacks stay in bench/results/tmp/profile.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from bench import bodies, loadgen, procs, wrk
from bench.loadgen import Endpoint
from bench.systems import REPO, Byok

OUT = REPO / "bench" / "results" / "profile"


def summarize_collapsed(path: Path, top: int = 40) -> str:
    """Self samples per function and per module from py-spy's collapsed ("raw") output."""
    by_function: collections.Counter = collections.Counter()
    by_module: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        leaf = stack.split(";")[-1]
        by_function[leaf] += samples
        match = re.search(r"\(([^:)]*)", leaf)
        where = match.group(1) if match else "?"
        top_level = where.split("/")[0]
        by_module[where if top_level in ("proxy", "plugins") else top_level] += samples
    lines = [f"{total} samples", "", "self time by module:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_module.most_common(25)]
    lines += ["", "self time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(lines) + "\n"


async def drive(load: str, port: int, seconds: float, cpus: str) -> dict:
    endpoint = Endpoint("127.0.0.1", port)
    if load == "nonstream":
        return await wrk.throughput(endpoint, "bench/bench", 50, seconds, cpus)
    if load == "stream":
        deadline = time.monotonic() + seconds
        result: dict = {}
        while time.monotonic() < deadline:
            result = await loadgen.stream_latency(endpoint, "bench/s20x5", 100, 1)
        return result
    if load == "anthropic":
        deadline = time.monotonic() + seconds
        chunks = 0
        while time.monotonic() < deadline:
            chunks += (await loadgen.stream_throughput(endpoint, "bencha/s500x0", 4, 1))["chunks"]
        return {"chunks": chunks}
    if load == "bodies":  # a coding agent's 4 MiB conversation, one at a time (the bench's bodies phase)
        payload = loadgen.build_request("127.0.0.1", port, loadgen.CHAT_PATH, bodies.chat_body("bench/bench", 4 * bodies.MIB))
        return await loadgen.closed_loop(Endpoint("127.0.0.1", port), "bench/bench", 1, seconds, 10 ** 6, payload)
    raise SystemExit(f"unknown load {load}")


async def profile(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = REPO / "bench" / "results" / "tmp" / "profile"
    upstream_port = procs.free_port()
    upstream = procs.spawn("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
                           upstream_port, workdir, cpus=args.loadgen_cpus, cwd=str(REPO))
    system = Byok(logging_requests=not args.no_request_log)
    try:
        await procs.wait_ready(upstream, None, 10)
        if args.tool == "pyinstrument":
            await _pyinstrument(system, upstream_port, workdir, args)
        else:
            await system.start(upstream_port, workdir, args.proxy_cpus, [])
            await _py_spy(system, args)
    finally:
        system.stop()
        upstream.stop()


async def _py_spy(system: Byok, args: argparse.Namespace) -> None:
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    raw = REPO / "bench" / "results" / "tmp" / "profile" / f"{args.load}.folded"
    recorder = await asyncio.create_subprocess_exec(
        "py-spy", "record", "-p", str(system.server.pid), "-d", str(int(args.seconds)), "-r", "250",
        "-f", "raw", "-o", str(raw), "--nonblocking", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    result = await drive(args.load, system.port, args.seconds - 1, args.loadgen_cpus)
    await asyncio.wait_for(recorder.wait(), args.seconds + 30)
    summary = summarize_collapsed(raw)
    (OUT / f"{args.load}.summary.txt").write_text(summary)
    print(f"load: {result}\n\n{summary}\nraw samples: {raw}")


async def _pyinstrument(system: Byok, upstream_port: int, workdir: Path, args: argparse.Namespace) -> None:
    config = workdir / "byok-pyinstrument.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    config.write_text(system.config_text(upstream_port))
    port = procs.free_port()
    report = OUT / f"{args.load}.pyinstrument.txt"
    argv = [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(report), "-m", "proxy",
            "serve", "-c", str(config), "--port", str(port)]
    server = procs.spawn("byok-pyinstrument", argv, port, workdir, cpus=args.proxy_cpus, cwd=str(REPO))
    try:
        await procs.wait_ready(server, "/healthz", 30)
        result = await drive(args.load, port, args.seconds, args.loadgen_cpus)
        server.process.send_signal(signal.SIGINT)  # drain and exit: pyinstrument writes its report
        await asyncio.to_thread(server.process.wait, 60)
    finally:
        server.stop()
    print(f"load: {result}\n\npyinstrument report: {report}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", choices=("nonstream", "stream", "anthropic", "bodies"), default="nonstream")
    parser.add_argument("--tool", choices=("py-spy", "pyinstrument"), default="py-spy")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-request-log", action="store_true")
    parser.add_argument("--loadgen-cpus", default="0")
    parser.add_argument("--proxy-cpus", default="1")
    args = parser.parse_args()
    from bench.upstream import install_fast_loop
    install_fast_loop()
    asyncio.run(profile(args))


if __name__ == "__main__":
    main()
