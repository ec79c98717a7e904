"""The configuration: YAML in, frozen dataclasses out, validated once at load.

Every problem is reported with its YAML path and line; `load_config` raises
ConfigError carrying all of them. Nothing on the request path reads YAML or
the environment again.
"""
from __future__ import annotations

import dataclasses
import os
import re
import ssl
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping, Optional
from urllib.parse import urlsplit

from proxy.config import urls as upstream_rules
from proxy.config.egress import NO_PROXY_WORD, EnvProxies, ProxyURL, ProxyURLError, parse_proxy_url
from proxy.config.formats import FORMATS
from proxy.config.schema import Builder, JSONValue, LineIndex, Problem, compose, load_section
from proxy.config.secrets import Keyring, Secret, SecretError
from proxy.config.tls import client_context

EFFORT_LEVELS = ("none", "minimal", "low", "medium", "high", "xhigh")
EffortLevel = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
ReasoningStyle = Literal["effort", "openrouter", "budget", "adaptive", "binary"]
UpstreamKind = Literal["openai", "openrouter", "anthropic", "gemini", "groq", "mistral", "deepseek", "together",
                       "fireworks", "perplexity", "zai", "moonshot", "lmstudio", "ollama", "vllm", "litellm",
                       "generic"]
MIN_THINKING_BUDGET = 1024
DEFAULT_FALLBACK_ON = ("connect", "timeout", "408", "429", "5xx")


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number (0-65535)"


def _status_code(value: int) -> str | None:
    return None if 100 <= value <= 599 else "must be an HTTP status code"


def _at_least(minimum: int):
    return lambda value: None if value >= minimum else f"must be at least {minimum}"


def positive(default: Any) -> Any:
    return field(default=default, metadata={"check": _positive})


def non_negative(default: Any) -> Any:
    return field(default=default, metadata={"check": _non_negative})


def frozen_map() -> Any:
    return field(default_factory=lambda: MappingProxyType({}))


def section(owner: str) -> Any:
    """A top-level section whose settings class ("module:Class") is declared, and validated
    by its `problems()`, beside the middleware that owns it. The config file keeps its shape."""
    return field(default_factory=lambda: load_section(owner)(), metadata={"section": owner})


# ---- upstreams ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = positive(10.0)
    first_byte: float = positive(60.0)
    # first_byte also bounds the silence between two reads once a stream has begun.
    total: float = positive(600.0)


@dataclass(frozen=True, slots=True)
class MockSettings:
    latency_ms: int = non_negative(0)
    chunk_delay_ms: int = non_negative(0)
    fail_status: Optional[int] = field(default=None, metadata={"check": _status_code})
    # Fraction of requests (0..1) that fail with fail_status; 1 when fail_status is set alone.
    fail_rate: float = field(default=1.0, metadata={"check": lambda v: None if 0 <= v <= 1 else "must be between 0 and 1"})


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    failures: int = field(default=5, metadata={"check": _at_least(1)})
    cooldown: float = positive(30.0)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """What the config says about one upstream model; unset fields mean "unknown"."""

    context_window: Optional[int] = field(default=None, metadata={"check": _at_least(1)})
    vision: Optional[bool] = None
    tools: Optional[bool] = None
    thinking: Optional[bool] = None
    reasoning_style: Optional[ReasoningStyle] = None
    reasoning_effort: Optional[EffortLevel] = None
    reasoning_levels: tuple[EffortLevel, ...] = ()
    max_tokens: Optional[int] = field(default=None, metadata={"check": _at_least(1)})
    options: JSONValue = None


