"""Model discovery: fetch an upstream's model list and read each provider's shape.

One fetch per upstream per health interval; the catalog stores what comes
back and the health monitor times it. Where the list lives and how it is paged
is the wire format's (each adapter's `list_models`, proxy/wire/); the requests go
through the proxy's own client (proxy/upstream/pool.py: redirects are never
followed, TLS trusts the system store or SSL_CERT_FILE) on the catalog's own
connections. Every provider documents its own entries, all read here:

- OpenAI and most compatibles: `{"object": "list", "data": [{"id", "created", "owned_by"}]}`
- OpenRouter: the same list with `context_length`, `architecture.input_modalities`,
  `supported_parameters`, `pricing`, `top_provider.max_completion_tokens`
- vLLM: the OpenAI list with `max_model_len`
- Anthropic: `{"data", "has_more", "first_id", "last_id"}` paged by `after_id`, with
  `max_input_tokens`, `max_tokens` and `capabilities.{image_input, thinking, effort}`
- Ollama (`/api/tags`): `{"models": [{"name", "model", "details"}]}`, and `/api/show`
  per model for `capabilities` and `<arch>.context_length`
- LM Studio (`/api/v0/models`): the OpenAI list with `type` (llm | vlm | embeddings),
  `max_context_length` and `capabilities`; its v1 API lists `{"models": [{"key", ...}]}`

Nothing here knows about the config's overrides; the catalog applies those.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from proxy.catalog.diagnose import Diagnosis, classify_exception, classify_http, provider_error
from proxy.config.model import UpstreamConfig
from proxy.config.secrets import quote
from proxy.core import jsonutil
from proxy.upstream import failures, http1
from proxy.upstream import pool as upstream_client
from proxy.wire.openai_models import model_entries
from proxy.wire.registry import adapter_for, upstream_headers

EMPTY_RETRY_DELAYS = (0.5, 1.5)  # a server still loading answers an empty list at first
MAX_LIST_BYTES = 64 * 1024 * 1024  # OpenRouter's list, the longest known, is a few MB


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """What an upstream said about one model; None means it did not say."""

    id: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    vision: bool | None = None
    tools: bool | None = None
    thinking: bool | None = None
    reasoning_levels: tuple[str, ...] = ()
    supported_parameters: tuple[str, ...] = ()
    pricing: Mapping[str, Any] | None = None
    display_name: str | None = None
    created: int | None = None
    model_type: str | None = None  # llm | vlm | embeddings where the server says


class DiscoveryError(Exception):
    """The model list could not be fetched or read. Carries what `check` needs to classify it."""

    def __init__(self, message: str, *, url: str, status: int | None = None, body: bytes = b"",
                 headers: Mapping[str, str] | None = None, cause: BaseException | None = None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.cause = cause

    def diagnose(self, upstream: UpstreamConfig, timeout: float) -> Diagnosis:
        """Classified for a person (the health check's last_error, check's catalog row)."""
        if self.status is None:
            return classify_exception(self.cause, url=self.url, upstream=upstream.name, timeout=timeout,
                                      early_close=failures.early_close_hint(upstream))
        return classify_http(self.status, self.body, self.headers, url=self.url, base_url=upstream.base_url or "",
                             upstream=upstream.name)


@dataclass(frozen=True, slots=True)
class Discovery:
    models: tuple[DiscoveredModel, ...]
    latency: float  # seconds, the first list request (what the health check times)
    url: str


# ---- reading the shapes ---------------------------------------------------------------------

def parse_models(payload: Any, kind: str | None = None) -> list[DiscoveredModel]:
    """Any documented models-list payload -> DiscoveredModel per entry (unknown entries skipped)."""
    return read_entries(model_entries(payload), kind)


def read_entries(entries: list[Any], kind: str | None = None) -> list[DiscoveredModel]:
    return [model for model in (parse_entry(entry, kind) for entry in entries) if model is not None]


def parse_entry(entry: Any, kind: str | None = None) -> DiscoveredModel | None:
    if isinstance(entry, str):
        return DiscoveredModel(id=entry)
    if not isinstance(entry, dict):
        return None
    model_id = _model_id(entry, kind)
    if not model_id:
        return None
    capabilities = entry.get("capabilities")
    parameters = tuple(p for p in entry.get("supported_parameters") or () if isinstance(p, str))
    return DiscoveredModel(
        id=model_id,
        context_window=_context_window(entry),
        max_output_tokens=_max_output(entry),
        vision=_vision(entry, capabilities),
        tools=_tools(entry, capabilities, parameters),
        thinking=_thinking(capabilities, parameters),
        reasoning_levels=_effort_levels(capabilities),
        supported_parameters=parameters,
        pricing=MappingProxyType(dict(entry["pricing"])) if isinstance(entry.get("pricing"), dict) else None,
        display_name=_text(entry.get("display_name") or entry.get("name")),
        created=entry.get("created") if isinstance(entry.get("created"), int) else None,
        model_type=_text(entry.get("type")) if entry.get("type") != "model" else None,
    )


def _model_id(entry: dict, kind: str | None) -> str | None:
    # OpenAI-style "id", Ollama "name"/"model", LM Studio v1 "key"
    for key in ("id", "name", "model", "key"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            if kind == "gemini" and value.startswith("models/"):
                return value[len("models/"):]  # Gemini lists "models/x"; its chat API takes "x"
            return value
    return None


def _context_window(entry: dict) -> int | None:
    # Whichever the upstream sends: OpenRouter/Groq context_length or context_window, vLLM
    # max_model_len, Anthropic max_input_tokens, LM Studio max_context_length.
    for key in ("context_length", "context_window", "max_model_len", "max_input_tokens", "max_context_length"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    top = entry.get("top_provider")
    if isinstance(top, dict) and isinstance(top.get("context_length"), int) and top["context_length"] > 0:
        return top["context_length"]
    return None


def _max_output(entry: dict) -> int | None:
    value = entry.get("max_tokens")  # Anthropic
    top = entry.get("top_provider")
    if value is None and isinstance(top, dict):
        value = top.get("max_completion_tokens")  # OpenRouter
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _supported(capabilities: Any, name: str) -> bool | None:
    """Anthropic `{name: {supported}}`, LM Studio v1 `{name: bool}`, or a list of names."""
    if isinstance(capabilities, dict):
        value = capabilities.get(name)
        if isinstance(value, dict):
            value = value.get("supported")
        return value if isinstance(value, bool) else None
    if isinstance(capabilities, list):
        return name in capabilities
    return None


def _vision(entry: dict, capabilities: Any) -> bool | None:
    architecture = entry.get("architecture")
    if isinstance(architecture, dict) and isinstance(architecture.get("input_modalities"), list):
        return "image" in architecture["input_modalities"]  # OpenRouter
    if entry.get("type") in ("vlm", "llm"):
        return entry["type"] == "vlm" or bool(_supported(capabilities, "vision"))  # LM Studio v0
    return _first_known(capabilities, ("image_input", "vision"))


def _tools(entry: dict, capabilities: Any, parameters: tuple[str, ...]) -> bool | None:
    if parameters:
        return "tools" in parameters
    return _first_known(capabilities, ("tools", "tool_use", "trained_for_tool_use"))


def _thinking(capabilities: Any, parameters: tuple[str, ...]) -> bool | None:
    if parameters:
        return "reasoning" in parameters or "include_reasoning" in parameters
    return _first_known(capabilities, ("thinking",))


def _first_known(capabilities: Any, names: tuple[str, ...]) -> bool | None:
    """A list of capability names says yes or no for each; a mapping only for the names it has."""
    if isinstance(capabilities, list):
        return any(name in capabilities for name in names)
    for name in names:
        value = _supported(capabilities, name)
        if value is not None:
            return value
    return None


def _effort_levels(capabilities: Any) -> tuple[str, ...]:
    """Anthropic's `capabilities.effort`: each level with its own `supported` flag."""
    if not isinstance(capabilities, dict) or not isinstance(capabilities.get("effort"), dict):
        return ()
    effort = capabilities["effort"]
    if effort.get("supported") is False:
        return ()
    levels = ["none"]  # thinking is opt-in on the Messages API: leaving it out is always accepted
    for level in ("low", "medium", "high", "xhigh", "max"):
        value = effort.get(level)
        if isinstance(value, dict) and value.get("supported"):
            levels.append("xhigh" if level == "max" else level)  # our top level is xhigh
    return tuple(dict.fromkeys(levels)) if len(levels) > 1 else ()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ---- fetching ---------------------------------------------------------------------------------

