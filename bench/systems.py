"""The systems under test: how to start each one and which model names reach the upstream.

- direct:   the load generator talks to the bench upstream itself (the physical limit)
- byok:     byok-proxy in front of the upstream, `python -m proxy serve`
- litellm:  LiteLLM's proxy from its own venv (bench/.venv-litellm), when installed
- byok@REF: byok-proxy as of another commit (a git worktree in the workdir), so a change is
            measured against the commit before it in one run: `--systems direct,byok,byok@HEAD~1`

Each proxy knows two upstreams on the same bench upstream port: `bench` in OpenAI format
and `bencha` in Anthropic format. Clients address byok with `upstream/model` names; LiteLLM
gets one model_list entry per model name the benchmark uses.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Server, free_port, spawn, wait_ready

REPO = Path(__file__).resolve().parent.parent
LITELLM_VENV = REPO / "bench" / ".venv-litellm"
LITELLM_VERSION = "1.100.5"


@dataclass
class System:
    name: str
    label: str
    start_timeout: float = 30.0
    ready_path: str | None = "/healthz"
    model_prefix: str = ""
    anthropic_prefix: str | None = None   # model prefix routed to the Anthropic-format upstream
    responses_prefix: str | None = None   # model prefix routed to the Responses-format upstream
    # Serves the Responses and Messages APIs on every upstream format (the current byok-proxy)
    speaks_every_api: bool = False
    server: Server | None = None
    port: int = 0
    # Native: the upstream's own paths and model names pass through (direct and the baselines);
    # Anthropic format is then reached at /v1/messages rather than through a model prefix.
    native: bool = False
    notes: list[str] = field(default_factory=list)

    def model(self, name: str) -> str:
        return self.model_prefix + name

    def anthropic_model(self, name: str) -> str | None:
        return None if self.anthropic_prefix is None else self.anthropic_prefix + name

    def responses_model(self, name: str) -> str | None:
        return None if self.responses_prefix is None else self.responses_prefix + name

    async def start(self, upstream_port: int, workdir: Path, cpus: str | None, models: list[str]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def rss_mb(self) -> float | None:
        return None if self.server is None else self.server.rss_mb()


class Direct(System):
    def __init__(self):
        super().__init__("direct", "direct (no proxy)", ready_path=None, native=True)

    async def start(self, upstream_port, workdir, cpus, models) -> None:
        self.port = upstream_port


class Baseline(System):
    """A reference proxy from bench/baselines.py; like direct, it passes paths and model names as they are."""

    def __init__(self, kind: str, name: str, label: str):
        super().__init__(name, label, ready_path=None)
        self.kind = kind
        self.native = True

    async def start(self, upstream_port, workdir, cpus, models) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "bench.baselines", self.kind, "--port", str(self.port),
                "--upstream-port", str(upstream_port)]
        self.server = spawn(self.name, argv, self.port, workdir, cpus=cpus, cwd=str(REPO))
        await wait_ready(self.server, self.ready_path, self.start_timeout)


class Byok(System):
    def __init__(self, workers: int = 1, name: str = "byok", logging_requests: bool = True):
        label = "byok-proxy" if workers == 1 else f"byok-proxy ({workers} workers)"
        super().__init__(name, label, model_prefix="bench/", anthropic_prefix="bencha/", responses_prefix="benchr/",
                         speaks_every_api=True)
        self.workers = workers
        self.logging_requests = logging_requests

    def config_text(self, upstream_port: int) -> str:
        return (
            "listen: {host: 127.0.0.1, port: 0}\n"
            "upstreams:\n"
            "  bench:\n"
            f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
            "    api_key: sk-bench-upstream\n"
            "  bencha:\n"
            f"    base_url: http://127.0.0.1:{upstream_port}\n"
            "    format: anthropic\n"
            "    api_key: sk-bench-upstream\n"
            + (f"  benchr:\n    base_url: http://127.0.0.1:{upstream_port}/v1\n    format: responses\n"
               "    api_key: sk-bench-upstream\n" if self.responses_prefix else "")
            + f"logging: {{level: info, format: json, requests: {'true' if self.logging_requests else 'false'}}}\n"
        )

    async def start(self, upstream_port, workdir, cpus, models) -> None:
        config = workdir / f"{self.name}.yaml"
        config.write_text(self.config_text(upstream_port))
        self.port = free_port()
        argv = [sys.executable, "-m", "proxy", "serve", "-c", str(config), "--port", str(self.port)]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        tree = self.source_tree(workdir)
        self.server = spawn(self.name, argv, self.port, workdir, cpus=cpus, cwd=str(tree),
                            env={"PYTHONPATH": str(tree)})
        await wait_ready(self.server, self.ready_path, self.start_timeout)

    def source_tree(self, workdir: Path) -> Path:
        return REPO


class ByokAtCommit(Byok):
    """byok-proxy as of another commit, run from a detached git worktree of it."""

    def __init__(self, ref: str, logging_requests: bool = True):
        super().__init__(name=f"byok@{ref}", logging_requests=logging_requests)
        self.ref = ref
        # an older commit may know neither format: responses nor the Responses and Messages APIs
        self.responses_prefix, self.speaks_every_api = None, False

    def source_tree(self, workdir: Path) -> Path:
        commit = _git("rev-parse", "--verify", f"{self.ref}^{{commit}}")
        self.label = f"byok-proxy at {commit[:9]} ({self.ref})"
        tree = workdir / f"tree-{commit[:12]}"
        if not (tree / "proxy").is_dir():
            _git("worktree", "add", "--force", "--detach", str(tree), commit)
        # one that serves the Responses and Messages APIs is measured on them too
        self.speaks_every_api = all((tree / "proxy" / "inbound" / api).is_dir() for api in ("responses", "messages"))
        return tree


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def litellm_binary() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def litellm_installed() -> tuple[bool, str]:
    binary = litellm_binary()
    if not binary.exists():
        return False, f"LiteLLM is not installed in {LITELLM_VENV} (run `python -m bench.litellm_env`)"
    try:
        result = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                                 "import importlib.metadata as m; print(m.version('litellm'))"],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"LiteLLM's venv does not run: {exc}"
    if result.returncode != 0:
        return False, f"LiteLLM's venv is broken: {result.stderr.strip()[-300:]}"
    return True, result.stdout.strip()


class LiteLLM(System):
    def __init__(self):
        super().__init__("litellm", "LiteLLM proxy", start_timeout=120.0, ready_path="/health/liveliness")
        self.version = ""

    def config_text(self, upstream_port: int, models: list[str]) -> str:
        lines = ["model_list:"]
        for model in models:
            lines += [f"  - model_name: {model}", "    litellm_params:", f"      model: openai/{model}",
                      f"      api_base: http://127.0.0.1:{upstream_port}/v1", "      api_key: sk-bench-upstream"]
        lines += ["litellm_settings:", "  telemetry: false", "general_settings: {}"]
        return "\n".join(lines) + "\n"

    async def start(self, upstream_port, workdir, cpus, models) -> None:
        ok, version = litellm_installed()
        if not ok:
            raise RuntimeError(version)
        self.version = version
        self.label = f"LiteLLM {version}"
        config = workdir / "litellm.yaml"
        config.write_text(self.config_text(upstream_port, models))
        self.port = free_port()
        # Offline: the bundled model cost map, no telemetry, no database, no outbound proxy.
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        unset = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "DATABASE_URL")
        argv = [str(litellm_binary()), "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port),
                "--num_workers", "1"]
        self.server = spawn(self.name, argv, self.port, workdir, cpus=cpus, env=env, cwd=str(workdir), unset=unset)
        await wait_ready(self.server, self.ready_path, self.start_timeout)


def make_systems(names: list[str], logging_requests: bool = True) -> list[System]:
    known = {"direct": Direct, "byok": lambda: Byok(logging_requests=logging_requests), "litellm": LiteLLM,
             "relay": lambda: Baseline("relay", "relay", "byte relay (floor for any proxy)"),
             "aiohttp": lambda: Baseline("aiohttp", "aiohttp", "bare aiohttp proxy (framework floor)"),
             "aiohttp-lean": lambda: Baseline("aiohttp-lean", "aiohttp-lean",
                                              "aiohttp server + minimal client (non-streaming only)")}
    for name in names:
        if name.startswith("byok@"):
            known[name] = lambda ref=name.partition("@")[2]: ByokAtCommit(ref, logging_requests)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown systems: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[name]() for name in names]


def machine_info() -> dict:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            info["memory_gb"] = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
        info["kernel"] = os.uname().release
    except OSError:
        pass
    try:  # which code was measured: the commit, and whether the tree had uncommitted changes
        info["code"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True,
                                      text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["code"] = None
    for module in ("aiohttp", "uvloop", "orjson"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = None
    return info