@dataclass(frozen=True, slots=True)
class ProxySetting:
    """An upstream's egress proxy: `proxy: http://[user:password@]host:port`, or `none` to connect
    directly; credentials may also come apart, as ${ENV} or enc: values."""

    SHORTHAND = "url"

    url: str = ""
    username: Optional[Secret] = None
    password: Optional[Secret] = None


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """An https upstream's own trust and identity, read and checked at load (proxy/config/tls.py)."""

    ca_file: Optional[str] = None       # PEM bundle trusted for this upstream instead of the system store
    client_cert: Optional[str] = None   # PEM certificate presented to an upstream that asks (mTLS)
    client_key: Optional[str] = None    # its unencrypted PEM key (or in client_cert's file)
    server_name: Optional[str] = None   # the name TLS sends (SNI) and verifies, when not base_url's host
    verify: bool = True                 # false: loopback and private addresses only, with a warning


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str = field(default="", metadata={"internal": True})  # the key it is declared under
    base_url: Optional[str] = None
    format: Optional[Literal["openai", "anthropic", "responses", "mock"]] = None
    kind: Optional[UpstreamKind] = None
    api_key: Optional[Secret] = None
    auth: Optional[Literal["bearer", "x-api-key"]] = None
    anthropic_version: str = "2023-06-01"
    # Anthropic-format only: automatic cache breakpoints for translated requests (wire/anthropic/caching.py)
    prompt_caching: Literal["auto", "all", "off"] = "auto"
    headers: Mapping[str, Secret] = frozen_map()
    streaming: bool = True
    # Ask OpenAI-format upstreams for stream usage (for metrics); the chunk is dropped again
    # when the client did not ask for it. Turn off for servers that reject stream_options.
    stream_usage: bool = True
    max_concurrent_requests: Optional[int] = field(default=None, metadata={"check": _at_least(1)})
    queue_timeout: float = non_negative(30.0)
    timeout: Timeouts = field(default_factory=Timeouts)
    retries: int = field(default=0, metadata={"check": lambda v: None if 0 <= v <= 10 else "must be 0-10"})
    circuit: CircuitSettings = field(default_factory=CircuitSettings)
    models: Mapping[str, ModelSettings] = frozen_map()
    discover_models: bool = True
    options: JSONValue = None
    append_v1: bool = True
    allow_http: bool = False
    normalize_reasoning: bool = False
    mock: MockSettings = field(default_factory=MockSettings)
    # The egress proxy: a URL or `none`; unset, HTTPS_PROXY / HTTP_PROXY / NO_PROXY decide.
    proxy: Optional[ProxySetting] = None
    tls: TLSSettings = field(default_factory=TLSSettings)
    # Derived at load: the proxy this upstream's connections go through (None: direct).
    egress_proxy: Optional[ProxyURL] = field(default=None, metadata={"internal": True})
    # Derived at load from `tls`: the context its https connections use (None: the system store's).
    tls_context: Optional[ssl.SSLContext] = field(default=None, compare=False, repr=False, metadata={"internal": True})

    @property
    def auth_style(self) -> str:
        if self.auth:
            return self.auth
        return FORMATS[self.format].auth if self.format else "bearer"


# ---- aliases --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AliasConfig:
    SHORTHAND = "targets"

    targets: tuple[str, ...] = ()
    reasoning_effort: Optional[EffortLevel] = None
    max_tokens: Optional[int] = field(default=None, metadata={"check": _at_least(1)})
    fallback_on: tuple[str, ...] = DEFAULT_FALLBACK_ON
    options: JSONValue = None
    description: Optional[str] = None


# ---- the rest -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata={"check": _port})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    api_keys: tuple[Secret, ...] = ()
    protect_metrics: bool = False


