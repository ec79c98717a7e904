"""LiteLLM's proxy in its own venv (bench/.venv-litellm, gitignored), pinned to one version.

`python -m bench.litellm_env` creates it; `python -m bench` calls `ensure()` itself. The
version is the one the issue's baseline figures were measured with; it installs here from
the package index. If it cannot be installed the benchmark skips LiteLLM with a note.
"""
from __future__ import annotations

import subprocess
import sys

from bench.systems import LITELLM_VENV, LITELLM_VERSION, litellm_installed


def ensure(version: str = LITELLM_VERSION, timeout: float = 900) -> tuple[bool, str]:
    ok, found = litellm_installed()
    if ok:
        return True, found
    try:
        if not (LITELLM_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=120,
                           capture_output=True)
        result = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={version}"],
                                capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"could not create LiteLLM's venv: {exc}"
    if result.returncode != 0:
        return False, f"pip could not install litellm[proxy]=={version}: {result.stderr.strip()[-300:]}"
    return litellm_installed()


if __name__ == "__main__":
    ok, message = ensure()
    print(("LiteLLM " if ok else "") + message)
    sys.exit(0 if ok else 1)