class ListClient:
    """The catalog's own connections (proxy/upstream/pool.py), one keep-alive Pool per upstream
    and origin: catalog fetches never take connections from client traffic, and take the same
    route as that traffic (the upstream's egress proxy)."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], upstream_client.Pool] = {}

    def route(self, upstream: UpstreamConfig, url: str,
              params: Mapping[str, str] | None = None) -> tuple[upstream_client.Pool, str]:
        """The pool for `url`'s origin as `upstream` reaches it, and the request target for its
        path and `params`."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get((upstream.name, origin))
        if pool is None:
            pool = self._pools[(upstream.name, origin)] = upstream_client.Pool.for_upstream(upstream, origin)
        return pool, pool.target(parts.path.lstrip("/"), urlencode(params) if params else "")

    def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


async def discover(client: ListClient, upstream: UpstreamConfig, timeout: float,
                   empty_retry_delays: tuple[float, ...] = EMPTY_RETRY_DELAYS) -> Discovery:
    """Fetch and read an upstream's model list; raises DiscoveryError. An empty first answer
    is retried briefly, since a local server that is still loading lists nothing yet."""
    result = await _discover_once(client, upstream, timeout)
    for delay in empty_retry_delays:
        if result.models:
            break
        await asyncio.sleep(delay)
        retry = await _discover_once(client, upstream, timeout)
        result = Discovery(retry.models, result.latency, retry.url)
    return result