@dataclass(frozen=True, slots=True)
class ConcurrencyConfig:
    backend: Literal["local", "redis"] = "local"
    url: Optional[Secret] = None
    # How long a Redis slot lease lives without renewal (a crashed replica's slots return after this).
    lease_seconds: float = positive(30.0)
    key_prefix: str = "byok"


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(value: str) -> int | None:
    """Bytes in `1048576`, `256MiB`, `1.5GB` (units as written: KiB = 1024, KB = 1000); None if not a size."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _size(value: str) -> str | None:
    size = parse_size(value)
    if size is None:
        return "must be a number of bytes or a size such as 256MiB (B, KB, MB, GB, KiB, MiB, GiB)"
    return None if size >= 1024 else "must be at least 1KiB"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where stored responses live (previous_response_id, GET /v1/responses/{id})."""

    backend: Literal["memory", "redis"] = "memory"
    url: Optional[Secret] = None
    # Seconds a stored response is kept after it was made.
    ttl: float = positive(3600.0)
    # memory: the whole store's size, oldest evicted first; redis: the largest one response may be.
    max_bytes: str = field(default="256MiB", metadata={"check": _size})
    key_prefix: str = "byok:responses"

    @property
    def max_bytes_count(self) -> int:
        return parse_size(self.max_bytes) or 0


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    store: StoreConfig = field(default_factory=StoreConfig)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    interval: float = positive(60.0)
    degraded_after: float = positive(3.0)
    timeout: float = positive(10.0)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_body_bytes: int = field(default=32 * 1024 * 1024, metadata={"check": _at_least(1024)})
    max_json_depth: int = field(default=64, metadata={"check": _at_least(4)})
    max_messages: int = field(default=10_000, metadata={"check": _at_least(1)})
    max_header_bytes: int = field(default=16 * 1024, metadata={"check": _at_least(1024)})
    max_connections: int = field(default=10_000, metadata={"check": _at_least(1)})
    # Seconds for a request head (request line and headers) to arrive once its first byte has.
    header_timeout: float = positive(10.0)
    # Seconds for a request body to arrive: the largest body (max_body_bytes) at about 1 Mbit/s.
    body_timeout: float = positive(300.0)
    # The whole request, answer included (off unless set); also bounds the body when shorter.
    request_timeout: Optional[float] = positive(None)
    # An upstream's non-streamed answer, after decompression; past it the client gets a 502.
    max_response_bytes: int = field(default=64 * 1024 * 1024, metadata={"check": _at_least(1024)})


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"
    requests: bool = True


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    master_key_file: Optional[str] = None


@dataclass(frozen=True, slots=True)
class PluginSpec:
    SHORTHAND = "path"

    path: str = ""
    options: JSONValue = None


