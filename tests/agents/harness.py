"""Run real coding agents (Codex CLI, Claude Code) headless against a local base URL.

Both agents are installed, pinned, by ``scripts/install-agents`` into
``tests/.agents/`` (git-ignored). Every run gets a fresh temporary home
(HOME, CODEX_HOME / CLAUDE_CONFIG_DIR, XDG_*) that is deleted afterwards, so the
real home directory is never read or written; proxies are stripped from the
environment and every update check / telemetry switch we know of is turned off.
The process runs in its own session; on timeout its whole process group is
killed and ``subprocess.TimeoutExpired`` is raised (with the output so far).

    cp = run_codex("http://127.0.0.1:PORT/v1", "sk-test", "test-model", "say hi", workdir)
    cp = run_claude("http://127.0.0.1:PORT", "sk-test", "test-model", "say hi", workdir)

Note the base URLs: Codex appends ``/responses`` to its provider ``base_url``
(so pass the ``/v1`` URL), Claude Code appends ``/v1/messages`` to
``ANTHROPIC_BASE_URL`` (so pass the bare origin).

See NOTES.md next to this file for what each agent sends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping

REPO = Path(__file__).resolve().parents[2]
AGENTS_DIR = REPO / "tests" / ".agents"
BIN_DIR = AGENTS_DIR / "node_modules" / ".bin"

CODEX_VERSION = "0.171.0"
CLAUDE_CODE_VERSION = "2.1.332"

#: the environment variable Codex reads the API key from (``env_key``)
CODEX_ENV_KEY = "BYOK_TEST_API_KEY"
#: the ``model_providers`` id written into Codex's config.toml
CODEX_PROVIDER_ID = "byok"

DEFAULT_TIMEOUT = 120.0

# Variables passed through from the caller's environment; everything else is
# dropped (API keys, proxies, CI tokens, the real HOME...).
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")


def _bin(env_var: str, name: str) -> str | None:
    override = os.environ.get(env_var)
    if override:
        return override if os.access(override, os.X_OK) else None
    path = BIN_DIR / name
    return str(path) if path.exists() and os.access(path, os.X_OK) else None


def codex_bin() -> str | None:
    """The pinned Codex CLI (``BYOK_CODEX_BIN`` overrides), or None if not installed."""
    return _bin("BYOK_CODEX_BIN", "codex")


def claude_bin() -> str | None:
    """The pinned Claude Code CLI (``BYOK_CLAUDE_BIN`` overrides), or None if not installed."""
    return _bin("BYOK_CLAUDE_BIN", "claude")


def _base_env(home: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update({
        "HOME": str(home),
        "USER": os.environ.get("USER", "tester"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(home / "tmp"),
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
        # Loopback only: no proxy may see (or break) requests to 127.0.0.1.
        "NO_PROXY": "127.0.0.1,localhost,::1",
        "no_proxy": "127.0.0.1,localhost,::1",
        "DO_NOT_TRACK": "1",
    })
    for sub in (".config", ".cache", ".local/share", ".local/state", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(argv: list[str], env: Mapping[str, str], cwd: Path, timeout: float,
         stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run in a new session; kill the whole group on timeout (and any leftovers after exit)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=str(cwd), env=dict(env),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, text=True, encoding="utf-8", errors="replace",
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild kept the pipes open
            out, err = "", ""
        raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err) from None
    finally:
        _kill_group(proc)  # background helpers the agent left behind
    cp = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    cp.duration = time.monotonic() - started  # type: ignore[attr-defined]
    return cp


class _TempHome:
    """A throw-away home directory (kept when ``keep`` is true, for debugging)."""

    def __init__(self, prefix: str, keep: bool = False):
        self.keep = keep or bool(os.environ.get("BYOK_AGENTS_KEEP_HOME"))
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------- Codex


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def codex_config(base_url: str, model: str, *, provider_id: str = CODEX_PROVIDER_ID,
                 env_key: str = CODEX_ENV_KEY) -> str:
    """config.toml for a custom Responses-API provider, no retries, nothing phoning home."""
    return "\n".join([
        f"model = {_toml_str(model)}",
        f"model_provider = {_toml_str(provider_id)}",
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        "check_for_update_on_startup = false",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[history]",
        'persistence = "none"',
        "",
        "[features]",
        "# the plugin marketplace sync clones from github.com at startup",
        "plugins = false",
        "",
        f"[model_providers.{provider_id}]",
        'name = "byok-proxy test"',
        f"base_url = {_toml_str(base_url)}",
        f"env_key = {_toml_str(env_key)}",
        'wire_api = "responses"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "stream_idle_timeout_ms = 60000",
        "supports_websockets = false",
        "",
    ])


_bundled_catalog: dict[str, dict] = {}

#: the bundled model whose metadata (tool set, apply_patch flavour, shell type)
#: is cloned for the test model name: a plain Responses model with the freeform
#: ``apply_patch`` tool and no "code mode".
CODEX_MODEL_LIKE = "gpt-5.5"


def codex_bundled_catalog() -> dict:
    """The model catalog compiled into the pinned Codex (``codex debug models --bundled``)."""
    exe = codex_bin()
    if exe is None:
        raise FileNotFoundError("codex is not installed; run scripts/install-agents")
    if exe not in _bundled_catalog:
        with _TempHome("byok-codex-catalog-") as home:
            (home / ".codex").mkdir()
            env = _base_env(home)
            env["CODEX_HOME"] = str(home / ".codex")
            cp = _run([exe, "debug", "models", "--bundled"], env, home, 60)
        if cp.returncode != 0:
            raise RuntimeError(f"codex debug models failed: {cp.stderr[-2000:]}")
        _bundled_catalog[exe] = json.loads(cp.stdout)
    return _bundled_catalog[exe]


def codex_model_catalog(model: str, like: str = CODEX_MODEL_LIKE) -> dict | None:
    """A one-model catalog: the bundled entry for ``like``, renamed to ``model``.

    Without it an unknown model name gets Codex's *fallback* metadata ("Model
    metadata for `x` not found") and Codex then declares no ``apply_patch``
    tool at all (and adds a multi-agent namespace). None if ``like`` is unknown.
    """
    for entry in codex_bundled_catalog().get("models", []):
        if entry.get("slug") == like:
            clone = json.loads(json.dumps(entry))
            clone.update(slug=model, display_name=model)
            return {"models": [clone]}
    return None


def codex_command(prompt: str, workdir: Path, model: str, extra_args: Iterable[str] = ()) -> list[str]:
    exe = codex_bin()
    if exe is None:
        raise FileNotFoundError("codex is not installed; run scripts/install-agents")
    return [
        exe, "exec",
        "--skip-git-repo-check",                        # the workdir is not a git repo
        "--dangerously-bypass-approvals-and-sandbox",   # no prompts, no landlock/seccomp (root, container)
        "--strict-config",                              # fail loudly if a config key is unknown
        "--ephemeral",                                  # no session files
        "--color", "never",
        "-C", str(workdir),
        "-m", model,
        *extra_args,
        prompt,
    ]


def run_codex(base_url: str, api_key: str, model: str, prompt: str, workdir: str | os.PathLike,
              timeout: float = DEFAULT_TIMEOUT, *, extra_args: Iterable[str] = (),
              extra_env: Mapping[str, str] | None = None, extra_config: str = "",
              model_like: str | None = CODEX_MODEL_LIKE,
              keep_home: bool = False) -> subprocess.CompletedProcess:
    """``codex exec`` once, headless, against ``base_url`` (e.g. ``http://127.0.0.1:PORT/v1``).

    ``model_like``: give ``model`` the bundled metadata of this model (see
    ``codex_model_catalog``); None runs with Codex's fallback metadata.
    ``extra_config`` is appended to config.toml (top-level keys are not allowed
    there: the file ends inside a table).

    The final agent message is on stdout; progress and logs are on stderr.
    The result has ``.duration`` (seconds) and ``.home`` (the temp home; gone
    afterwards unless ``keep_home``).
    """
    workdir = Path(workdir)
    catalog = codex_model_catalog(model, model_like) if model_like else None
    with _TempHome("byok-codex-", keep_home) as home:
        codex_home = home / ".codex"
        codex_home.mkdir()
        config = codex_config(base_url, model)
        if catalog is not None:
            (codex_home / "model_catalog.json").write_text(json.dumps(catalog))
            config = f"model_catalog_json = {_toml_str(str(codex_home / 'model_catalog.json'))}\n" + config
        (codex_home / "config.toml").write_text(config + extra_config)
        env = _base_env(home)
        env.update({
            "CODEX_HOME": str(codex_home),
            CODEX_ENV_KEY: api_key,
            "RUST_LOG": os.environ.get("BYOK_CODEX_RUST_LOG", "error"),
        })
        env.update(extra_env or {})
        cp = _run(codex_command(prompt, workdir, model, extra_args), env, workdir, timeout)
        cp.home = home  # type: ignore[attr-defined]
        return cp


# ------------------------------------------------------------------- Claude Code


def claude_env(home: Path, base_url: str, api_key: str, model: str, auth: str = "x-api-key") -> dict[str, str]:
    """The environment for ``claude -p``. ``auth``: ``x-api-key`` (ANTHROPIC_API_KEY,
    sent as ``x-api-key``) or ``bearer`` (ANTHROPIC_AUTH_TOKEN, sent as
    ``Authorization: Bearer``)."""
    if auth not in ("x-api-key", "bearer"):
        raise ValueError(f"auth must be 'x-api-key' or 'bearer', not {auth!r}")
    env = _base_env(home)
    env.update({
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": base_url,
        ("ANTHROPIC_API_KEY" if auth == "x-api-key" else "ANTHROPIC_AUTH_TOKEN"): api_key,
        # every model alias resolves to the test model, so side requests
        # (titles, summaries, subagents) also go to ``model``
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "CLAUDE_CODE_SUBAGENT_MODEL": model,
        # root may use bypassPermissions only inside a "deliberate sandbox"
        "IS_SANDBOX": "1",
        # no telemetry, error reporting, feature flags, update checks
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_UPDATES": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_GROWTHBOOK": "1",
        "DISABLE_BUG_COMMAND": "1",
        "DISABLE_INSTALLATION_CHECKS": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "API_TIMEOUT_MS": "60000",
    })
    return env


def claude_command(prompt: str, model: str, output_format: str = "text",
                   extra_args: Iterable[str] = ()) -> list[str]:
    exe = claude_bin()
    if exe is None:
        raise FileNotFoundError("claude is not installed; run scripts/install-agents")
    return [
        exe, "-p", prompt,
        "--model", model,
        "--output-format", output_format,
        "--dangerously-skip-permissions",   # = --permission-mode bypassPermissions; needs IS_SANDBOX=1 as root
        "--no-session-persistence",
        *extra_args,
    ]


def run_claude(base_url: str, api_key: str, model: str, prompt: str, workdir: str | os.PathLike,
               timeout: float = DEFAULT_TIMEOUT, *, output_format: str = "text",
               auth: str = "x-api-key", extra_args: Iterable[str] = (),
               extra_env: Mapping[str, str] | None = None,
               keep_home: bool = False) -> subprocess.CompletedProcess:
    """``claude -p`` once, headless, against ``base_url`` (the origin: ``http://127.0.0.1:PORT``).

    ``output_format`` is ``text`` (the answer on stdout) or ``json`` (one JSON
    object with ``result``, ``is_error``, ``usage``...). ``auth`` picks the
    header the key travels in (see ``claude_env``).
    """
    workdir = Path(workdir)
    with _TempHome("byok-claude-", keep_home) as home:
        env = claude_env(home, base_url, api_key, model, auth)
        env.update(extra_env or {})
        cp = _run(claude_command(prompt, model, output_format, extra_args), env, workdir, timeout)
        cp.home = home  # type: ignore[attr-defined]
        return cp