async def _discover_once(client: ListClient, upstream: UpstreamConfig, timeout: float) -> Discovery:
    assert upstream.base_url is not None
    fetch = _Fetch(client, upstream, timeout)
    try:
        url, entries = await adapter_for(upstream.format).list_models(upstream, fetch)
    except ValueError as exc:  # an answer that is not a model list
        raise DiscoveryError(f"{fetch.last_url}: {exc}", url=fetch.last_url, status=200) from None
    return Discovery(tuple(read_entries(entries, upstream.kind)), fetch.latency or 0.0, url)


class _Fetch:
    """The `fetch` a wire adapter's list_models is given (see WireAdapter.list_models): JSON from
    one upstream with its headers. Times the first answer: the latency the health check reports."""

    def __init__(self, client: ListClient, upstream: UpstreamConfig, timeout: float):
        self._client, self._timeout, self._upstream = client, timeout, upstream
        self._headers = upstream_headers(upstream)
        self.last_url = upstream.base_url or ""
        self.latency: float | None = None

    async def __call__(self, url: str, *, params: Mapping[str, str] | None = None, body: Any = None,
                       absent: tuple[int, ...] = (), required: bool = True) -> Any:
        self.last_url = url
        started = time.monotonic()
        try:
            payload = await request_json(self._client, self._upstream, url, self._headers, self._timeout,
                                         params=params, body=body)
        except DiscoveryError as exc:
            if not required or exc.status in absent:
                return None
            raise
        if self.latency is None:
            self.latency = time.monotonic() - started
        return payload


async def request_json(client: ListClient, upstream: UpstreamConfig, url: str, headers: Mapping[str, str],
                       timeout: float, *, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
    """GET `url` (POST `body` as JSON) from `upstream` and decode the JSON answer; raises
    DiscoveryError. The whole exchange takes at most `timeout` seconds."""
    pool, target = client.route(upstream, url, params)
    method, data = ("POST", jsonutil.dumps(body)) if body is not None else ("GET", b"")
    request_headers = {**headers, "Content-Type": "application/json"} if body is not None else dict(headers)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        response = await upstream_client.send(pool, method, target, request_headers, data, connect_timeout=timeout,
                                              read_timeout=timeout, deadline=deadline)
        try:
            raw = await response.read(MAX_LIST_BYTES)
        finally:
            response.release()  # closed instead when the answer was not read to its end
    except (http1.ClientFailure, ssl.SSLError, OSError, ValueError) as exc:  # ValueError: a header with a line break
        summary = failures.classify(exc, failures.early_close_hint(upstream)).describe(
            url, timeout, "base_url")[1]
        raise DiscoveryError(f"{url}: {summary}", url=url, cause=exc) from None
    status, answer_headers = response.status, response.headers
    if 300 <= status < 400:  # the client never follows one: the key would travel to wherever it points
        location = answer_headers.get("Location", "elsewhere")
        raise DiscoveryError(f"{url} answered HTTP {status} redirecting to {location}; set base_url to the "
                             f"final address (keys are never sent after a redirect)",
                             url=url, status=status, body=b"", headers=answer_headers)
    if status >= 400:
        said = quote(provider_error(raw).message, 300)
        raise DiscoveryError(f"{url} answered HTTP {status}" + (f": {said}" if said else ""),
                             url=url, status=status, body=raw, headers=answer_headers)
    try:
        return jsonutil.loads(raw)
    except ValueError:
        kind = answer_headers.get("Content-Type", "unknown type")
        raise DiscoveryError(f"{url} answered {kind}, not JSON", url=url, status=status, body=raw[:2048],
                             headers=answer_headers) from None
