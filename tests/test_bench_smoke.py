"""A CI smoke of the benchmark so it never rots: tiny durations, no assertion on any timing.

It runs `python -m bench --quick` for the direct connection and byok-proxy (LiteLLM is not
installed in CI) and checks that every phase ran and the results are well-formed: the
JSON has each section with numbers where numbers belong, the markdown has its tables,
and no request failed.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(240)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--systems", "direct,byok",
                             "--out", str(out), "--workdir", str(out / "tmp")],
                            cwd=REPO, capture_output=True, text=True, timeout=220)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "latest.json").read_text()), (out / "latest.md").read_text()


def test_every_system_ran_every_phase_without_failed_requests(quick_run):
    results, _ = quick_run
    summary = results["summary"]
    for name in ("direct", "byok"):
        system = summary["systems"][name]
        assert _number(system["throughput_rps"]) and system["throughput_rps"] > 0
        assert system["throughput_errors"] == 0
        assert set(system["rates"]) == {"50", "200"}
        for rate in system["rates"].values():
            assert all(_number(rate[key]) for key in ("p50_ms", "p90_ms", "p99_ms"))
            assert rate["failed"] == 0
        for level in ("c1", "c100"):
            stream = system["streams"][level]
            assert stream["failed"] == 0 and stream["streams"] > 0
            assert all(_number(stream[key]) for key in ("first_p50_ms", "chunk_p50_ms", "chunk_p99_ms"))
        assert system["burst_chunks_per_s"]["openai"] > 0
        assert system["burst_chunks_per_s"]["anthropic"] > 0
        cases = {f"{path}/{size}" for path in ("chat", "messages", "responses")
                 for size in ("16KiB", "256KiB", "1MiB", "4MiB")}
        assert set(system["bodies"]) == cases
        for case in system["bodies"].values():
            assert case["failed"] == 0 and _number(case["p50_ms"]) and case["body_bytes"] > 0


def test_overheads_and_memory_are_reported_for_the_proxy(quick_run):
    results, _ = quick_run
    summary = results["summary"]
    over = summary["overhead"]["byok"]
    assert all(_number(over["rates"][rate]["p99_ms"]) for rate in ("50", "200"))
    assert _number(over["streams"]["c1"]["chunk_p50_ms"])
    assert all(_number(over["bodies"][f"{path}/4MiB"]) for path in ("chat", "messages", "responses"))
    memory = summary["systems"]["byok"]["memory"]
    assert memory["idle_mb"] > 0
    for count, level in memory["levels"].items():
        assert level["max_held"] == int(count) and level["failed"] == 0
        assert level["rss_holding_mb"] > 0 and level["rss_after_mb"] > 0
    assert summary["translation"]["chunks_per_s"] > 0
    assert summary["workers"]["1"] > 0 and summary["workers"]["2"] > 0


def test_every_target_row_is_evaluated_or_says_why_not(quick_run):
    results, _ = quick_run
    rows = {row["key"]: row for row in results["summary"]["targets"]}
    assert set(rows) == {key for key, *_ in report.TARGETS}
    assert rows["throughput_vs_litellm"]["met"] is None  # LiteLLM was not part of this run
    assert rows["overhead_200_p50"]["met"] in (True, False)
    assert rows["memory_idle"]["met"] in (True, False)
    assert rows["bodies_excess"]["met"] in (True, False)


def test_markdown_has_the_command_the_machine_and_the_tables(quick_run):
    results, markdown = quick_run
    assert results["command"] in markdown and "Machine:" in markdown
    for heading in ("## Targets", "## Non-streaming throughput", "## Latency at fixed rates", "## Streaming",
                    "## Stream throughput", "## Big bodies", "## Memory", "## byok-proxy --workers"):
        assert heading in markdown
    assert markdown == report.markdown(results)  # the file is exactly what the JSON renders to