@dataclass(frozen=True, slots=True)
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    upstreams: Mapping[str, UpstreamConfig] = frozen_map()
    models: Mapping[str, AliasConfig] = frozen_map()
    default_upstream: Optional[str] = None
    concurrency: ConcurrencyConfig = field(default_factory=ConcurrencyConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    reasoning: Any = section("plugins.reasoning:ReasoningSettings")
    plugins: tuple[PluginSpec, ...] = ()
    shutdown_grace: float = non_negative(30.0)
    source: Optional[str] = field(default=None, metadata={"internal": True})  # the file it came from


class ConfigError(Exception):
    """Everything wrong with a config, each problem with its path and line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


# ---- loading ------------------------------------------------------------------------------

def load_config(path: str, environ: Mapping[str, str] | None = None) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([Problem(path, None, f"cannot read config: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(path, None, "config is not UTF-8 text")]) from None
    return parse_config(text, source=path, environ=environ)


def parse_config(text: str, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    node, syntax_problem = compose(text, source)
    if syntax_problem is not None:
        raise ConfigError([syntax_problem])
    keyring, key_problems = _keyring(node, env)
    builder = Builder(keyring, env)
    config = builder.build(Config, node)
    problems = key_problems + builder.problems
    if config is not None:
        config, semantic_problems = _finish(config, node, EnvProxies.from_environ(env))
        problems += semantic_problems
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, source=source)


def _keyring(node: Any, env: Mapping[str, str]) -> tuple[Keyring, list[Problem]]:
    """The master keys, read before anything else so `enc:` values anywhere can be opened."""
    key_file = None
    if node is not None and hasattr(node, "value") and isinstance(node.value, list):
        for key, value in node.value:
            if getattr(key, "value", None) == "secrets" and hasattr(value, "value") and isinstance(value.value, list):
                for inner_key, inner_value in value.value:
                    if getattr(inner_key, "value", None) == "master_key_file":
                        key_file = str(inner_value.value)
    try:
        return Keyring.from_sources(env.get("BYOK_MASTER_KEY"), key_file), []
    except SecretError as exc:
        return Keyring([]), [Problem("secrets.master_key_file", None, str(exc))]


def _finish(config: Config, root: Any, env_proxies: EnvProxies) -> tuple[Config, list[Problem]]:
    """Cross-field checks and derived values (normalized URLs, detected kinds, egress routes)."""
    problems: list[Problem] = []
    lines = LineIndex(root)
    finished = {}
    for name, upstream in config.upstreams.items():
        finished[name] = _finish_upstream(name, upstream, lines, problems, env_proxies)
    for alias, settings in config.models.items():
        _check_alias(alias, settings, finished, lines, problems)
    if config.default_upstream is not None and config.default_upstream not in finished:
        problems.append(Problem("default_upstream", lines.line("default_upstream"),
                                f"no upstream named '{config.default_upstream}'"))
    if config.concurrency.backend == "redis" and config.concurrency.url is None:
        problems.append(Problem("concurrency.url", lines.line("concurrency"), "the redis backend needs a url"))
    if config.responses.store.backend == "redis" and config.responses.store.url is None:
        problems.append(Problem("responses.store.url", lines.line("responses.store"), "the redis backend needs a url"))
    for index, plugin in enumerate(config.plugins):
        if not plugin.path or "." not in plugin.path.replace(":", "."):
            problems.append(Problem(f"plugins[{index}]", lines.line("plugins"),
                                    "must be a dotted import path such as mypackage.module:Middleware"))
    problems += _section_problems(config, lines)
    return dataclasses.replace(config, upstreams=MappingProxyType(finished)), problems


def _section_problems(config: Config, lines: LineIndex) -> list[Problem]:
    """What each middleware-owned section finds wrong with itself, placed at its path and line."""
    problems = []
    for section_field in dataclasses.fields(config):
        if section_field.metadata.get("section"):
            for subpath, message in getattr(config, section_field.name).problems():
                path = f"{section_field.name}.{subpath}"
                problems.append(Problem(path, lines.line(path), message))
    return problems


def _finish_upstream(name: str, upstream: UpstreamConfig, lines: LineIndex,
                     problems: list[Problem], env_proxies: EnvProxies) -> UpstreamConfig:
    path = f"upstreams.{name}"
    if "/" in name or not name:
        problems.append(Problem(path, lines.line(path), "an upstream name must not contain '/'"))
    wire_format = upstream.format or upstream_rules.detect_format(upstream.base_url)
    base_url = upstream.base_url
    if wire_format in FORMATS and not FORMATS[wire_format].networked:
        base_url = None
    elif not base_url:
        problems.append(Problem(f"{path}.base_url", lines.line(path), "is required (or set format: mock)"))
    else:
        try:
            base_url = upstream_rules.normalize_base_url(base_url, wire_format, upstream.append_v1, upstream.allow_http)
        except upstream_rules.BaseURLError as exc:
            problems.append(Problem(f"{path}.base_url", lines.line(f"{path}.base_url"), str(exc)))
    kind = upstream.kind or upstream_rules.detect_kind(upstream.base_url, wire_format)
    if upstream.options is not None and not isinstance(upstream.options, Mapping):
        problems.append(Problem(f"{path}.options", lines.line(f"{path}.options"), "must be a mapping of JSON fields"))
    for header, value in upstream.headers.items():
        problem = upstream_rules.header_problem(header, value.reveal())
        if problem:
            problems.append(Problem(f"{path}.headers.{header}", lines.line(f"{path}.headers"), problem))
    if upstream.api_key is not None:
        problem = upstream_rules.header_problem("api-key", upstream.api_key.reveal())
        if problem:
            problems.append(Problem(f"{path}.api_key", lines.line(f"{path}.api_key"), problem))
    for model_name, model in upstream.models.items():
        if model.options is not None and not isinstance(model.options, Mapping):
            problems.append(Problem(f"{path}.models.{model_name}.options",
                                    lines.line(f"{path}.models.{model_name}.options"), "must be a mapping of JSON fields"))
    finished = dataclasses.replace(upstream, name=name, base_url=base_url, format=wire_format, kind=kind)
    if base_url is None or not FORMATS[wire_format].networked:
        return finished
    return _with_tls(_with_egress(finished, env_proxies, lines, problems), lines, problems)


def _with_tls(upstream: UpstreamConfig, lines: LineIndex, problems: list[Problem]) -> UpstreamConfig:
    """The TLS context of an https upstream with its own `tls:` settings, built (files read) now."""
    path = f"upstreams.{upstream.name}.tls"
    parts = urlsplit(upstream.base_url)
    if parts.scheme != "https":
        if upstream.tls != TLSSettings():
            problems.append(Problem(path, lines.line(path), "tls settings apply to https:// upstreams only"))
        return upstream
    context, found = client_context(upstream.tls, parts.hostname or "", path)
    for field_path, message in found:
        problems.append(Problem(field_path, lines.line(field_path) or lines.line(path), message))
    return dataclasses.replace(upstream, tls_context=context) if context is not None else upstream


def _with_egress(upstream: UpstreamConfig, env_proxies: EnvProxies, lines: LineIndex,
                 problems: list[Problem]) -> UpstreamConfig:
    """The proxy this upstream's connections take: its own `proxy:` (a URL, or `none`), else the
    environment's for its scheme unless NO_PROXY exempts its host. The setting kept on the config
    no longer holds credentials: they live in `egress_proxy`, as Secrets."""
    path = f"upstreams.{upstream.name}.proxy"
    parts = urlsplit(upstream.base_url)
    setting = upstream.proxy
    if setting is None:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy, problem = env_proxies.for_url(parts.scheme, parts.hostname or "", port)
        if problem is not None:
            problems.append(Problem(path, lines.line(f"upstreams.{upstream.name}"),
                                    f"the environment's proxy for this upstream cannot be used: {problem}"))
        return dataclasses.replace(upstream, egress_proxy=proxy)
    if setting.url.strip().lower() == NO_PROXY_WORD:
        return dataclasses.replace(upstream, proxy=ProxySetting(NO_PROXY_WORD), egress_proxy=None)
    try:
        proxy = parse_proxy_url(setting.url, path)
    except ProxyURLError as exc:
        problems.append(Problem(path, lines.line(path), str(exc)))
        return upstream
    if setting.username is not None or setting.password is not None:
        proxy = dataclasses.replace(proxy, username=setting.username or proxy.username,
                                    password=setting.password or proxy.password)
    return dataclasses.replace(upstream, proxy=ProxySetting(proxy.shown), egress_proxy=proxy)


def _check_alias(alias: str, settings: AliasConfig, upstreams: Mapping[str, UpstreamConfig],
                 lines: LineIndex, problems: list[Problem]) -> None:
    path = f"models.{alias}"
    if not settings.targets:
        problems.append(Problem(f"{path}.targets", lines.line(path), "an alias needs at least one target"))
    for index, target in enumerate(settings.targets):
        upstream_name, _, model = target.partition("/")
        if upstream_name not in upstreams:
            known = ", ".join(upstreams) or "none"
            problems.append(Problem(f"{path}.targets[{index}]", lines.line(f"{path}.targets"),
                                    f"'{target}' must be upstream/model; no upstream named '{upstream_name}' (known: {known})"))
        elif not model:
            problems.append(Problem(f"{path}.targets[{index}]", lines.line(f"{path}.targets"),
                                    f"'{target}' names no model; write {upstream_name}/<model id>"))
    for index, trigger in enumerate(settings.fallback_on):
        if not _valid_trigger(trigger):
            problems.append(Problem(f"{path}.fallback_on[{index}]", lines.line(f"{path}.fallback_on"),
                                    f"'{trigger}' is not a status code, 4xx/5xx, connect or timeout"))
    if settings.options is not None and not isinstance(settings.options, Mapping):
        problems.append(Problem(f"{path}.options", lines.line(f"{path}.options"), "must be a mapping of JSON fields"))


def _valid_trigger(trigger: str) -> bool:
    if trigger in ("connect", "timeout", "4xx", "5xx"):
        return True
    return trigger.isdigit() and 400 <= int(trigger) <= 599
